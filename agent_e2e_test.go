package main

import (
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentRegistersHeartbeatsAndShutsDown runs the real binary against
// PostgreSQL on both schema generations: the worker row appears active with
// the contract's capabilities, heartbeats move last_heartbeat, and SIGTERM
// leaves the row inactive with exit 0.
func TestAgentRegistersHeartbeatsAndShutsDown(t *testing.T) {
	for _, gen := range []string{"legacy", "current"} {
		t.Run(gen, func(t *testing.T) {
			s := newTestStack(t, gen)
			a := s.start("ATTUNE_SENSOR_RUNTIMES=shell,python")
			a.waitLog("Attune Sensor Agent is ready", 30*time.Second)

			status, caps, beat1 := s.workerRow()
			if status != "active" {
				t.Errorf("worker status %q, want active", status)
			}
			if got := caps["runtimes"]; !equalAnyStrings(got, []string{"python", "shell", "native"}) {
				t.Errorf("capabilities.runtimes = %v, want [python shell native]", got)
			}
			for _, k := range []string{"agent_mode", "agent_binary_name", "agent_binary_version", "detected_interpreters",
				"runtime_versions", "max_concurrent_sensors", "sensor_version", "active_rules",
				"sensor_processes_running", "sensor_processes_monitored"} {
				if _, ok := caps[k]; !ok {
					t.Errorf("capabilities lack %q: %v", k, caps)
				}
			}
			if caps["agent_mode"] != true || caps["agent_binary_name"] != "attune-sensor-agent" {
				t.Errorf("agent keys wrong: %v", caps)
			}
			if !waitUntil(10*time.Second, func() bool { _, _, b := s.workerRow(); return b.After(beat1) }) {
				t.Errorf("last_heartbeat never moved past %v", beat1)
			}
			if code := a.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
				t.Errorf("exit code %d after SIGTERM, want 0", code)
			}
			if status, _, _ := s.workerRow(); status != "inactive" {
				t.Errorf("worker status %q after shutdown, want inactive", status)
			}
			if !strings.Contains(a.stderr.String(), "Attune Sensor Agent shutdown complete") {
				t.Errorf("no shutdown line in log:\n%s", a.stderr.String())
			}
		})
	}
}

// TestAgentRefusesActionWorkerName: a name held by an action worker is a
// clear start-up error (exit 1), and the action row is left alone.
func TestAgentRefusesActionWorkerName(t *testing.T) {
	s := newTestStack(t, "current")
	s.db.exec(`INSERT INTO worker (name, worker_type, worker_role, status) VALUES ($1, 'local', 'action', 'active')`, s.name)
	a := s.start()
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not exit on a role clash")
	}
	if a.code != exitFailure {
		t.Errorf("exit code %d, want %d", a.code, exitFailure)
	}
	if !strings.Contains(a.stderr.String(), s.name) {
		t.Errorf("error does not name the worker %q:\n%s", s.name, a.stderr.String())
	}
	var role string
	s.db.pool.QueryRow(t.Context(), `SELECT worker_role::text FROM worker WHERE name = $1`, s.name).Scan(&role)
	if role != "action" {
		t.Errorf("action worker row changed: role %q", role)
	}
}

// TestAgentDatabaseUnreachableAtStart: the agent retries for
// database.connect_timeout, then exits 1 with one clear line and no password.
func TestAgentDatabaseUnreachableAtStart(t *testing.T) {
	closed := closedTestAddr(t)
	env := agentEnv("postgres://attune:s3cretpw@"+closed+"/attune", "amqp://guest:guest@"+closed+"/", "http://"+closed,
		t.TempDir(), "ATTUNE__DATABASE__CONNECT_TIMEOUT=2", "ATTUNE__SENSOR__WORKER_NAME=sensor-unreachable")
	start := time.Now()
	a := startAgent(t, env)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not give up on an unreachable database")
	}
	elapsed := time.Since(start)
	if a.code != exitFailure {
		t.Errorf("exit code %d, want %d", a.code, exitFailure)
	}
	if elapsed < 1500*time.Millisecond {
		t.Errorf("gave up after %v, before connect_timeout (2 s)", elapsed)
	}
	if strings.Contains(a.stderr.String(), "s3cretpw") {
		t.Errorf("password leaked into the output:\n%s", a.stderr.String())
	}
}

// TestAgentConfigErrorExit2: invalid configuration exits 2 naming the key.
func TestAgentConfigErrorExit2(t *testing.T) {
	closed := closedTestAddr(t)
	env := agentEnv("postgres://x@"+closed+"/x", "amqp://g:g@"+closed+"/", "http://"+closed, t.TempDir(),
		"ATTUNE__LOG__LEVEL=loud", "ATTUNE__SENSOR__WORKER_NAME=sensor-badcfg")
	a := startAgent(t, env)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not exit on invalid configuration")
	}
	if a.code != exitUsage || !strings.Contains(a.stderr.String(), "log.level") {
		t.Errorf("exit %d, stderr %q: want exit 2 naming log.level", a.code, a.stderr.String())
	}
}

func equalAnyStrings(v any, want []string) bool {
	l, ok := v.([]any)
	if !ok || len(l) != len(want) {
		return false
	}
	got := make([]string, len(l))
	for i, x := range l {
		got[i], _ = x.(string)
	}
	return slices.Equal(got, want)
}
