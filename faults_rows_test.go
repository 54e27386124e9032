package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentHostileRows seeds, next to one healthy sensor, rows that are
// hostile or broken in every way the database allows: entrypoints that
// escape the pack (../, absolute, URL, a symlink out of sensors/), a pack
// ref that is a path, an execution_config of the wrong JSON types, env_vars
// that try to set ATTUNE_* variables, a runtime this worker does not run,
// 5 MB of trigger_params, a pack with no directory, and a runtime deleted
// under a running sensor. Each such sensor is refused or degraded with a
// log line naming it and the reason, nothing it names is executed, the
// healthy sensor keeps its process and the agent never exits.
func TestAgentHostileRows(t *testing.T) {
	t.Parallel()
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	s.nativeSensor("sleeper", faultSleeperScript)
	native := s.rt["Native"]
	row := func(packID int64, packRef, name, entrypoint string, rt int64, params string) string {
		t.Helper()
		ref := "testpack." + name
		if packRef != "testpack" && !strings.Contains(packRef, "/") {
			ref = packRef + "." + name
		}
		id := s.db.sensor(packID, packRef, ref, entrypoint, rt, "")
		trig := s.db.trigger(packID, "testpack", "testpack."+name+"_trigger", id)
		s.db.rule(packID, "testpack", "testpack."+name+"_rule", trig, params, true)
		return ref
	}

	// A script outside the pack that proves it ran by leaving a marker.
	marker := filepath.Join(s.dir, "escaped-sensor-ran")
	outside := filepath.Join(s.dir, "outside", "evil.sh")
	os.MkdirAll(filepath.Dir(outside), 0o755)
	os.WriteFile(outside, []byte("#!/bin/sh\ntouch "+marker+"\nexec sleep 100000\n"), 0o755)
	if err := os.Symlink(outside, filepath.Join(s.dir, "packs", "testpack", "sensors", "escape.sh")); err != nil {
		t.Fatal(err)
	}

	badExec := s.db.runtime("core.badexec", "Shell", `{"interpreter": {"binary": 42, "args": "-x"}}`)
	envRT := s.db.runtime("core.envshell", "Shell", `{"interpreter": {"binary": "/bin/bash"},
		"env_vars": {"ATTUNE_API_TOKEN": "stolen-token", "attune_sensor_ref": "someone.else", "FAULT_OK": "yes"}}`)
	cobol := s.db.runtime("core.cobol", "COBOL", `{"interpreter": {"binary": "cobc"}}`)
	doomedRT := s.db.runtime("core.doomed", "Shell", `{"interpreter": {"binary": "/bin/bash"}}`)
	ghostPack := s.db.pack("ghostpack") // a row and a release, but nothing on the volume
	ghostRel := s.db.id(`INSERT INTO pack_release (pack, pack_ref, version, digest, content_path, archive_size, manifest)
VALUES ($1, 'ghostpack', '1.0.0', $2, 'x', 0, '{}') RETURNING id`, ghostPack, strings.Repeat("ab", 32))
	s.db.exec(`UPDATE pack SET active_release = $1 WHERE id = $2`, ghostRel, ghostPack)

	refused := map[string]string{ // sensor ref → what its log line must say
		row(s.packID, "testpack", "dotdot", "../../../../../../bin/sh", native, `{}`):   "leaves the pack's sensors directory",
		row(s.packID, "testpack", "absolute", "/bin/sleep", native, `{}`):               "is absolute",
		row(s.packID, "testpack", "url", "https://attacker.invalid/x.sh", native, `{}`): "is a URL",
		row(s.packID, "testpack", "symlink", "escape.sh", native, `{}`):                 "resolves outside the pack directory",
		row(s.packID, "testpack", "badexec", "sleeper.sh", badExec, `{}`):               `field "interpreter.binary"`,
		row(s.packID, "testpack", "bigparams", "sleeper.sh", native,
			`{"blob": "`+strings.Repeat("x", 5<<20)+`"}`): "ATTUNE_SENSOR_TRIGGERS is",
		row(ghostPack, "ghostpack", "sensor", "sleeper.sh", native, `{}`):    "Required pack 'ghostpack' is not local on the shared volume",
		row(s.packID, "../../etc", "badpackref", "sleeper.sh", native, `{}`): "invalid pack ref",
	}
	envRef := row(s.packID, "testpack", "envvars", "sleeper.sh", envRT, `{}`)
	cobolRef := row(s.packID, "testpack", "cobol", "sleeper.sh", cobol, `{}`)
	doomedRef := row(s.packID, "testpack", "doomed", "sleeper.sh", doomedRT, `{}`)

	a := s.start("ATTUNE__SENSOR__MAX_CONCURRENT_SENSORS=50")
	good := s.waitSensorRunning(a, "testpack.sleeper", 30*time.Second)
	pids := map[string]int{"testpack.sleeper": good}

	for ref, reason := range refused {
		if !waitUntil(20*time.Second, func() bool { return faultStartFailed(a.stderr.String(), ref, reason) }) {
			t.Errorf("no 'sensor start failed' line for %s saying %q", ref, reason)
		}
		if p := s.sensorPIDs(ref); len(p) > 0 {
			t.Errorf("refused sensor %s has processes %v", ref, p)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the script behind the escaping symlink was executed")
	}

	// Degraded: runs, but without the variables it had no right to set.
	envPID := s.waitSensorRunning(a, envRef, 20*time.Second)
	env := faultProcEnviron(t, envPID)
	if env["FAULT_OK"] != "yes" || env["ATTUNE_SENSOR_REF"] != envRef ||
		!strings.HasPrefix(env["ATTUNE_API_TOKEN"], "fake-sensor-token-") {
		t.Errorf("env_vars sensor environment: FAULT_OK=%q ATTUNE_SENSOR_REF=%q ATTUNE_API_TOKEN=%q",
			env["FAULT_OK"], env["ATTUNE_SENSOR_REF"], env["ATTUNE_API_TOKEN"])
	}
	if _, ok := env["attune_sensor_ref"]; ok {
		t.Error("a lower-case attune_ variable from env_vars reached the sensor")
	}
	for _, name := range []string{"ATTUNE_API_TOKEN", "attune_sensor_ref"} {
		if !faultLogHas(a.stderr.String(), "sensor launch", envRef, "reserved variable "+name) {
			t.Errorf("no warn line naming %s and the skipped %s", envRef, name)
		}
	}

	// Not for this worker: said once, never started.
	if !waitUntil(10*time.Second, func() bool {
		return faultLogHas(a.stderr.String(), "sensor not run on this worker", cobolRef, "core.cobol")
	}) {
		t.Errorf("no line saying why %s does not run here", cobolRef)
	}

	// A runtime deleted under a running sensor: the sensor row goes with it
	// (ON DELETE CASCADE) and the agent stops the process.
	s.waitSensorRunning(a, doomedRef, 20*time.Second)
	s.db.exec(`DELETE FROM runtime WHERE id = $1`, doomedRT)
	var left int
	s.db.pool.QueryRow(t.Context(), `SELECT count(*) FROM sensor WHERE ref = $1`, doomedRef).Scan(&left)
	if left != 0 {
		t.Errorf("deleting the runtime left %d sensor row(s): no cascade", left)
	}
	s.waitSensorGone(a, doomedRef, 20*time.Second)
	// Under a lease the renewal may notice first (the assignment row went with
	// the sensor): either way, one stop line.
	if faultLogCount(a.stderr.String(), "stopping sensor", "sensor", doomedRef, "reason", "no longer assigned")+
		faultLogCount(a.stderr.String(), "sensor stopped: lease lost", "sensor", doomedRef) != 1 {
		t.Errorf("no 'stopping sensor' line for %s", doomedRef)
	}

	// Rows the database itself refuses: a NUL byte in jsonb or text.
	for _, sql := range []string{
		`UPDATE runtime SET execution_config = '{"env_vars": {"X": "a\u0000b"}}'::jsonb WHERE id = $1`,
		`UPDATE sensor SET entrypoint = 'sleeper.sh' || chr(0) WHERE runtime = $1`,
	} {
		if _, err := s.db.pool.Exec(t.Context(), sql, envRT); err == nil {
			t.Errorf("PostgreSQL stored a NUL byte: %s", sql)
		}
	}

	// Still there, still the same healthy sensor, each refused sensor only
	// retried with backoff (5 s, then 10 s: at most 3 attempts by now).
	time.Sleep(2 * time.Second)
	select {
	case <-a.done:
		t.Fatalf("agent exited (%d) over hostile rows", a.code)
	default:
	}
	s.requireSameLeaders(t, pids, "after the hostile rows")
	for ref := range refused {
		if n := faultLogCount(a.stderr.String(), "sensor start failed", "sensor", ref); n > 4 {
			t.Errorf("%s: %d start attempts: backoff not holding", ref, n)
		}
	}
	if n := faultLogCount(a.stderr.String(), "sensor not run on this worker", "sensor", cobolRef); n != 1 {
		t.Errorf("%d lines about %s not running here, want 1", n, cobolRef)
	}
	if code := a.stop(syscall.SIGTERM, 40*time.Second); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
}

// faultStartFailed reports whether log has a "sensor start failed" line for
// sensor ref whose error contains reason.
func faultStartFailed(log, ref, reason string) bool {
	return slices.ContainsFunc(faultLogLines(log), func(l faultLogLine) bool {
		e, _ := l["error"].(string)
		return l.matches("sensor start failed", "sensor", ref) && strings.Contains(e, reason)
	})
}

// faultLogHas reports whether log has a line msg for sensor ref with some
// attribute value containing text.
func faultLogHas(log, msg, ref, text string) bool {
	return slices.ContainsFunc(faultLogLines(log), func(l faultLogLine) bool {
		if !l.matches(msg, "sensor", ref) {
			return false
		}
		for k, v := range l {
			if s, ok := v.(string); ok && k != "msg" && strings.Contains(s, text) {
				return true
			}
		}
		return false
	})
}

// faultProcEnviron reads /proc/<pid>/environ into a map.
func faultProcEnviron(t testing.TB, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if err != nil {
		t.Fatalf("read environ of %d: %v", pid, err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// TestCheckExecEnvSize: the largest variable execve takes passes, one byte
// more is refused naming the variable and its size.
func TestCheckExecEnvSize(t *testing.T) {
	fits := "ATTUNE_SENSOR_TRIGGERS=" + strings.Repeat("x", maxExecStringBytes-1-len("ATTUNE_SENSOR_TRIGGERS="))
	for _, tc := range []struct {
		name string
		env  []string
		want string // "" = accepted
	}{
		{name: "empty", env: nil},
		{name: "at the limit", env: []string{"PATH=/bin", fits}},
		{name: "one byte over", env: []string{"PATH=/bin", fits + "x"}, want: "ATTUNE_SENSOR_TRIGGERS is 131072 bytes"},
		{name: "5 MB config", env: []string{"ATTUNE_SENSOR_CONFIG_JSON=" + strings.Repeat("y", 5<<20)}, want: "ATTUNE_SENSOR_CONFIG_JSON is"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkExecEnvSize(tc.env)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrSensorEnvTooLarge) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want ErrSensorEnvTooLarge saying %q", err, tc.want)
			}
		})
	}
}

// TestExecEnvLimitIsTheKernels proves maxExecStringBytes against the real
// execve: a variable of exactly that size (NUL included) runs, one byte
// more fails with E2BIG.
func TestExecEnvLimitIsTheKernels(t *testing.T) {
	for _, tc := range []struct {
		size int // bytes of NAME=value, NUL excluded
		want error
	}{
		{size: maxExecStringBytes - 1, want: nil},
		{size: maxExecStringBytes, want: syscall.E2BIG},
	} {
		cmd := exec.Command("/bin/true")
		cmd.Env = []string{"X=" + strings.Repeat("v", tc.size-2)}
		err := cmd.Run()
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("execve with a %d-byte variable: %v, want %v", tc.size, err, tc.want)
		}
	}
}
