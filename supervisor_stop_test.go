package main

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSupervisorStopsOnCancel: ending ctx stops the process with the
// configured grace under a bounded context, reports sensorStopped with the
// status, closes the sensor's logs and returns.
func TestSupervisorStopsOnCancel(t *testing.T) {
	l := newFakeLauncher(t)
	s, ev, _ := newTestSupervisor(t, l)
	s.grace = 123 * time.Millisecond
	cancel, done := runTestSupervisor(t, s)
	p := l.waitLaunch(t, 1)
	// The supervisor takes the process a moment after the launcher hands it out.
	eventually(t, 5*time.Second, "running() while the process runs", s.running)
	cancel()
	waitClosed(t, done, 2*time.Second, "supervisor return after cancel")
	if g := p.graces(); !slices.Equal(g, []time.Duration{123 * time.Millisecond}) {
		t.Errorf("Stop graces %v, want [123ms]", g)
	}
	if !p.stopHadDeadline() {
		t.Error("Stop was called without a deadline: a stuck process would hold the supervisor forever")
	}
	stopped := ev.byKind("stopped")
	if len(stopped) != 1 || stopped[0].st.Signal != syscall.SIGTERM || stopped[0].st.Code != 143 {
		t.Errorf("stopped events %+v, want one with SIGTERM (143)", stopped)
	}
	if s.running() {
		t.Error("running() = true after the stop")
	}
	if !s.outputs.(writerOutputs).out.(*fakeSensorLog).isClosed() || !s.outputs.(writerOutputs).err.(*fakeSensorLog).isClosed() {
		t.Error("sensor logs not closed when the supervisor ended")
	}
}

// TestSupervisorCancelDuringBackoff: a sensor waiting to restart, after an
// exit or a failed launch, stops at once without a launch and is reported
// stopped (with the last exit status, if any), so its sensor_process row does
// not keep announcing a restart that will never come.
func TestSupervisorCancelDuringBackoff(t *testing.T) {
	cases := []struct {
		name      string
		launchErr error
		want      exitStatus
	}{
		{"after an exit", nil, exitStatus{Code: 1}},
		{"after a failed launch", errors.New("token refused"), exitStatus{Code: -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeLauncher(t)
			if tc.launchErr != nil {
				l.errs = []error{tc.launchErr}
			}
			s, ev, _ := newTestSupervisor(t, l)
			s.backoff = func(int) time.Duration { return time.Hour }
			cancel, done := runTestSupervisor(t, s)
			if tc.launchErr == nil {
				l.waitLaunch(t, 1).exit(exitStatus{Code: 1})
			}
			ev.wait(t, "exited", 1)
			start := time.Now()
			cancel()
			waitClosed(t, done, time.Second, "supervisor return during backoff")
			if d := time.Since(start); d > 200*time.Millisecond || l.attempts() != 1 {
				t.Errorf("returned after %v with %d launches, want at once with 1", d, l.attempts())
			}
			st := ev.byKind("stopped")
			if len(st) != 1 || st[0].st.Code != tc.want.Code || st[0].st.At.IsZero() {
				t.Errorf("stopped events %+v, want one with exit code %d", st, tc.want.Code)
			}
		})
	}
}

// TestSupervisorKill: kill() SIGKILLs a process that ignores its SIGTERM
// while the grace runs, and one handed over by a launch still in progress.
func TestSupervisorKill(t *testing.T) {
	t.Run("during stop", func(t *testing.T) {
		l := newFakeLauncher(t)
		l.stubborn = true
		s, ev, _ := newTestSupervisor(t, l)
		s.grace = time.Hour
		cancel, done := runTestSupervisor(t, s)
		p := l.waitLaunch(t, 1)
		cancel()
		eventually(t, time.Second, "Stop called", func() bool { return len(p.graces()) == 1 })
		start := time.Now()
		s.kill()
		waitClosed(t, done, time.Second, "supervisor return after kill")
		if d := time.Since(start); d > 200*time.Millisecond || p.kills() != 1 {
			t.Errorf("returned %v after kill with %d kills, want at once and 1", d, p.kills())
		}
		if st := ev.last("stopped"); st.st.Signal != syscall.SIGKILL {
			t.Errorf("stopped with %+v, want SIGKILL", st.st)
		}
	})
	t.Run("during launch", func(t *testing.T) {
		l := newFakeLauncher(t)
		l.gate = make(chan struct{})
		s, _, _ := newTestSupervisor(t, l)
		cancel, done := runTestSupervisor(t, s)
		eventually(t, time.Second, "launch begun", func() bool { return l.attempts() == 1 })
		cancel()
		s.kill()
		close(l.gate) // the launch completes after the kill (the fake ignores ctx)
		waitClosed(t, done, time.Second, "supervisor return")
		if p := l.proc(1); p.kills() == 0 {
			t.Error("a process handed over after kill() was not killed")
		}
	})
}

// waitClosed fails the test unless ch closes within timeout.
func waitClosed(t *testing.T, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// fakeSensorEvent is one call the supervisor made on its sensorEvents.
type fakeSensorEvent struct {
	kind     string // started, exited, stopped
	ref      string
	pid      int
	failures int
	st       exitStatus
	next     time.Time
	at       time.Time
}

// fakeSensorEvents records the supervisor's state changes in order.
type fakeSensorEvents struct {
	mu   sync.Mutex
	list []fakeSensorEvent
}

func (f *fakeSensorEvents) add(e fakeSensorEvent) {
	e.at = time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, e)
}

func (f *fakeSensorEvents) sensorStarted(spec sensorSpec, pid int, failures int) {
	f.add(fakeSensorEvent{kind: "started", ref: spec.Ref, pid: pid, failures: failures})
}

func (f *fakeSensorEvents) sensorExited(spec sensorSpec, st exitStatus, failures int, next time.Time) {
	f.add(fakeSensorEvent{kind: "exited", ref: spec.Ref, st: st, failures: failures, next: next})
}

func (f *fakeSensorEvents) sensorStopped(spec sensorSpec, st exitStatus) {
	f.add(fakeSensorEvent{kind: "stopped", ref: spec.Ref, st: st})
}

func (f *fakeSensorEvents) all() []fakeSensorEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.list)
}

func (f *fakeSensorEvents) byKind(kind string) []fakeSensorEvent {
	var out []fakeSensorEvent
	for _, e := range f.all() {
		if e.kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (f *fakeSensorEvents) last(kind string) fakeSensorEvent {
	l := f.byKind(kind)
	if len(l) == 0 {
		return fakeSensorEvent{}
	}
	return l[len(l)-1]
}

// wait waits until n events of kind were recorded and returns the n-th.
func (f *fakeSensorEvents) wait(t *testing.T, kind string, n int) fakeSensorEvent {
	t.Helper()
	eventually(t, 5*time.Second, fmt.Sprintf("%d %s event(s)", n, kind), func() bool { return len(f.byKind(kind)) >= n })
	return f.byKind(kind)[n-1]
}

// fakeSensorLog is a sensor output sink that records Close.
type fakeSensorLog struct {
	mu     sync.Mutex
	closed bool
}

func (w *fakeSensorLog) Write(p []byte) (int, error) { return len(p), nil }

func (w *fakeSensorLog) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return nil
}

func (w *fakeSensorLog) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}
