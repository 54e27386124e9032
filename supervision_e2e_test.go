package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// supervisionStubbornScript is a native sensor that ignores SIGTERM (and so
// do the sleeps it runs, since an ignored signal stays ignored across exec):
// only the SIGKILL after the grace ends it.
const supervisionStubbornScript = "#!/bin/bash\ntrap '' TERM\necho stubborn sensor ready\nwhile :; do sleep 1; done\n"

// TestAgentSupervisesCrashLoopStubbornAndUnsafeSensors runs one agent with a
// sensor that exits 3 at once, one that ignores SIGTERM, three with unsafe
// entrypoints and a good one, and proves: the crash loop restarts after
// 5 s then announces 10 s, and sensor_process says so; the stubborn sensor
// is SIGKILLed 5 s after its rule is disabled; the unsafe entrypoints are
// refused, naming the sensor, and never executed; the good sensor runs
// undisturbed throughout.
func TestAgentSupervisesCrashLoopStubbornAndUnsafeSensors(t *testing.T) {
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	s.writeSensorScript("crasher", "#!/bin/sh\necho crashing >&2\nexit 3\n")
	s.writeSensorScript("stubborn", supervisionStubbornScript)
	// What ../../bin/sh would run if it were not refused: it leaves a trace.
	escaped := filepath.Join(s.dir, "escaped")
	if err := os.MkdirAll(filepath.Join(s.dir, "packs", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "packs", "bin", "sh"), []byte("#!/bin/sh\ntouch "+escaped+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.sensorWithRule("good", "native_sensor", "Native", "", true)
	s.sensorWithRule("crasher", "crasher", "Native", "", true)
	_, stubbornRule := s.sensorWithRule("stubborn", "stubborn", "Native", "", true)
	unsafe := map[string]string{"bad_parent": "../../bin/sh", "bad_abs": "/bin/sh", "bad_url": "http://x"}
	for name, ep := range unsafe {
		s.sensorWithRule(name, ep, "Native", "", true)
	}
	a := s.start()
	goodPID := s.waitSensorRunning(a, "testpack.good", 30*time.Second)
	s.waitSensorRunning(a, "testpack.stubborn", 30*time.Second)

	// The stubborn sensor: disable its rule; SIGTERM is ignored, SIGKILL follows 5 s later.
	s.db.exec(`UPDATE rule SET enabled = false WHERE id = $1`, stubbornRule)
	s.publish("rule.disabled", "RuleDisabled", map[string]any{"rule_id": stubbornRule,
		"rule_ref": "testpack.stubborn_rule", "trigger_ref": "testpack.stubborn_trigger"})
	s.waitSensorGone(a, "testpack.stubborn", 20*time.Second)
	stopping := waitAgentRecords(t, a, "stopping sensor", "testpack.stubborn", 1, 5*time.Second)[0]
	stopped := waitAgentRecords(t, a, "sensor stopped", "testpack.stubborn", 1, 5*time.Second)[0]
	took := agentRecordTime(t, stopped).Sub(agentRecordTime(t, stopping))
	t.Logf("stubborn sensor: stopped %v after the stop began (signal %v)", took, stopped["signal"])
	if took < 4900*time.Millisecond || took > 7*time.Second || stopped["signal"] != float64(syscall.SIGKILL) {
		t.Errorf("stubborn sensor stopped after %v by signal %v, want SIGKILL after the 5 s grace", took, stopped["signal"])
	}
	if len(agentRecords(a, "sensor did not stop in time, killed its process group", "testpack.stubborn")) != 1 {
		t.Error("no log line says the stubborn sensor's group was killed")
	}

	// The crash loop: attempt 1 waits ≈5 s, attempt 2 announces ≈10 s.
	exits := waitAgentRecords(t, a, "sensor exited", "testpack.crasher", 2, 30*time.Second)
	for i, want := range []time.Duration{5 * time.Second, 10 * time.Second} {
		retry, err := time.ParseDuration(fmt.Sprint(exits[i]["retry_in"]))
		t.Logf("crash loop: attempt %v exit code %v retry_in %v", exits[i]["attempt"], exits[i]["exit_code"], retry)
		if err != nil || exits[i]["attempt"] != float64(i+1) || exits[i]["exit_code"] != float64(3) ||
			retry < want || retry > want+want/10+time.Millisecond {
			t.Errorf("exit %d: %v, want attempt %d, exit code 3, retry_in %v..%v", i, exits[i], i+1, want, want+want/10)
		}
	}
	starts := agentRecords(a, "sensor started", "testpack.crasher")
	retry1, _ := time.ParseDuration(fmt.Sprint(exits[0]["retry_in"]))
	if len(starts) < 2 {
		t.Fatalf("crasher started %d time(s), want 2", len(starts))
	}
	gap := agentRecordTime(t, starts[1]).Sub(agentRecordTime(t, exits[0]))
	t.Logf("crash loop: first restart %v after the exit (announced %v)", gap, retry1)
	if gap < retry1 || gap > retry1+time.Second {
		t.Errorf("first restart %v after the exit, announced %v", gap, retry1)
	}
	var status string
	var failures, exitCode int
	var backoff time.Duration
	if !waitUntil(5*time.Second, func() bool {
		var next, stoppedAt time.Time
		err := s.db.pool.QueryRow(t.Context(), `SELECT status::text, consecutive_failures, last_exit_code, next_restart_at, last_stopped_at
			FROM sensor_process WHERE sensor_ref = 'testpack.crasher'`).Scan(&status, &failures, &exitCode, &next, &stoppedAt)
		backoff = next.Sub(stoppedAt)
		return err == nil && status == "backoff" && failures == 2
	}) || exitCode != 3 || backoff < 9900*time.Millisecond || backoff > 11100*time.Millisecond {
		t.Errorf("sensor_process of the crasher: status %q, consecutive_failures %d, last_exit_code %d, next restart %v after the stop; want backoff, 2, 3, ≈10 s",
			status, failures, exitCode, backoff)
	}

	// The unsafe entrypoints: refused with the sensor named, never run.
	for name := range unsafe {
		ref := "testpack." + name
		recs := agentRecords(a, "sensor start failed", ref)
		if len(recs) == 0 || !strings.Contains(fmt.Sprint(recs[0]["error"]), ref) ||
			!strings.Contains(fmt.Sprint(recs[0]["error"]), ErrUnsafeEntrypoint.Error()) {
			t.Errorf("%s: start failures logged %v, want one naming the sensor and the unsafe entrypoint", ref, recs)
		}
		if n := len(agentRecords(a, "sensor started", ref)); n != 0 || len(s.sensorPIDs(ref)) != 0 {
			t.Errorf("%s: started %d time(s), pids %v; want never", ref, n, s.sensorPIDs(ref))
		}
	}
	if _, err := os.Stat(escaped); err == nil {
		t.Error("the script at ../../bin/sh was executed")
	}

	// The good sensor ran throughout, as one process.
	if pids := s.sensorPIDs("testpack.good"); len(pids) == 0 || pids[0] != goodPID ||
		len(agentRecords(a, "sensor exited", "testpack.good")) != 0 {
		t.Errorf("good sensor disturbed: pid %d then %v", goodPID, pids)
	}
	if code := a.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if left := s.sensorPIDs(""); len(left) > 0 {
		t.Errorf("sensor processes outlived the agent: %v", left)
	}
	// Shutdown leaves every row stopped, even those waiting to restart; the
	// crasher keeps its last exit code. The unsafe sensors never had a
	// process, so they have no row (as in the reference: a start that fails
	// before a process exists writes none).
	rows, err := s.db.pool.Query(t.Context(), `SELECT sensor_ref, status::text, last_exit_code, next_restart_at IS NULL FROM sensor_process`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var ref, status string
		var code *int
		var noRestart bool
		if err := rows.Scan(&ref, &status, &code, &noRestart); err != nil {
			t.Fatal(err)
		}
		n++
		if _, neverRan := unsafe[strings.TrimPrefix(ref, "testpack.")]; neverRan {
			t.Errorf("sensor_process row for %s, which never had a process", ref)
		}
		if status != "stopped" || !noRestart || (ref == "testpack.crasher" && (code == nil || *code != 3)) {
			shown := "NULL"
			if code != nil {
				shown = strconv.Itoa(*code)
			}
			t.Errorf("sensor_process %s after shutdown: status %s, last_exit_code %s, next_restart_at cleared %v", ref, status, shown, noRestart)
		}
	}
	if rows.Err() != nil || n != 3 {
		t.Errorf("%d sensor_process rows (%v), want 3 (good, crasher, stubborn)", n, rows.Err())
	}
}

// TestAgentShutdownStopsStubbornSensorsTogether runs 20 sensors that ignore
// SIGTERM. One SIGTERM: the agent gives them the 5 s grace together, kills
// them and exits 0 in about one grace. Second agent, two SIGTERMs: every
// group is killed at once and the agent exits 3 well inside the grace.
func TestAgentShutdownStopsStubbornSensorsTogether(t *testing.T) {
	s := newTestStack(t, "legacy")
	t.Cleanup(s.killLeftovers)
	s.writeSensorScript("stubborn", supervisionStubbornScript)
	var refs []string
	for i := range 20 {
		name := fmt.Sprintf("stubborn%02d", i)
		s.sensorWithRule(name, "stubborn", "Native", "", true)
		refs = append(refs, "testpack."+name)
	}
	cap50 := "ATTUNE__SENSOR__MAX_CONCURRENT_SENSORS=50"

	a := s.start(cap50)
	s.waitSensorsRunning(a, refs, 60*time.Second)
	start := time.Now()
	code := a.stop(syscall.SIGTERM, 30*time.Second)
	took := time.Since(start)
	t.Logf("one SIGTERM, 20 SIGTERM-ignoring sensors: agent exited %d after %v", code, took)
	if code != exitOK || took < 4900*time.Millisecond || took >= 10*time.Second {
		t.Errorf("exit %d after %v; want 0 after one 5 s grace (< 10 s)", code, took)
	}
	if n := len(agentRecords(a, "sensor did not stop in time, killed its process group", "")); n != 20 {
		t.Errorf("%d groups killed after the grace, want 20", n)
	}
	if left := s.sensorPIDs(""); len(left) > 0 {
		t.Fatalf("sensor processes outlived the agent: %v", left)
	}

	a = s.start(cap50)
	s.waitSensorsRunning(a, refs, 60*time.Second)
	start = time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	waitAgentRecords(t, a, "stopping sensor", "", 20, 10*time.Second)
	code = a.stop(syscall.SIGTERM, 10*time.Second)
	took = time.Since(start)
	t.Logf("two SIGTERMs, 20 SIGTERM-ignoring sensors: agent exited %d after %v", code, took)
	if code != exitKilled || took > 3*time.Second {
		t.Errorf("exit %d after %v; want %d (killed) well inside the 5 s grace", code, took, exitKilled)
	}
	if !strings.Contains(a.stderr.String(), "second signal: killing every sensor group now") {
		t.Error("no log line for the second signal")
	}
	if left := s.sensorPIDs(""); len(left) > 0 {
		t.Errorf("sensor processes outlived the agent: %v", left)
	}
}

// TestAgentCapRotationAndVirtualenvReuse: with max_concurrent_sensors=2 and
// three eligible sensors the first two in ref order run and the log names the third;
// with 5 s tokens both running sensors are restarted at 80 % of the token's
// lifetime (≈4 s; the fake API truncates expiry to whole seconds) with a
// fresh token; the venv sensor's restart reuses its virtualenv untouched.
func TestAgentCapRotationAndVirtualenvReuse(t *testing.T) {
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	venvPack := s.db.pack("venvpack")
	rt := s.db.runtime("core.python_venv", "Python", `{
	  "interpreter": {"binary": "python3", "args": ["-u"]},
	  "environment": {"env_type": "virtualenv", "create_command": ["python3", "-m", "venv", "{env_dir}"], "interpreter_path": "{env_dir}/bin/python3"},
	  "dependencies": {"manifest_file": "requirements.txt", "install_command": ["{interpreter}", "-m", "pip", "install", "-r", "{manifest_path}"]},
	  "env_vars": {"PYTHONPATH": {"value": "{pack_dir}/lib", "operation": "prepend"}, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}}`)
	vs := s.db.sensor(venvPack, "venvpack", "venvpack.venv_sensor", "venv_sensor.py", rt, "")
	vt := s.db.trigger(venvPack, "venvpack", "venvpack.venv_trigger", vs)
	s.db.rule(venvPack, "venvpack", "venvpack.venv_rule", vt, `{}`, true)
	publishRelease(t, s.db, filepath.Join(s.dir, "packs"), "venvpack", venvPack, "1.0.0")
	s.sensorWithRule("second", "native_sensor", "Native", "", true)
	// zpack.third sorts after venvpack.*: it is the one over the cap.
	if out, err := exec.Command("cp", "-a", filepath.Join(s.dir, "packs", "testpack"), filepath.Join(s.dir, "packs", "zpack")).CombinedOutput(); err != nil {
		t.Fatalf("copy pack: %v: %s", err, out)
	}
	zpack := s.db.pack("zpack")
	publishRelease(t, s.db, filepath.Join(s.dir, "packs"), "zpack", zpack, "1.0.0")
	zs := s.db.sensor(zpack, "zpack", "zpack.third", "native_sensor", s.rt["Native"], "")
	zt := s.db.trigger(zpack, "zpack", "zpack.third_trigger", zs)
	s.db.rule(zpack, "zpack", "zpack.third_rule", zt, `{}`, true)
	s.api.setTokenTTL(5 * time.Second)
	a := s.start("ATTUNE__SENSOR__MAX_CONCURRENT_SENSORS=2")

	venvRef := "venvpack.venv_sensor"
	firstVenv := waitSensorEvents(t, s, venvRef, 1, 120*time.Second)[0]
	envDir := runtimeEnvDirOf(t, s.gen, s.dir, "venvpack", "python")
	marker, err := os.Stat(filepath.Join(envDir, runtimeEnvMarker))
	if err != nil {
		t.Fatalf("virtualenv marker: %v", err)
	}
	python, err := os.Stat(filepath.Join(envDir, "bin", "python3"))
	if err != nil {
		t.Fatalf("virtualenv python: %v", err)
	}

	for _, ref := range []string{venvRef, "testpack.second"} {
		evs := waitSensorEvents(t, s, ref, 2, 30*time.Second)
		if evs[0].Token == evs[1].Token || s.api.issuedTo(evs[1].Token) != ref {
			t.Errorf("%s: the restarted sensor did not post with a fresh token of its own", ref)
		}
		started := waitAgentRecords(t, a, "sensor started", ref, 2, 5*time.Second)
		rotated := agentRecords(a, "sensor token rotation: restarting sensor", ref)
		if len(rotated) == 0 {
			t.Fatalf("%s: no rotation logged", ref)
		}
		after := agentRecordTime(t, rotated[0]).Sub(agentRecordTime(t, started[0]))
		t.Logf("%s: token rotation %v after the start (5 s token)", ref, after)
		if after < 2900*time.Millisecond || after > 4500*time.Millisecond {
			t.Errorf("%s: rotated %v after the start, want 3.2..4 s (80 %% of a 4..5 s lifetime)", ref, after)
		}
	}
	if p := waitSensorEvents(t, s, venvRef, 2, time.Second)[1].Payload; !strings.HasPrefix(fmt.Sprint(p["executable"]), envDir+"/") {
		t.Errorf("restarted venv sensor ran %v, not the virtualenv's python", p["executable"])
	}
	if firstVenv.Payload["prefix"] != envDir {
		t.Errorf("venv sensor prefix %v, want %s", firstVenv.Payload["prefix"], envDir)
	}
	marker2, err1 := os.Stat(filepath.Join(envDir, runtimeEnvMarker))
	python2, err2 := os.Stat(filepath.Join(envDir, "bin", "python3"))
	if err1 != nil || err2 != nil || !marker2.ModTime().Equal(marker.ModTime()) || !os.SameFile(python, python2) ||
		!python2.ModTime().Equal(python.ModTime()) {
		t.Errorf("virtualenv recreated on restart: marker %v → %v, python same file %v (%v, %v)",
			marker.ModTime(), marker2.ModTime(), os.SameFile(python, python2), err1, err2)
	}

	warn := agentRecords(a, "more sensors than max_concurrent_sensors: extra sensors not started", "")
	if len(warn) != 1 || fmt.Sprint(warn[0]["not_started_sensors"]) != "[zpack.third]" {
		t.Errorf("over-cap warnings %v, want one naming zpack.third", warn)
	}
	if n := len(agentRecords(a, "sensor started", "zpack.third")); n != 0 || len(s.sensorPIDs("zpack.third")) != 0 {
		t.Errorf("zpack.third started %d time(s) over max_concurrent_sensors=2", n)
	}
	if code := a.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// waitSensorsRunning waits until every sensor of refs has a live process.
func (s *testStack) waitSensorsRunning(a *agentProc, refs []string, timeout time.Duration) {
	s.t.Helper()
	var missing []string
	if !waitUntil(timeout, func() bool {
		missing = missing[:0]
		for _, ref := range refs {
			if len(s.sensorPIDs(ref)) == 0 {
				missing = append(missing, ref)
			}
		}
		return len(missing) == 0
	}) {
		s.t.Fatalf("sensors %v not running within %v; agent stderr:\n%s", missing, timeout, a.stderr.String())
	}
}

// waitSensorEvents waits until sensor ref posted n events and returns them.
func waitSensorEvents(t *testing.T, s *testStack, ref string, n int, timeout time.Duration) []fakeEvent {
	t.Helper()
	var got []fakeEvent
	if !waitUntil(timeout, func() bool {
		got = got[:0]
		for _, e := range s.api.eventsSnapshot() {
			if e.SensorRef == ref {
				got = append(got, e)
			}
		}
		return len(got) >= n
	}) {
		t.Fatalf("%s posted %d event(s) within %v, want %d", ref, len(got), timeout, n)
	}
	return got
}

// agentRecords returns the agent's JSON log records whose msg is msg and,
// when sensor is not empty, whose sensor is sensor, in order.
func agentRecords(a *agentProc, msg, sensor string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(a.stderr.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != msg || (sensor != "" && rec["sensor"] != sensor) {
			continue
		}
		out = append(out, rec)
	}
	return out
}

// waitAgentRecords waits until the agent logged n records agentRecords matches.
func waitAgentRecords(t *testing.T, a *agentProc, msg, sensor string, n int, timeout time.Duration) []map[string]any {
	t.Helper()
	var recs []map[string]any
	if !waitUntil(timeout, func() bool { recs = agentRecords(a, msg, sensor); return len(recs) >= n }) {
		t.Fatalf("agent logged %d %q line(s) for %q within %v, want %d; stderr:\n%s", len(recs), msg, sensor, timeout, n, a.stderr.String())
	}
	return recs
}

// agentRecordTime is the time stamp of a JSON log record.
func agentRecordTime(t *testing.T, rec map[string]any) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"]))
	if err != nil {
		t.Fatalf("log record without a time: %v", rec)
	}
	return at
}
