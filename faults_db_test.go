package main

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// faultHeartbeat is the heartbeat interval of the fault tests (seconds, as
// ATTUNE__SENSOR__HEARTBEAT_INTERVAL takes it).
const faultHeartbeat = time.Second

// TestAgentSurvivesDatabaseOutage runs one agent with two sensors through a
// PostgreSQL proxy and takes the database away three ways: cut (every
// connection reset, new ones refused) for three heartbeats, stall (nothing
// forwarded, no reset) for longer than the reconcile pass timeout, and a
// stall during which SIGTERM arrives. Each time: the sensors keep running
// as the very same processes, no duplicate appears, each component logs
// one line when the outage starts and one when it ends, the heartbeat
// resumes within one interval of recovery, and the worker row ends active
// with the right counters; under the last stall the agent still stops
// within a bound.
func TestAgentSurvivesDatabaseOutage(t *testing.T) {
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	proxy, viaProxy := newFaultProxyFor(t, s.dbURL)
	s.dbURL = viaProxy
	s.nativeSensor("sleeper", faultSleeperScript)
	s.sensorWithRule("shell_sensor", "shell_sensor.sh", "Shell", "", true)
	a := s.start()
	refs := []string{"testpack.sleeper", "testpack.shell_sensor"}
	pids := map[string]int{}
	for _, ref := range refs {
		s.waitSensorRunning(a, ref, 30*time.Second)
	}
	if !waitUntil(20*time.Second, func() bool {
		m, r, n := s.workerCounters()
		return m == 2 && r == 2 && n == 2
	}) {
		m, r, n := s.workerCounters()
		t.Fatalf("worker counters before the outage: monitored %d running %d rules %d, want 2 2 2", m, r, n)
	}
	for _, ref := range refs {
		l := s.sensorLeaders(ref)
		if len(l) != 1 {
			t.Fatalf("sensor %s has leaders %v before the outage", ref, l)
		}
		pids[ref] = l[0]
	}

	outage := func(t *testing.T, name string, fault func(), hold time.Duration) {
		mark := markAgentLog(a)
		fault()
		mark.waitSince(t, 10*time.Second, "heartbeat failed, retrying every interval")
		mark.waitSince(t, 15*time.Second, "read desired sensors failed; keeping the current sensors until the database answers")
		time.Sleep(hold) // the outage itself: a fixed length is the point here
		s.requireSameLeaders(t, pids, name+" outage")
		restored := time.Now()
		proxy.restore()
		recovery := s.waitHeartbeatAfter(t, restored, 10*time.Second)
		t.Logf("%s: heartbeat resumed %v after the database came back (interval %v)", name, recovery.Round(time.Millisecond), faultHeartbeat)
		if recovery > faultHeartbeat+750*time.Millisecond {
			t.Errorf("%s: heartbeat resumed %v after recovery, want within one interval (%v)", name, recovery, faultHeartbeat)
		}
		mark.waitSince(t, 10*time.Second, "heartbeat recovered")
		mark.waitSince(t, 10*time.Second, "desired sensors readable again")
		// Two more heartbeats and a pass: no flapping, no late lines.
		time.Sleep(2 * faultHeartbeat)
		log := mark.since()
		for msg, want := range map[string]int{
			"heartbeat failed, retrying every interval": 1,
			"heartbeat recovered":                       1,
			"read desired sensors failed; keeping the current sensors until the database answers": 1,
			"desired sensors readable again": 1,
			"sensor started":                 0,
			"stopping sensor":                0,
		} {
			if got := faultLogCount(log, msg); got != want {
				t.Errorf("%s: %d log line(s) %q, want %d", name, got, msg, want)
			}
		}
		s.requireSameLeaders(t, pids, "after the "+name+" outage")
		status, _, _ := s.workerRow()
		m, r, n := s.workerCounters()
		if status != "active" || m != 2 || r != 2 || n != 2 {
			t.Errorf("%s: worker row %s, monitored %d running %d rules %d; want active 2 2 2", name, status, m, r, n)
		}
	}

	t.Run("cut", func(t *testing.T) { outage(t, "cut", proxy.cut, 3*faultHeartbeat) })
	// The outage already outlasted reconcilePassTimeout: the pass stuck on
	// the silent connection timed out and said so before outage() holds on.
	t.Run("stall", func(t *testing.T) { outage(t, "stall", proxy.stall, faultHeartbeat) })

	t.Run("sigterm while stalled", func(t *testing.T) {
		mark := markAgentLog(a)
		proxy.stall()
		mark.waitSince(t, 10*time.Second, "heartbeat failed, retrying every interval")
		start := time.Now()
		code := a.stop(syscall.SIGTERM, 40*time.Second)
		took := time.Since(start)
		t.Logf("stalled database: agent exited %d after %v", code, took.Round(time.Millisecond))
		if code != exitOK {
			t.Errorf("exit code %d after SIGTERM with the database stalled, want 0", code)
		}
		// The inactive mark gets deregisterTimeout, the sensor_process
		// writer processCloseTimeout, closing the pool 2 s: bounded.
		if bound := deregisterTimeout + processCloseTimeout + dbCloseTimeout + 3*time.Second; took > bound {
			t.Errorf("shutdown took %v with the database stalled, want under %v", took, bound)
		}
		// One line per component, not per failed call: both sensors'
		// sensor_process writes fail, one line says so.
		for _, msg := range []string{"mark worker inactive failed", "sensor_process update failed"} {
			if n := faultLogCount(mark.since(), msg); n != 1 {
				t.Errorf("%d %q lines, want 1:\n%s", n, msg, mark.since())
			}
		}
		if left := s.sensorPIDs(""); len(left) > 0 {
			t.Errorf("sensor processes outlived the agent: %v", left)
		}
	})
}

// waitHeartbeatAfter polls the worker row (directly, not through the proxy)
// until last_heartbeat is later than after, and returns how long that took.
func (s *testStack) waitHeartbeatAfter(t testing.TB, after time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	var seen time.Duration
	if !waitUntil(timeout, func() bool {
		_, _, beat := s.workerRow()
		if beat.After(after) {
			seen = time.Since(after)
			return true
		}
		return false
	}) {
		t.Fatalf("no heartbeat within %v of the database coming back", timeout)
	}
	return seen
}

// TestAgentWaitsForDatabaseAtStart: the database answers only after the
// agent started retrying; the agent logs one line when it starts waiting
// and one when the database answers, then starts normally.
func TestAgentWaitsForDatabaseAtStart(t *testing.T) {
	t.Parallel()
	s := newTestStack(t, "legacy")
	proxy, viaProxy := newFaultProxyFor(t, s.dbURL)
	s.dbURL = viaProxy
	proxy.cut()
	a := s.start("ATTUNE__DATABASE__CONNECT_TIMEOUT=30")
	a.waitLog("database not reachable yet, retrying", 20*time.Second)
	// Let several attempts fail (200 ms doubling: ~4 within 3 s).
	before := proxy.connections()
	if !waitUntil(10*time.Second, func() bool { return proxy.connections() >= before+3 }) {
		t.Fatalf("agent stopped retrying: %d attempts", proxy.connections()-before)
	}
	attempts := proxy.connections()
	restored := time.Now()
	proxy.restore()
	a.waitLog("Attune Sensor Agent is ready", 20*time.Second)
	t.Logf("ready %v after the database came up, %d connection attempts while down",
		time.Since(restored).Round(time.Millisecond), attempts)
	log := a.stderr.String()
	if n := faultLogCount(log, "database not reachable yet, retrying"); n != 1 {
		t.Errorf("%d 'not reachable' lines, want 1 for the whole wait", n)
	}
	if n := faultLogCount(log, "database reachable"); n != 1 {
		t.Errorf("%d 'database reachable' lines, want 1", n)
	}
	if status, _, _ := s.workerRow(); status != "active" {
		t.Errorf("worker status %q, want active", status)
	}
	if code := a.stop(syscall.SIGTERM, 30*time.Second); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
}

// TestAgentDatabaseStalledAtStart: a server that accepts but never answers
// costs database.connect_timeout, then exit 1 with one line, like a refused
// connection does (TestAgentDatabaseUnreachableAtStart).
func TestAgentDatabaseStalledAtStart(t *testing.T) {
	t.Parallel()
	s := newTestStack(t, "legacy")
	proxy, viaProxy := newFaultProxyFor(t, s.dbURL)
	s.dbURL = viaProxy
	proxy.stall()
	start := time.Now()
	a := s.start("ATTUNE__DATABASE__CONNECT_TIMEOUT=3")
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("agent hung on a stalled database at start")
	}
	took := time.Since(start)
	t.Logf("stalled database at start: exit %d after %v", a.code, took.Round(time.Millisecond))
	if a.code != exitFailure {
		t.Errorf("exit code %d, want %d", a.code, exitFailure)
	}
	if took < 2500*time.Millisecond || took > 15*time.Second {
		t.Errorf("gave up after %v, want about connect_timeout (3 s)", took)
	}
	var final []string
	for _, line := range strings.Split(strings.TrimSpace(a.stderr.String()), "\n") {
		if strings.HasPrefix(line, "attune-sensor-agent:") {
			final = append(final, line)
		}
	}
	if len(final) != 1 || !strings.Contains(final[0], "database unavailable") {
		t.Errorf("want one final 'database unavailable' line, got %q", final)
	}
}
