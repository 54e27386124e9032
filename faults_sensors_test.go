package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// faultFloodBytes is how much the flooding sensor writes to stdout.
const faultFloodBytes = 200 << 20

// TestAgentHostileSensors runs five hostile sensors under one agent with
// 1 MiB × 3 sensor logs: one floods 200 MB to stdout as fast as it can, one
// forks 50 children, one ignores SIGTERM, one closes its output and keeps
// running, one exits at once forever. The logs stay within their limits,
// the agent's peak RSS stays bounded and its heartbeat keeps moving; every
// child dies with its group; the TERM-ignoring group is killed after the
// grace; a closed stdout is not an exit; and the crash loop is held by the
// backoff, not retried in a busy loop.
func TestAgentHostileSensors(t *testing.T) {
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	floodDone := filepath.Join(s.dir, "flood-done")
	s.nativeSensor("flood", fmt.Sprintf("#!/bin/bash\nyes 'flood flood flood flood flood flood flood flood flood flood' | head -c %d\ntouch %s\nexec sleep 100000\n",
		faultFloodBytes, floodDone))
	_, spawnerRule := s.nativeSensor("spawner", "#!/bin/bash\nfor i in $(seq 50); do sleep 100000 & done\necho spawned\nwait\n")
	_, stubbornRule := s.nativeSensor("stubborn", "#!/bin/bash\ntrap '' TERM\nexec sleep 100000\n")
	s.nativeSensor("closer", "#!/bin/bash\necho closing\nexec >&- 2>&-\nexec sleep 100000\n")
	s.nativeSensor("crashloop", "#!/bin/sh\necho crashing >&2\nexit 3\n")
	a := s.start("ATTUNE__ARTIFACTS__SENSOR_LOG_MAX_BYTES=1048576", "ATTUNE__ARTIFACTS__SENSOR_LOG_MAX_FILES=3")
	a.waitLog("Attune Sensor Agent is ready", 30*time.Second)
	agentPID := a.cmd.Process.Pid

	// Flood: heartbeats keep landing while 200 MB go through the agent.
	floodStart := time.Now()
	var beats []time.Time
	if !waitUntil(90*time.Second, func() bool {
		if _, _, b := s.workerRow(); len(beats) == 0 || !b.Equal(beats[len(beats)-1]) {
			beats = append(beats, b)
		}
		_, err := os.Stat(floodDone)
		return err == nil
	}) {
		t.Fatal("the flooding sensor never finished writing")
	}
	floodTook := time.Since(floodStart)
	var maxGap time.Duration
	for i := 1; i < len(beats); i++ {
		maxGap = max(maxGap, beats[i].Sub(beats[i-1]))
	}
	hwm := procStatusKB(t, agentPID, "VmHWM")
	t.Logf("flood of %d MB through the agent in %v; heartbeats seen %d, largest gap %v; agent VmHWM %d kB",
		faultFloodBytes>>20, floodTook.Round(time.Millisecond), len(beats), maxGap.Round(time.Millisecond), hwm)
	if maxGap > 3*faultHeartbeat {
		t.Errorf("heartbeat stalled for %v during the flood (interval %v)", maxGap, faultHeartbeat)
	}
	if hwm > 60<<10 {
		t.Errorf("agent peak RSS %d kB under the flood, want < 60 MB", hwm)
	}
	logDir := filepath.Join(s.dir, "artifacts", "sensors", "testpack.flood")
	for i, name := range []string{"stdout.log", "stdout.log.1", "stdout.log.2", "stdout.log.3"} {
		st, err := os.Stat(filepath.Join(logDir, name))
		switch {
		case i < 3 && err != nil:
			t.Errorf("rotated log %s missing: %v", name, err)
		case i == 3 && err == nil:
			t.Errorf("%s exists: more than sensor_log_max_files (3) files kept", name)
		case err == nil && st.Size() > 1<<20:
			t.Errorf("%s is %d bytes, over sensor_log_max_bytes", name, st.Size())
		}
	}

	// Closed output: not an exit, the same process keeps running.
	closer := s.waitSensorRunning(a, "testpack.closer", 10*time.Second)

	// Spawner: all 50 children are in its group and die with it.
	if !waitUntil(20*time.Second, func() bool { return len(s.sensorPIDs("testpack.spawner")) == 51 }) {
		t.Fatalf("spawner has %d processes, want 51", len(s.sensorPIDs("testpack.spawner")))
	}
	spawnerGroup := s.sensorLeaders("testpack.spawner")
	for _, pid := range s.sensorPIDs("testpack.spawner") {
		if g, _ := procPGID(pid); len(spawnerGroup) != 1 || g != spawnerGroup[0] {
			t.Errorf("spawner process %d in group %d, not the sensor's %v", pid, g, spawnerGroup)
		}
	}
	s.waitSensorRunning(a, "testpack.stubborn", 10*time.Second)

	// Crash loop: count its starts over 15 s from the first one.
	var first time.Time
	for _, l := range faultLogLines(a.stderr.String()) {
		if l.matches("sensor started", "sensor", "testpack.crashloop") {
			first, _ = time.Parse(time.RFC3339Nano, fmt.Sprint(l["time"]))
			break
		}
	}
	if first.IsZero() {
		t.Fatal("the crash-looping sensor never started")
	}
	time.Sleep(time.Until(first.Add(15*time.Second + 500*time.Millisecond)))
	starts := 0
	for _, l := range faultLogLines(a.stderr.String()) {
		at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(l["time"]))
		if l.matches("sensor started", "sensor", "testpack.crashloop") && !at.After(first.Add(15*time.Second)) {
			starts++
		}
	}
	t.Logf("crash loop: %d starts within 15 s of the first", starts)
	if starts < 2 || starts > 3 {
		t.Errorf("crash-looping sensor started %d times within 15 s, want 2 or 3 (5 s, then 10 s backoff)", starts)
	}

	if got := s.sensorLeaders("testpack.closer"); len(got) != 1 || got[0] != closer {
		t.Errorf("closer leaders %v, want [%d]: a closed stdout was taken for an exit", got, closer)
	}
	if n := faultLogCount(a.stderr.String(), "sensor exited", "sensor", "testpack.closer"); n != 0 {
		t.Errorf("%d 'sensor exited' lines for the sensor that only closed its output", n)
	}

	// Stop the spawner and the TERM-ignoring sensor together.
	mark := markAgentLog(a)
	s.db.exec(`UPDATE rule SET enabled = false WHERE id = ANY($1)`, []int64{spawnerRule, stubbornRule})
	stopAt := time.Now()
	s.publish("rule.disabled", "RuleDisabled", map[string]any{"rule_id": spawnerRule, "rule_ref": "testpack.spawner_rule",
		"trigger_ref": "testpack.spawner_trigger"})
	s.waitSensorGone(a, "testpack.spawner", 10*time.Second)
	s.waitSensorGone(a, "testpack.stubborn", 20*time.Second)
	stubbornTook := time.Since(stopAt)
	t.Logf("TERM-ignoring sensor gone %v after its rule was disabled", stubbornTook.Round(time.Millisecond))
	if stubbornTook < stopGrace-time.Second || stubbornTook > stopGrace+6*time.Second {
		t.Errorf("TERM-ignoring sensor gone after %v, want about the %v grace", stubbornTook, stopGrace)
	}
	if faultLogCount(mark.since(), "sensor did not stop in time, killed its process group", "sensor", "testpack.stubborn") != 1 {
		t.Errorf("no kill line for the TERM-ignoring sensor:\n%s", mark.since())
	}

	select {
	case <-a.done:
		t.Fatalf("agent exited (%d) under hostile sensors", a.code)
	default:
	}
	if hwm := procStatusKB(t, agentPID, "VmHWM"); hwm > 60<<10 {
		t.Errorf("agent peak RSS %d kB, want < 60 MB", hwm)
	}
	if code := a.stop(syscall.SIGTERM, 40*time.Second); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
	if left := s.sensorPIDs(""); len(left) > 0 {
		t.Errorf("sensor processes outlived the agent: %v", left)
	}
	if b, _ := os.ReadFile(filepath.Join(s.dir, "artifacts", "sensors", "testpack.crashloop", "stderr.log")); !strings.Contains(string(b), "crashing") {
		t.Errorf("crash loop stderr not captured: %q", b)
	}
}
