package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// capWarning is the manager's log line when sensors exceed max_concurrent_sensors.
const capWarning = "more sensors than max_concurrent_sensors: extra sensors not started"

// newTestManager builds a manager over l whose supervisors restart in ms; it
// stops every sensor when the test ends.
func newTestManager(t *testing.T, l *fakeLauncher, max int) (*sensorManager, *testLogBuffer) {
	t.Helper()
	logs := &testLogBuffer{}
	m := newSensorManager(l, &fakeSensorEvents{}, writerOutputs{&fakeSensorLog{}, &fakeSensorLog{}}, slog.New(slog.NewJSONHandler(logs, nil)), max, 50*time.Millisecond)
	m.backoff = func(int) time.Duration { return 10 * time.Millisecond }
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.stopAll(ctx); err != nil {
			t.Errorf("stopAll at cleanup: %v", err)
		}
	})
	return m, logs
}

// mgrSpec is sensor pk.s<id> of pack pk, row version `version`, with `rules` active rules.
func mgrSpec(id int64, version, rules int) sensorSpec {
	sp := sensorSpec{ID: id, Ref: fmt.Sprintf("pk.s%d", id), PackRef: "pk",
		Updated: time.Date(2026, 1, 1, 0, 0, version, 0, time.UTC)}
	for i := range rules {
		sp.Rules = append(sp.Rules, sensorRule{ID: id*100 + int64(i)})
	}
	return sp
}

// activeIDs lists the supervised sensors, sorted.
func (m *sensorManager) activeIDs() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []int64
	for id := range m.active {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// stoppingCount is the number of supervisors still stopping.
func (m *sensorManager) stoppingCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.stopping)
}

// stopCalls counts the Stop calls made on every process of sensor id.
func (l *fakeLauncher) stopCalls(id int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.procs {
		if p.sensorID == id {
			n += len(p.graces())
		}
	}
	return n
}

// TestManagerConverge drives converge through sequences of desired sets and
// checks, once the supervisors settled, which sensors are supervised, how
// often each was launched and stopped, the heartbeat counters and how many
// times the over-cap warning was logged.
func TestManagerConverge(t *testing.T) {
	type step struct {
		desired      []sensorSpec
		wantActive   []int64
		wantLaunches map[int64]int // cumulative
		wantStops    map[int64]int // cumulative
		wantCounters heartbeatCounters
		wantCapWarns int // cumulative
	}
	cases := []struct {
		name  string
		max   int
		steps []step
	}{
		{"start missing", 10, []step{
			{desired: []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(2, 0, 2)}, wantActive: []int64{1, 2},
				wantLaunches: map[int64]int{1: 1, 2: 1}, wantCounters: heartbeatCounters{Monitored: 2, Running: 2, ActiveRules: 3}},
		}},
		{"stop removed", 10, []step{
			{desired: []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(2, 0, 1)}, wantActive: []int64{1, 2}, wantLaunches: map[int64]int{1: 1, 2: 1},
				wantCounters: heartbeatCounters{Monitored: 2, Running: 2, ActiveRules: 2}},
			{desired: []sensorSpec{mgrSpec(1, 0, 1)}, wantActive: []int64{1}, wantLaunches: map[int64]int{1: 1, 2: 1},
				wantStops: map[int64]int{2: 1}, wantCounters: heartbeatCounters{Monitored: 1, Running: 1, ActiveRules: 1}},
			{desired: nil, wantActive: nil, wantLaunches: map[int64]int{1: 1, 2: 1}, wantStops: map[int64]int{1: 1, 2: 1}},
		}},
		{"restart when the sensor row changed", 10, []step{
			{desired: []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(2, 0, 1)}, wantActive: []int64{1, 2}, wantLaunches: map[int64]int{1: 1, 2: 1},
				wantCounters: heartbeatCounters{Monitored: 2, Running: 2, ActiveRules: 2}},
			// the pass that sees the change stops the old process; the next one starts the new
			{desired: []sensorSpec{mgrSpec(1, 1, 1), mgrSpec(2, 0, 1)}, wantActive: []int64{2}, wantLaunches: map[int64]int{1: 1, 2: 1},
				wantStops: map[int64]int{1: 1}, wantCounters: heartbeatCounters{Monitored: 1, Running: 1, ActiveRules: 1}},
			{desired: []sensorSpec{mgrSpec(1, 1, 1), mgrSpec(2, 0, 1)}, wantActive: []int64{1, 2}, wantLaunches: map[int64]int{1: 2, 2: 1},
				wantStops: map[int64]int{1: 1}, wantCounters: heartbeatCounters{Monitored: 2, Running: 2, ActiveRules: 2}},
		}},
		{"rule changes do not restart but update the counters", 10, []step{
			{desired: []sensorSpec{mgrSpec(1, 0, 1)}, wantActive: []int64{1}, wantLaunches: map[int64]int{1: 1},
				wantCounters: heartbeatCounters{Monitored: 1, Running: 1, ActiveRules: 1}},
			{desired: []sensorSpec{mgrSpec(1, 0, 3)}, wantActive: []int64{1}, wantLaunches: map[int64]int{1: 1},
				wantCounters: heartbeatCounters{Monitored: 1, Running: 1, ActiveRules: 3}},
		}},
		{"max_concurrent_sensors: lowest ids win, warned once per change", 2, []step{
			{desired: []sensorSpec{mgrSpec(3, 0, 1), mgrSpec(1, 0, 1), mgrSpec(2, 0, 1)}, wantActive: []int64{1, 2},
				wantLaunches: map[int64]int{1: 1, 2: 1}, wantCounters: heartbeatCounters{Monitored: 2, Running: 2, ActiveRules: 2}, wantCapWarns: 1},
			{desired: []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(2, 0, 1), mgrSpec(3, 0, 1)}, wantActive: []int64{1, 2},
				wantLaunches: map[int64]int{1: 1, 2: 1}, wantCounters: heartbeatCounters{Monitored: 2, Running: 2, ActiveRules: 2}, wantCapWarns: 1},
			{desired: []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(2, 0, 1), mgrSpec(3, 0, 1), mgrSpec(4, 0, 1)}, wantActive: []int64{1, 2},
				wantLaunches: map[int64]int{1: 1, 2: 1}, wantCounters: heartbeatCounters{Monitored: 2, Running: 2, ActiveRules: 2}, wantCapWarns: 2},
			{desired: []sensorSpec{mgrSpec(2, 0, 1)}, wantActive: []int64{2}, wantLaunches: map[int64]int{1: 1, 2: 1},
				wantStops: map[int64]int{1: 1}, wantCounters: heartbeatCounters{Monitored: 1, Running: 1, ActiveRules: 1}, wantCapWarns: 2},
		}},
		{"max_concurrent_sensors: running sensors keep their slots", 2, []step{
			{desired: []sensorSpec{mgrSpec(2, 0, 1), mgrSpec(3, 0, 1)}, wantActive: []int64{2, 3}, wantLaunches: map[int64]int{2: 1, 3: 1},
				wantCounters: heartbeatCounters{Monitored: 2, Running: 2, ActiveRules: 2}},
			{desired: []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(2, 0, 1), mgrSpec(3, 0, 1)}, wantActive: []int64{2, 3},
				wantLaunches: map[int64]int{2: 1, 3: 1},
				wantCounters: heartbeatCounters{Monitored: 2, Running: 2, ActiveRules: 2}, wantCapWarns: 1},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeLauncher(t)
			m, logs := newTestManager(t, l, tc.max)
			for i, st := range tc.steps {
				m.converge(t.Context(), slices.Clone(st.desired))
				settled := func() bool {
					for id, n := range st.wantLaunches {
						if l.launchCount(id) != n {
							return false
						}
					}
					return m.stoppingCount() == 0 && m.counters() == st.wantCounters
				}
				if !waitUntil(5*time.Second, settled) {
					t.Fatalf("step %d: never settled: counters %+v (want %+v), %d stopping", i, m.counters(), st.wantCounters, m.stoppingCount())
				}
				if got := m.activeIDs(); !slices.Equal(got, st.wantActive) {
					t.Errorf("step %d: supervised %v, want %v", i, got, st.wantActive)
				}
				for _, id := range []int64{1, 2, 3, 4} {
					if got := l.launchCount(id); got != st.wantLaunches[id] {
						t.Errorf("step %d: sensor %d launched %d time(s), want %d", i, id, got, st.wantLaunches[id])
					}
					if got := l.stopCalls(id); got != st.wantStops[id] {
						t.Errorf("step %d: sensor %d stopped %d time(s), want %d", i, id, got, st.wantStops[id])
					}
				}
				if got := logs.count(capWarning); got != st.wantCapWarns {
					t.Errorf("step %d: over-cap warning logged %d time(s), want %d", i, got, st.wantCapWarns)
				}
			}
		})
	}
}

// TestManagerCapWarningNamesSensors: the over-cap line names the sensors that
// do not run, and the line after the set fits again says so.
func TestManagerCapWarningNamesSensors(t *testing.T) {
	m, logs := newTestManager(t, newFakeLauncher(t), 1)
	m.converge(t.Context(), []sensorSpec{mgrSpec(2, 0, 1), mgrSpec(1, 0, 1), mgrSpec(3, 0, 1)})
	recs := logs.find(capWarning)
	if len(recs) != 1 || fmt.Sprint(recs[0]["not_started_sensors"]) != "[pk.s2 pk.s3]" || recs[0]["not_started"] != float64(2) {
		t.Fatalf("over-cap lines %v, want one naming pk.s2 and pk.s3", recs)
	}
	m.converge(t.Context(), []sensorSpec{mgrSpec(1, 0, 1)})
	if n := logs.count("all desired sensors fit max_concurrent_sensors"); n != 1 {
		t.Errorf("fit-again line logged %d time(s), want 1", n)
	}
}

// TestManagerNoSecondProcessWhileStopping: a sensor removed and desired
// again while its old process is still stopping is not started until that
// stop has finished (the fake launcher fails the test on any overlap).
func TestManagerNoSecondProcessWhileStopping(t *testing.T) {
	l := newFakeLauncher(t)
	l.stopDelay = 300 * time.Millisecond
	m, _ := newTestManager(t, l, 10)
	m.converge(t.Context(), []sensorSpec{mgrSpec(1, 0, 1)})
	p1 := l.waitLaunch(t, 1)
	m.converge(t.Context(), nil)
	m.converge(t.Context(), []sensorSpec{mgrSpec(1, 0, 1)})
	if n := l.launchCount(1); n != 1 || len(m.activeIDs()) != 0 {
		t.Fatalf("sensor launched %d time(s) and supervised %v while its old process stops", n, m.activeIDs())
	}
	waitClosed(t, p1.done, 2*time.Second, "old process stop")
	eventually(t, 2*time.Second, "stopping supervisor gone", func() bool { return m.stoppingCount() == 0 })
	m.converge(t.Context(), []sensorSpec{mgrSpec(1, 0, 1)})
	l.waitLaunch(t, 2)
}

// TestManagerStopPack stops the sensors of one pack only.
func TestManagerStopPack(t *testing.T) {
	l := newFakeLauncher(t)
	m, _ := newTestManager(t, l, 10)
	other := mgrSpec(3, 0, 1)
	other.PackRef, other.Ref = "other", "other.s3"
	m.converge(t.Context(), []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(2, 0, 1), other})
	l.waitLaunch(t, 3)
	m.stopPack("pk")
	if got := m.activeIDs(); !slices.Equal(got, []int64{3}) {
		t.Errorf("supervised after stopPack: %v, want [3]", got)
	}
	eventually(t, 2*time.Second, "pack pk stopped", func() bool {
		return l.liveProc(1).isDone() && l.liveProc(2).isDone()
	})
	if l.liveProc(3).isDone() {
		t.Error("a sensor of another pack was stopped")
	}
}

// TestManagerStopAllConcurrent: 20 sensors whose stop takes 300 ms each stop
// together, in about one stop time rather than twenty.
func TestManagerStopAllConcurrent(t *testing.T) {
	l := newFakeLauncher(t)
	l.stopDelay = 300 * time.Millisecond
	m, _ := newTestManager(t, l, 50)
	var desired []sensorSpec
	for id := int64(1); id <= 20; id++ {
		desired = append(desired, mgrSpec(id, 0, 1))
	}
	m.converge(t.Context(), desired)
	l.waitLaunch(t, 20)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := m.stopAll(ctx); err != nil {
		t.Fatalf("stopAll: %v", err)
	}
	took := time.Since(start)
	t.Logf("20 sensors × 300 ms stop: stopAll took %v", took)
	if took > 1500*time.Millisecond {
		t.Errorf("stopAll took %v, want about 300 ms (sequential would be 6 s)", took)
	}
	for id := int64(1); id <= 20; id++ {
		if p := l.liveProc(id); !p.isDone() || len(p.graces()) != 1 || p.kills() != 0 {
			t.Errorf("sensor %d: done %v, stops %d, kills %d; want one graceful stop", id, p.isDone(), len(p.graces()), p.kills())
		}
	}
	if c := m.counters(); c != (heartbeatCounters{}) {
		t.Errorf("counters after stopAll %+v, want zero", c)
	}
}

// TestManagerStopAllKillsAfterTimeout: sensors that ignore SIGTERM past the
// shutdown timeout are SIGKILLed together, and stopAll says so.
func TestManagerStopAllKillsAfterTimeout(t *testing.T) {
	l := newFakeLauncher(t)
	l.stubborn = true
	m, _ := newTestManager(t, l, 50)
	m.grace = time.Hour
	m.converge(t.Context(), []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(2, 0, 1), mgrSpec(3, 0, 1)})
	l.waitLaunch(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := m.stopAll(ctx)
	if took := time.Since(start); took > time.Second {
		t.Errorf("stopAll took %v, want the 200 ms timeout plus the kill", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stopAll error %v, want one wrapping the deadline", err)
	}
	for id := int64(1); id <= 3; id++ {
		if p := l.liveProc(id); !p.isDone() || p.kills() != 1 {
			t.Errorf("sensor %d: done %v, kills %d; want killed once", id, p.isDone(), p.kills())
		}
	}
}

// TestManagerKillAllDuringStop: the second signal (killAll) ends a stopAll
// that waits for stubborn sensors at once, long before its timeout.
func TestManagerKillAllDuringStop(t *testing.T) {
	l := newFakeLauncher(t)
	l.stubborn = true
	m, _ := newTestManager(t, l, 50)
	m.grace = time.Hour
	m.converge(t.Context(), []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(2, 0, 1)})
	l.waitLaunch(t, 2)
	errc := make(chan error, 1)
	go func() { errc <- m.stopAll(t.Context()) }()
	eventually(t, time.Second, "both stops begun", func() bool { return l.stopCalls(1) == 1 && l.stopCalls(2) == 1 })
	start := time.Now()
	m.killAll()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("stopAll: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("stopAll still waiting after killAll")
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("stopAll returned %v after killAll, want at once", d)
	}
}

// TestManagerCapKeepsRunningSensors: at max_concurrent_sensors, sensors that
// already run keep their slots even when a sensor sorting before them becomes
// desired (as after another agent's failover frees its lease).
func TestManagerCapKeepsRunningSensors(t *testing.T) {
	m, _ := newTestManager(t, newFakeLauncher(t), 2)
	m.converge(t.Context(), []sensorSpec{mgrSpec(2, 0, 1), mgrSpec(3, 0, 1)})
	m.converge(t.Context(), []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(2, 0, 1), mgrSpec(3, 0, 1)})
	if got := m.activeIDs(); !slices.Equal(got, []int64{2, 3}) {
		t.Fatalf("supervised %v, want the running 2 and 3 kept", got)
	}
	if n := m.stoppingCount(); n != 0 {
		t.Errorf("%d running sensors stopped to make room", n)
	}
	m.converge(t.Context(), []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(3, 0, 1)})
	if got := m.activeIDs(); !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("after 2 left: supervised %v, want 1 and 3", got)
	}
}
