package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitHeartbeatCond polls cond until it holds or 5 s pass.
func waitHeartbeatCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startHeartbeater runs h.run in a goroutine; the returned stop cancels it
// and returns run's result.
func startHeartbeater(t *testing.T, h *heartbeater) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("heartbeater did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestHeartbeaterFirstBeatAtOnce(t *testing.T) {
	reg := &fakeRegistry{t: t}
	var beats heartbeatBeats
	h := newHeartbeater(reg, slog.New(slog.DiscardHandler), 7, heartbeatOptions{
		Interval: time.Hour, // only the immediate beat can happen
		OnBeat:   beats.record,
	})
	stop := startHeartbeater(t, h)
	waitHeartbeatCond(t, "first beat", func() bool { return beats.count() == 1 })
	if err := stop(); err != nil {
		t.Errorf("run returned %v, want nil when ctx ends", err)
	}
	if got := reg.beatIDs(); len(got) != 1 || got[0] != 7 {
		t.Errorf("beats: want [7], got %v", got)
	}
	if n := len(reg.capsWrites()); n != 0 {
		t.Errorf("capabilities rewritten %d times with unchanged counters", n)
	}
}

func TestHeartbeaterRewritesCapabilitiesOnlyOnChange(t *testing.T) {
	reg := &fakeRegistry{t: t}
	var mu sync.Mutex
	current := heartbeatCounters{}
	var beats heartbeatBeats
	h := newHeartbeater(reg, slog.New(slog.DiscardHandler), 3, heartbeatOptions{
		Interval:     5 * time.Millisecond,
		Capabilities: capabilityInput{SensorVersion: "1.0.0"},
		Counters: func() heartbeatCounters {
			mu.Lock()
			defer mu.Unlock()
			return current
		},
		OnBeat: beats.record,
	})
	startHeartbeater(t, h)
	waitHeartbeatCond(t, "several beats", func() bool { return beats.count() >= 3 })
	if n := len(reg.capsWrites()); n != 0 {
		t.Fatalf("capabilities rewritten %d times while counters were unchanged", n)
	}
	mu.Lock()
	current = heartbeatCounters{Monitored: 2, Running: 1, ActiveRules: 4}
	mu.Unlock()
	waitHeartbeatCond(t, "capabilities write", func() bool { return len(reg.capsWrites()) == 1 })
	seen := beats.count()
	waitHeartbeatCond(t, "more beats", func() bool { return beats.count() >= seen+3 })
	writes := reg.capsWrites()
	if len(writes) != 1 {
		t.Fatalf("capabilities written %d times for one change", len(writes))
	}
	var caps map[string]any
	if err := json.Unmarshal(writes[0], &caps); err != nil {
		t.Fatalf("written capabilities are not JSON: %v", err)
	}
	for k, want := range map[string]float64{"sensor_processes_monitored": 2, "sensor_processes_running": 1, "active_rules": 4} {
		if caps[k] != want {
			t.Errorf("%s: want %v, got %v", k, want, caps[k])
		}
	}
	if caps["sensor_version"] != "1.0.0" {
		t.Errorf("sensor_version: want 1.0.0, got %v", caps["sensor_version"])
	}
	if last := beats.last(); last.c != (heartbeatCounters{Monitored: 2, Running: 1, ActiveRules: 4}) || last.id != 3 {
		t.Errorf("onBeat: want id 3 with the new counters, got %+v", last)
	}
}

func TestHeartbeaterRegistersAgainWhenRowIsGone(t *testing.T) {
	for _, failing := range []string{"beat", "updateCapabilities"} {
		t.Run(failing, func(t *testing.T) {
			reg := &fakeRegistry{t: t, nextID: 42}
			if failing == "beat" {
				reg.beatErrs = []error{ErrWorkerGone}
			} else {
				reg.capsErrs = []error{ErrWorkerGone}
			}
			var registered []int64
			var regMu sync.Mutex
			var beats heartbeatBeats
			h := newHeartbeater(reg, slog.New(slog.DiscardHandler), 5, heartbeatOptions{
				Interval:   5 * time.Millisecond,
				WorkerName: "sensor-a",
				Host:       "host-a",
				Counters:   func() heartbeatCounters { return heartbeatCounters{ActiveRules: 1} },
				OnBeat:     beats.record,
				OnRegistered: func(id int64) {
					regMu.Lock()
					registered = append(registered, id)
					regMu.Unlock()
				},
			})
			startHeartbeater(t, h)
			waitHeartbeatCond(t, "beats on the new row", func() bool {
				ids := reg.beatIDs()
				return len(ids) > 0 && ids[len(ids)-1] == 42
			})
			if got := h.workerID(); got != 42 {
				t.Errorf("workerID: want 42, got %d", got)
			}
			regMu.Lock()
			if len(registered) != 1 || registered[0] != 42 {
				t.Errorf("OnRegistered: want [42], got %v", registered)
			}
			regMu.Unlock()
			calls := reg.registerCalls()
			if len(calls) != 1 || calls[0].name != "sensor-a" || calls[0].host != "host-a" {
				t.Fatalf("register calls: want one for sensor-a@host-a, got %+v", calls)
			}
			if !strings.Contains(string(calls[0].caps), `"active_rules":1`) {
				t.Errorf("re-registration carries stale counters: %s", calls[0].caps)
			}
			if n := len(reg.capsWrites()); failing == "beat" && n != 1 {
				// the first tick wrote the changed counters to row 5, then
				// the beat found it gone; the new row got them at register.
				t.Errorf("capabilities writes: want 1, got %d", n)
			}
		})
	}
}

func TestHeartbeaterLogsOutageOnceAndKeepsGoing(t *testing.T) {
	boom := errors.New("connection refused")
	reg := &fakeRegistry{t: t, beatErrs: []error{boom, boom, boom, boom}}
	var logs heartbeatLogBuffer
	var beats heartbeatBeats
	h := newHeartbeater(reg, slog.New(slog.NewTextHandler(&logs, nil)), 9, heartbeatOptions{
		Interval: 5 * time.Millisecond,
		OnBeat:   beats.record,
	})
	stop := startHeartbeater(t, h)
	waitHeartbeatCond(t, "recovery after the outage", func() bool { return beats.count() >= 2 })
	if err := stop(); err != nil {
		t.Errorf("run returned %v", err)
	}
	out := logs.String()
	if n := strings.Count(out, "heartbeat failed"); n != 1 {
		t.Errorf("want one outage line for four failures, got %d:\n%s", n, out)
	}
	if n := strings.Count(out, "heartbeat recovered"); n != 1 {
		t.Errorf("want one recovery line, got %d:\n%s", n, out)
	}
	if !strings.Contains(out, "connection refused") || !strings.Contains(out, "worker_id=9") {
		t.Errorf("outage line lacks the cause or worker id:\n%s", out)
	}
	if n := len(reg.beatIDs()); n < 6 {
		t.Errorf("want at least 4 failed + 2 good beats, got %d", n)
	}
}

func TestHeartbeaterWarnsAboutLongInterval(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		warn     bool
	}{{89 * time.Second, false}, {90 * time.Second, true}, {5 * time.Minute, true}} {
		t.Run(tc.interval.String(), func(t *testing.T) {
			var logs heartbeatLogBuffer
			var beats heartbeatBeats
			h := newHeartbeater(&fakeRegistry{t: t}, slog.New(slog.NewTextHandler(&logs, nil)), 1, heartbeatOptions{
				Interval: tc.interval,
				OnBeat:   beats.record,
			})
			stop := startHeartbeater(t, h)
			waitHeartbeatCond(t, "first beat", func() bool { return beats.count() == 1 })
			stop()
			if got := strings.Count(logs.String(), "staleness cut-off"); got != map[bool]int{true: 1, false: 0}[tc.warn] {
				t.Errorf("warning lines: got %d, want warn=%v:\n%s", got, tc.warn, logs.String())
			}
		})
	}
}

func TestHeartbeaterRegistersWhenStartedWithoutID(t *testing.T) {
	reg := &fakeRegistry{t: t, nextID: 11}
	var beats heartbeatBeats
	h := newHeartbeater(reg, slog.New(slog.DiscardHandler), 0, heartbeatOptions{Interval: 5 * time.Millisecond, WorkerName: "w", OnBeat: beats.record})
	startHeartbeater(t, h)
	waitHeartbeatCond(t, "a beat on the registered row", func() bool {
		ids := reg.beatIDs()
		return len(ids) > 0 && ids[0] == 11
	})
	if n := len(reg.registerCalls()); n != 1 {
		t.Errorf("register calls: want 1, got %d", n)
	}
}

// heartbeatBeats records OnBeat calls.
type heartbeatBeats struct {
	mu  sync.Mutex
	all []heartbeatBeat
}

type heartbeatBeat struct {
	id int64
	at time.Time
	c  heartbeatCounters
}

func (b *heartbeatBeats) record(id int64, at time.Time, c heartbeatCounters) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.all = append(b.all, heartbeatBeat{id, at, c})
}

func (b *heartbeatBeats) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.all)
}

func (b *heartbeatBeats) last() heartbeatBeat {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.all[len(b.all)-1]
}

// heartbeatLogBuffer is a bytes.Buffer safe for a logging goroutine and a
// polling test.
type heartbeatLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *heartbeatLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *heartbeatLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeRegistry records calls and returns scripted errors (consumed in order;
// nil once exhausted). It fails the test when a call's ctx has no deadline:
// the heartbeater must bound every database call.
type fakeRegistry struct {
	t      *testing.T
	nextID int64 // id handed out by register

	mu       sync.Mutex
	beatErrs []error
	capsErrs []error
	regErrs  []error
	beats    []int64
	caps     [][]byte
	regs     []fakeRegisterCall
}

type fakeRegisterCall struct {
	name, host string
	caps       []byte
}

func (f *fakeRegistry) checkDeadline(ctx context.Context, call string) {
	if _, ok := ctx.Deadline(); !ok {
		f.t.Errorf("%s called without a deadline", call)
	}
}

func popHeartbeatErr(errs *[]error) error {
	if len(*errs) == 0 {
		return nil
	}
	err := (*errs)[0]
	*errs = (*errs)[1:]
	return err
}

func (f *fakeRegistry) register(ctx context.Context, name, host string, caps []byte) (int64, error) {
	f.checkDeadline(ctx, "register")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.regs = append(f.regs, fakeRegisterCall{name, host, caps})
	if err := popHeartbeatErr(&f.regErrs); err != nil {
		return 0, err
	}
	return f.nextID, nil
}

func (f *fakeRegistry) updateCapabilities(ctx context.Context, id int64, caps []byte) error {
	f.checkDeadline(ctx, "updateCapabilities")
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := popHeartbeatErr(&f.capsErrs); err != nil {
		return err
	}
	f.caps = append(f.caps, caps)
	return nil
}

func (f *fakeRegistry) beat(ctx context.Context, id int64) error {
	f.checkDeadline(ctx, "beat")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beats = append(f.beats, id)
	return popHeartbeatErr(&f.beatErrs)
}

func (f *fakeRegistry) beatIDs() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.beats...)
}

func (f *fakeRegistry) capsWrites() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.caps...)
}

func (f *fakeRegistry) registerCalls() []fakeRegisterCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRegisterCall(nil), f.regs...)
}
