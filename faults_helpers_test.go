package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// faultLogLine is one JSON line of the agent's log.
type faultLogLine map[string]any

// faultLogLines parses the JSON lines of an agent log (other lines, such as
// the final "attune-sensor-agent: ..." error line, are skipped).
func faultLogLines(log string) []faultLogLine {
	var out []faultLogLine
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l faultLogLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// matches reports whether the line has message msg and every key=value of
// kv ("key", "value", ...); a value compares by its fmt.Sprint form.
func (l faultLogLine) matches(msg string, kv ...string) bool {
	if l["msg"] != msg {
		return false
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if fmt.Sprint(l[kv[i]]) != kv[i+1] {
			return false
		}
	}
	return true
}

// faultLogCount counts the lines of log with message msg and attributes kv.
func faultLogCount(log, msg string, kv ...string) int {
	n := 0
	for _, l := range faultLogLines(log) {
		if l.matches(msg, kv...) {
			n++
		}
	}
	return n
}

// faultLogMark is a position in an agent's log; since returns what came after.
type faultLogMark struct {
	a   *agentProc
	off int
}

func markAgentLog(a *agentProc) faultLogMark { return faultLogMark{a: a, off: len(a.stderr.String())} }

func (m faultLogMark) since() string { return m.a.stderr.String()[m.off:] }

// waitSince waits until a line with msg (and attributes kv) appears after the mark.
func (m faultLogMark) waitSince(t testing.TB, timeout time.Duration, msg string, kv ...string) {
	t.Helper()
	if !waitUntil(timeout, func() bool { return faultLogCount(m.since(), msg, kv...) > 0 }) {
		t.Fatalf("agent log never showed %q %v within %s; log since mark:\n%s", msg, kv, timeout, m.since())
	}
}

// sensorLeaders returns the process-group leaders among the live processes
// of sensor ref: one per running sensor instance, whatever it forked.
func (s *testStack) sensorLeaders(ref string) []int {
	var out []int
	for _, pid := range s.sensorPIDs(ref) {
		if pgid, ok := procPGID(pid); ok && pgid == pid {
			out = append(out, pid)
		}
	}
	return out
}

// procPGID reads the process group of pid from /proc/<pid>/stat.
func procPGID(pid int) (int, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	// After ") ": state ppid pgrp ...
	f := strings.Fields(s[i+1:])
	if len(f) < 3 {
		return 0, false
	}
	pgid, err := strconv.Atoi(f[2])
	return pgid, err == nil
}

// procStatusKB reads a "Key:   N kB" line of /proc/<pid>/status.
func procStatusKB(t testing.TB, pid int, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatalf("read /proc/%d/status: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("parse %s of /proc/%d/status: %q", key, pid, line)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, key)
	return 0
}

// writeNativeSensor writes an executable sensor script into testpack/sensors
// and registers it on the Native runtime with one enabled rule.
func (s *testStack) nativeSensor(name, body string) (sensorID, ruleID int64) {
	s.t.Helper()
	s.writeSensorScript(name+".sh", body)
	return s.sensorWithRule(name, name+".sh", "Native", "", true)
}

// faultSleeperScript is a quiet native sensor: one process that lives until
// it is signalled.
const faultSleeperScript = "#!/bin/sh\nexec sleep 100000\n"

// samePIDs fails the test unless every sensor in want still runs as exactly
// the process-group leader it had.
func (s *testStack) requireSameLeaders(t testing.TB, want map[string]int, when string) {
	t.Helper()
	for ref, pid := range want {
		got := s.sensorLeaders(ref)
		if len(got) != 1 || got[0] != pid {
			t.Errorf("%s: sensor %s leaders %v, want exactly [%d] (no restart, no duplicate)", when, ref, got, pid)
		}
	}
}

// workerCounters reads the three heartbeat counters from the worker row.
func (s *testStack) workerCounters() (monitored, running, rules int) {
	_, caps, _ := s.workerRow()
	num := func(k string) int { f, _ := caps[k].(float64); return int(f) }
	return num("sensor_processes_monitored"), num("sensor_processes_running"), num("active_rules")
}

// startVia runs the agent against the stack but with its own database and
// broker URLs (through a fault proxy, or with other credentials); the stack's
// own URLs stay direct for seeding and publishing.
func (s *testStack) startVia(dbURL, amqpURL string, extra ...string) *agentProc {
	s.t.Helper()
	env := agentEnv(dbURL, amqpURL, s.api.URL(), s.dir,
		append(extra, "LANG=C.UTF-8", "ATTUNE__SENSOR__WORKER_NAME="+s.name)...)
	return startAgent(s.t, env)
}
