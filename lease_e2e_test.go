package main

// lease_e2e_test.go runs several real agents on one database under workload
// leases (CONTRACT §12) and samples the machine's process table: every
// sensor runs exactly once, capacity holds, and sensors move on a graceful
// stop, a SIGKILL of an agent in its own PID namespace, a cordon, a
// placement change, and a database outage that forces self-fencing.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// leaseTestScale shrinks the lease numbers 30-fold in these tests: start
// lease 30 s, renewal lease 4 s, renewal every 1 s.
const leaseTestScale = "30"

// leaseAgent starts one more agent named name on the stack's database,
// broker and API, with its own artifacts and status file. pidns runs it as
// PID 1 of a new PID namespace, so a SIGKILL takes its sensors with it as in
// a container.
func (s *testStack) leaseAgent(name string, pidns bool, extra ...string) *agentProc {
	s.t.Helper()
	s.ensureRelease()
	own := filepath.Join(s.dir, "agents", name)
	if err := os.MkdirAll(own, 0o755); err != nil {
		s.t.Fatal(err)
	}
	env := agentEnv(s.dbURL, s.amqpURL, s.api.URL(), s.dir, append([]string{"LANG=C.UTF-8",
		"ATTUNE__SENSOR__WORKER_NAME=" + name, leaseScaleEnv + "=" + leaseTestScale,
		"ATTUNE__ARTIFACTS_DIR=" + filepath.Join(own, "artifacts"),
		"ATTUNE_SENSOR_STATUS_FILE=" + filepath.Join(own, "status.json")}, extra...)...)
	if !pidns {
		return startAgent(s.t, env)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		s.t.Fatalf("running an agent in its own PID namespace needs util-linux's unshare: %v", err)
	}
	return runAgentCmd(s.t, exec.Command(unshare, "--pid", "--fork", "--mount-proc", "--kill-child", buildAgent(s.t)), env,
		func(a *agentProc) { a.cmd.Process.Kill(); <-a.done })
}

// sleeperSensors seeds n quiet native sensors lease00..lease<n-1>.
func (s *testStack) sleeperSensors(n int) []string {
	s.t.Helper()
	refs := make([]string, n)
	for i := range refs {
		name := fmt.Sprintf("lease%02d", i)
		s.nativeSensor(name, faultSleeperScript)
		refs[i] = "testpack." + name
	}
	return refs
}

// leaseSampler samples, every 250 ms, how many instances of each sensor
// run and how many live leases each worker holds; it records every sample
// where a sensor ran twice or a worker held more than max.
type leaseSampler struct {
	s    *testStack
	refs []string
	max  int
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	violations []string
	samples    int
}

func (s *testStack) sampleLeases(refs []string, max int) *leaseSampler {
	ls := &leaseSampler{s: s, refs: refs, max: max, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(ls.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			ls.sample()
			select {
			case <-ls.stop:
				return
			case <-t.C:
			}
		}
	}()
	return ls
}

func (ls *leaseSampler) sample() {
	counts := ls.counts()
	var bad []string
	for ref, n := range counts {
		if n > 1 {
			bad = append(bad, fmt.Sprintf("%s runs %d times", ref, n))
		}
	}
	rows, err := ls.s.db.pool.Query(ls.s.t.Context(), `SELECT w.name, count(*) FROM sensor_workload_assignment a
JOIN worker w ON w.id = a.worker WHERE a.lease_expires_at > clock_timestamp() GROUP BY w.name`)
	if err == nil {
		for rows.Next() {
			var name string
			var n int
			if rows.Scan(&name, &n) == nil && n > ls.max {
				bad = append(bad, fmt.Sprintf("worker %s holds %d leases (max %d)", name, n, ls.max))
			}
		}
		rows.Close()
	}
	ls.mu.Lock()
	ls.samples++
	if len(bad) > 0 {
		sort.Strings(bad)
		ls.violations = append(ls.violations, time.Now().Format("15:04:05.000")+": "+strings.Join(bad, ", "))
	}
	ls.mu.Unlock()
}

// counts returns how many instances (process-group leaders) of each ref run.
func (ls *leaseSampler) counts() map[string]int {
	counts := map[string]int{}
	for _, ref := range ls.refs {
		counts[ref] = len(ls.s.sensorLeaders(ref))
	}
	return counts
}

// allOnce reports whether every sensor runs exactly once right now.
func (ls *leaseSampler) allOnce() bool {
	for _, n := range ls.counts() {
		if n != 1 {
			return false
		}
	}
	return true
}

// waitAllOnce waits until every sensor runs exactly once and returns how long it took.
func (ls *leaseSampler) waitAllOnce(t *testing.T, timeout time.Duration, when string) time.Duration {
	t.Helper()
	start := time.Now()
	if !waitUntil(timeout, ls.allOnce) {
		t.Fatalf("%s: sensors not each running exactly once within %s: %v%s", when, timeout, ls.counts(), leaseRowsText(t, ls.s.db))
	}
	return time.Since(start)
}

// finish stops sampling and fails the test for every violation seen.
func (ls *leaseSampler) finish(t *testing.T) {
	t.Helper()
	close(ls.stop)
	<-ls.done
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, v := range ls.violations {
		t.Error(v)
	}
	if ls.samples < 10 {
		t.Errorf("only %d samples taken: the check proves nothing", ls.samples)
	}
	t.Logf("%d samples, %d violations", ls.samples, len(ls.violations))
}

// TestLeasesSeveralAgents: four agents (one in its own PID namespace), 30
// sensors, max_concurrent_sensors 15 each: every sensor runs exactly once,
// capacity holds; a graceful stop moves its sensors within two passes, a
// SIGKILL within the renewal lease plus one pass.
func TestLeasesSeveralAgents(t *testing.T) {
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	refs := s.sleeperSensors(30)
	const max = 15
	limit := fmt.Sprintf("ATTUNE__SENSOR__MAX_CONCURRENT_SENSORS=%d", max)
	ls := s.sampleLeases(refs, max)
	agents := []*agentProc{
		s.leaseAgent("sensor-lease-a", false, limit),
		s.leaseAgent("sensor-lease-b", false, limit),
		s.leaseAgent("sensor-lease-c", false, limit),
		s.leaseAgent("sensor-lease-k", true, limit),
	}
	took := ls.waitAllOnce(t, 60*time.Second, "start")
	t.Logf("all 30 sensors running once %v after the agents started", took.Round(time.Millisecond))
	time.Sleep(3 * time.Second) // several passes and renewals with everything in place

	// Graceful stop: the agent releases its leases; others take them within two passes.
	s.requireHolds(t, "sensor-lease-a")
	if code := agents[0].stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("graceful stop exit code %d", code)
	}
	took = ls.waitAllOnce(t, 30*time.Second, "after SIGTERM")
	t.Logf("failover after SIGTERM: %v", took.Round(time.Millisecond))
	if took > 2*reconcileInterval+3*time.Second {
		t.Errorf("sensors of the stopped agent took %v to run elsewhere, want within two passes (%v) plus start time", took, 2*reconcileInterval)
	}
	time.Sleep(2 * time.Second)

	// SIGKILL of the agent in its own PID namespace: its sensors die with it,
	// its leases run out (renewal lease 4 s here) and others take them.
	s.requireHolds(t, "sensor-lease-k")
	killed := time.Now()
	agents[3].cmd.Process.Kill()
	<-agents[3].done
	took = ls.waitAllOnce(t, 60*time.Second, "after SIGKILL")
	renewal := defaultLeaseTimingScaled(t)
	t.Logf("failover after SIGKILL: %v (renewal lease %v)", time.Since(killed).Round(time.Millisecond), renewal)
	if d := time.Since(killed); d > renewal+reconcileInterval+5*time.Second {
		t.Errorf("sensors of the killed agent took %v to run elsewhere, want about the renewal lease (%v) plus one pass", d, renewal)
	}
	time.Sleep(2 * time.Second)
	ls.finish(t)
	s.checkLeaseRows(t)
}

// requireHolds fails the test unless worker name holds at least one live
// lease: a failover case where it held none would prove nothing.
func (s *testStack) requireHolds(t *testing.T, name string) {
	t.Helper()
	var n int
	s.db.pool.QueryRow(t.Context(), `SELECT count(*) FROM sensor_workload_assignment a JOIN worker w ON w.id = a.worker
WHERE w.name = $1 AND a.lease_expires_at > clock_timestamp()`, name).Scan(&n)
	if n == 0 {
		t.Fatalf("%s holds no lease, so its failover proves nothing:%s", name, leaseRowsText(t, s.db))
	}
	t.Logf("%s holds %d leases", name, n)
}

// defaultLeaseTimingScaled is the renewal lease the agents under test use.
func defaultLeaseTimingScaled(t *testing.T) time.Duration {
	t.Setenv(leaseScaleEnv, leaseTestScale)
	return defaultLeaseTiming().Renewal
}

// checkLeaseRows: owner columns all set or all NULL, generations ≥ 1 once used.
func (s *testStack) checkLeaseRows(t *testing.T) {
	t.Helper()
	checkAssignmentRows(t, s.db, true)
}

// TestLeasesFollowCordonPlacementAndForeignHolders: a cordoned worker's
// sensors move to the other; a placement that only one worker matches puts
// the sensor there; a live lease of a foreign (Rust) agent is never taken
// before it expires, and is taken after.
func TestLeasesFollowCordonPlacementAndForeignHolders(t *testing.T) {
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	refs := s.sleeperSensors(6)
	ls := s.sampleLeases(refs, 10)
	a := s.leaseAgent("sensor-lease-a", false, "ATTUNE__SENSOR__LABELS__zone=a")
	b := s.leaseAgent("sensor-lease-b", false, "ATTUNE__SENSOR__LABELS__zone=b")
	ls.waitAllOnce(t, 60*time.Second, "start")
	holder := func(ref string) string {
		var name string
		s.db.pool.QueryRow(t.Context(), `SELECT COALESCE(w.name, '') FROM sensor_workload_assignment a
JOIN sensor_workload sw ON sw.id = a.workload JOIN sensor se ON se.id = sw.sensor
LEFT JOIN worker w ON w.id = a.worker WHERE se.ref = $1 AND a.lease_expires_at > clock_timestamp()`, ref).Scan(&name)
		return name
	}
	allOn := func(name string) bool {
		for _, ref := range refs {
			if holder(ref) != name || len(s.sensorLeaders(ref)) != 1 {
				return false
			}
		}
		return true
	}

	s.db.exec(`UPDATE worker SET cordoned = true WHERE name = 'sensor-lease-a'`)
	if !waitUntil(30*time.Second, func() bool { return allOn("sensor-lease-b") }) {
		t.Fatalf("sensors did not all move off the cordoned worker:%s", leaseRowsText(t, s.db))
	}
	s.db.exec(`UPDATE worker SET cordoned = false WHERE name = 'sensor-lease-a'`)

	// Placement: only zone=a may run lease00.
	s.db.exec(`UPDATE sensor SET worker_selector = '{"zone": "a"}' WHERE ref = 'testpack.lease00'`)
	if !waitUntil(30*time.Second, func() bool {
		return holder("testpack.lease00") == "sensor-lease-a" && len(s.sensorLeaders("testpack.lease00")) == 1
	}) {
		t.Fatalf("lease00 did not move to the only worker its selector matches:%s", leaseRowsText(t, s.db))
	}

	// A foreign agent's live lease on lease05: stop ours, write theirs, wait.
	s.db.exec(`INSERT INTO worker (name, worker_type, worker_role, status, capabilities, last_heartbeat)
VALUES ('sensor-rust', 'local', 'sensor', 'active', '{"runtimes": ["native"]}', now())`)
	s.db.exec(`UPDATE sensor SET enabled_override = false WHERE ref = 'testpack.lease05'`)
	if !waitUntil(30*time.Second, func() bool { return len(s.sensorLeaders("testpack.lease05")) == 0 }) {
		t.Fatal("disabled sensor still runs")
	}
	s.db.exec(`UPDATE sensor_workload_assignment SET worker = (SELECT id FROM worker WHERE name = 'sensor-rust'),
	worker_instance = gen_random_uuid(), lease_expires_at = now() + interval '6 seconds', assigned_at = now(), renewed_at = now(),
	generation = generation + 1
WHERE workload = (SELECT sw.id FROM sensor_workload sw JOIN sensor se ON se.id = sw.sensor WHERE se.ref = 'testpack.lease05')`)
	foreignUntil := time.Now().Add(5 * time.Second)
	s.db.exec(`UPDATE sensor SET enabled_override = NULL WHERE ref = 'testpack.lease05'`)
	for time.Now().Before(foreignUntil) {
		if n := len(s.sensorLeaders("testpack.lease05")); n != 0 {
			t.Fatalf("a foreign agent's live lease was taken: lease05 runs %d times here", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !waitUntil(20*time.Second, func() bool {
		h := holder("testpack.lease05")
		return (h == "sensor-lease-a" || h == "sensor-lease-b") && len(s.sensorLeaders("testpack.lease05")) == 1
	}) {
		t.Fatalf("the expired foreign lease was not taken over:%s", leaseRowsText(t, s.db))
	}
	ls.finish(t)
	s.checkLeaseRows(t)
	for _, ag := range []*agentProc{a, b} {
		if code := ag.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Errorf("exit code %d", code)
		}
	}
}

// TestLeaseSelfFencingOnDatabaseOutage: agent A reaches the database
// through a proxy that is cut for longer than the renewal lease. A stops its
// sensors before their leases can lapse (self-fencing), B takes them, and
// after the database comes back nothing runs twice.
func TestLeaseSelfFencingOnDatabaseOutage(t *testing.T) {
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	refs := s.sleeperSensors(4)
	ls := s.sampleLeases(refs, 10)
	direct := s.dbURL
	proxy, viaProxy := newFaultProxyFor(t, s.dbURL)
	s.dbURL = viaProxy
	a := s.leaseAgent("sensor-lease-a", false)
	ls.waitAllOnce(t, 60*time.Second, "start on A")
	s.dbURL = direct
	b := s.leaseAgent("sensor-lease-b", false)
	time.Sleep(2 * time.Second) // B is live and idle: every lease is A's

	mark := markAgentLog(a)
	cut := time.Now()
	proxy.cut()
	mark.waitSince(t, 30*time.Second, "sensor stopped: lease lost")
	t.Logf("A self-fenced %v after the cut", time.Since(cut).Round(time.Millisecond))
	took := ls.waitAllOnce(t, 60*time.Second, "after A self-fenced")
	t.Logf("sensors running on B %v later", took.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	proxy.restore()
	time.Sleep(6 * time.Second) // A reconnects and passes again: it must not start duplicates
	ls.finish(t)
	s.checkLeaseRows(t)
	for _, ag := range []*agentProc{a, b} {
		if code := ag.stop(syscall.SIGTERM, 40*time.Second); code != 0 {
			t.Errorf("exit code %d", code)
		}
	}
}
