package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// newTestSupervisor builds a supervisor over a fake launcher whose backoff is
// 20 ms × failures and whose healthy-run threshold is 10 minutes (never
// reached unless a test lowers it). It logs JSON into the returned buffer.
func newTestSupervisor(t *testing.T, l *fakeLauncher) (*supervisor, *fakeSensorEvents, *testLogBuffer) {
	t.Helper()
	logs := &testLogBuffer{}
	ev := &fakeSensorEvents{}
	s := &supervisor{
		spec:     sensorSpec{ID: 7, Ref: "pk.sensor", PackRef: "pk", Rules: []sensorRule{{ID: 1}}},
		launcher: l, events: ev,
		log:     slog.New(slog.NewJSONHandler(logs, nil)),
		outputs: writerOutputs{&fakeSensorLog{}, &fakeSensorLog{}},
		grace:   50 * time.Millisecond,
		backoff: func(failures int) time.Duration {
			l.recordBackoff(failures)
			return time.Duration(failures) * 20 * time.Millisecond
		},
		healthyRun: 10 * time.Minute,
	}
	return s, ev, logs
}

// runTestSupervisor runs s until the test ends and returns its cancel and a
// channel closed when run returns.
func runTestSupervisor(t *testing.T, s *supervisor) (context.CancelFunc, <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		s.kill()
		<-done
	})
	return cancel, done
}

// TestSupervisorRestartSchedule: an exit is noticed at once and reported
// with its status; the restart waits backoff(failures); the failure count
// grows with each quick exit and starts over after a healthy run.
func TestSupervisorRestartSchedule(t *testing.T) {
	l := newFakeLauncher(t)
	s, ev, logs := newTestSupervisor(t, l)
	s.healthyRun = 150 * time.Millisecond
	runTestSupervisor(t, s)

	// runFor is how long each run lasts before exiting with code 3;
	// wantFailures the count reported on that exit.
	steps := []struct {
		runFor       time.Duration
		wantFailures int
	}{
		{0, 1},
		{0, 2},
		{0, 3},
		{250 * time.Millisecond, 1}, // healthy run: the count starts over
		{0, 2},
	}
	for i, st := range steps {
		p := l.waitLaunch(t, i+1)
		if i > 0 {
			exited := ev.last("exited")
			gap := l.launchTimes()[i].Sub(exited.at)
			want := time.Duration(exited.failures) * 20 * time.Millisecond
			if gap < want || gap > want+500*time.Millisecond {
				t.Errorf("step %d: restart %v after the exit, want backoff %v", i, gap, want)
			}
		}
		time.Sleep(st.runFor)
		exitAt := time.Now()
		p.exit(exitStatus{Code: 3})
		e := ev.wait(t, "exited", i+1)
		if lag := e.at.Sub(exitAt); lag > 200*time.Millisecond {
			t.Errorf("step %d: exit noticed after %v, want at once", i, lag)
		}
		if e.failures != st.wantFailures || e.st.Code != 3 || e.ref != "pk.sensor" || e.pid != 0 {
			t.Errorf("step %d: sensorExited(%s, code %d, failures %d), want code 3 failures %d", i, e.ref, e.st.Code, e.failures, st.wantFailures)
		}
		if d := e.next.Sub(e.at); d < time.Duration(st.wantFailures)*20*time.Millisecond-5*time.Millisecond || d > time.Second {
			t.Errorf("step %d: next restart in %v, want %v", i, d, time.Duration(st.wantFailures)*20*time.Millisecond)
		}
	}
	if got, want := l.backoffCalls(), []int{1, 2, 3, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("backoff asked for failures %v, want %v", got, want)
	}
	starts := ev.byKind("started")
	for i, want := range []int{0, 1, 2, 3, 1} {
		if starts[i].failures != want || starts[i].pid != 1001+i {
			t.Errorf("start %d: sensorStarted(pid %d, failures %d), want pid %d failures %d", i, starts[i].pid, starts[i].failures, 1001+i, want)
		}
	}
	recs := logs.find("sensor exited")
	if len(recs) < 2 || recs[1]["attempt"] != float64(2) || recs[1]["retry_in"] != "40ms" || recs[1]["exit_code"] != float64(3) || recs[1]["sensor"] != "pk.sensor" {
		t.Errorf("sensor exited log lines: %v", recs)
	}
}

// TestSupervisorLaunchErrorsRetried: a failed launch counts as a failure,
// is reported with an unknown status, and is retried after the backoff until
// a launch succeeds; the start then reports the failures so far.
func TestSupervisorLaunchErrorsRetried(t *testing.T) {
	l := newFakeLauncher(t)
	l.errs = []error{errors.New("token refused"), errors.New("token refused again")}
	s, ev, logs := newTestSupervisor(t, l)
	runTestSupervisor(t, s)
	l.waitLaunch(t, 1)
	// The launcher hands the process over before the supervisor records the
	// start: wait for the event itself, never for the launch.
	started := ev.wait(t, "started", 1)
	exits := ev.byKind("exited")
	if len(exits) != 2 || exits[0].failures != 1 || exits[1].failures != 2 || exits[0].st.Code != -1 {
		t.Fatalf("exits %+v, want two unknown-status failures 1 and 2", exits)
	}
	if st := started; st.failures != 2 {
		t.Errorf("sensorStarted failures %d, want 2", st.failures)
	}
	if got := l.attempts(); got != 3 {
		t.Errorf("launch attempts %d, want 3", got)
	}
	if recs := logs.find("sensor start failed"); len(recs) != 2 || recs[0]["error"] != "token refused" {
		t.Errorf("start failures logged: %v", recs)
	}
}

// TestSupervisorRotatesToken: a launch whose token expires is stopped (with
// the grace) and launched again at rotateAfter, without counting a failure.
func TestSupervisorRotatesToken(t *testing.T) {
	l := newFakeLauncher(t)
	l.errs = []error{errors.New("api down")}
	l.rotateAfter = 80 * time.Millisecond
	s, ev, _ := newTestSupervisor(t, l)
	runTestSupervisor(t, s)
	p1 := l.waitLaunch(t, 1)
	p2 := l.waitLaunch(t, 2)
	gap := l.launchTimes()[1].Sub(l.launchTimes()[0])
	if gap < 80*time.Millisecond || gap > time.Second {
		t.Errorf("rotation after %v, want 80ms", gap)
	}
	if g := p1.graces(); len(g) != 1 || g[0] != 50*time.Millisecond {
		t.Errorf("rotation stopped the old process with graces %v, want [50ms]", g)
	}
	if p2.isDone() {
		t.Error("the rotated process is not running")
	}
	ev.wait(t, "started", 2) // recorded after the launch returns
	starts := ev.byKind("started")
	if starts[0].failures != 1 || starts[1].failures != 0 || len(ev.byKind("exited")) != 1 {
		t.Errorf("events %+v: a rotation must reset failures and report no exit", ev.all())
	}
}

// TestSupervisorShutdownDuringRotation: when the agent begins stopping while
// a rotation is stopping the old process, the sensor is reported stopped and
// not launched again.
func TestSupervisorShutdownDuringRotation(t *testing.T) {
	l := newFakeLauncher(t)
	l.rotateAfter = 30 * time.Millisecond
	l.stopDelay = 150 * time.Millisecond
	s, ev, _ := newTestSupervisor(t, l)
	cancel, done := runTestSupervisor(t, s)
	p := l.waitLaunch(t, 1)
	eventually(t, time.Second, "rotation stop", func() bool { return len(p.graces()) == 1 })
	cancel()
	waitClosed(t, done, 2*time.Second, "supervisor return")
	if n := l.attempts(); n != 1 {
		t.Errorf("%d launches, want 1: no relaunch once the agent is stopping", n)
	}
	if st := ev.byKind("stopped"); len(st) != 1 || st[0].st.Code != 143 {
		t.Errorf("stopped events %+v, want one (the sensor_process row must not stay running)", st)
	}
}

// fakeLauncher hands out fakeProcs, after any scripted errors. It fails the
// test if a sensor is launched while a previous process of it still runs.
type fakeLauncher struct {
	t           testing.TB
	errs        []error       // returned, in order, by the first launches
	rotateAfter time.Duration // handed to every launch
	stopDelay   time.Duration // how long each proc takes to stop after SIGTERM
	stubborn    bool          // procs ignore SIGTERM: Stop returns only after Kill
	gate        chan struct{} // when set, launch waits until it is closed

	mu        sync.Mutex
	nAttempts int
	procs     []*fakeProc
	times     []time.Time
	specs     []sensorSpec
	live      map[int64]*fakeProc
	backoffs  []int
}

func newFakeLauncher(t testing.TB) *fakeLauncher {
	return &fakeLauncher{t: t, live: map[int64]*fakeProc{}}
}

func (l *fakeLauncher) launch(ctx context.Context, spec sensorSpec, stdout, stderr io.Writer) (launched, error) {
	if ctx == nil || stdout == nil || stderr == nil {
		l.t.Errorf("launch of %s without ctx or output writers", spec.Ref)
	}
	l.mu.Lock()
	l.nAttempts++
	gate := l.gate
	l.mu.Unlock()
	if gate != nil {
		<-gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return launched{}, err
	}
	if prev := l.live[spec.ID]; prev != nil && !prev.isDone() {
		l.t.Errorf("sensor %d launched while its previous process (pid %d) still runs", spec.ID, prev.pid)
	}
	p := &fakeProc{pid: 1001 + len(l.procs), sensorID: spec.ID, stopDelay: l.stopDelay, stubborn: l.stubborn, done: make(chan struct{})}
	l.procs = append(l.procs, p)
	l.times = append(l.times, time.Now())
	l.specs = append(l.specs, spec)
	l.live[spec.ID] = p
	return launched{proc: p, rotateAfter: l.rotateAfter}, nil
}

func (l *fakeLauncher) recordBackoff(failures int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.backoffs = append(l.backoffs, failures)
}

func (l *fakeLauncher) backoffCalls() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.backoffs)
}

func (l *fakeLauncher) attempts() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nAttempts
}

func (l *fakeLauncher) launchTimes() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.times)
}

// proc returns the n-th process handed out (1-based).
func (l *fakeLauncher) proc(n int) *fakeProc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs[n-1]
}

// launchCount returns how many processes sensor id got.
func (l *fakeLauncher) launchCount(id int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, sp := range l.specs {
		if sp.ID == id {
			n++
		}
	}
	return n
}

// liveProc returns the latest process of sensor id.
func (l *fakeLauncher) liveProc(id int64) *fakeProc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.live[id]
}

// waitLaunch waits until n processes were handed out and returns the n-th.
func (l *fakeLauncher) waitLaunch(t *testing.T, n int) *fakeProc {
	t.Helper()
	eventually(t, 5*time.Second, fmt.Sprintf("launch #%d", n), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.procs) >= n
	})
	return l.proc(n)
}

// fakeProc is a process whose life the test controls: exit ends it, Stop
// ends it after stopDelay (as SIGTERM would) unless it is stubborn, Kill
// ends it at once.
type fakeProc struct {
	pid       int
	sensorID  int64
	stopDelay time.Duration
	stubborn  bool
	done      chan struct{}

	mu          sync.Mutex
	status      exitStatus
	stopGraces  []time.Duration
	hadDeadline bool
	nKills      int
}

func (p *fakeProc) Pid() int              { return p.pid }
func (p *fakeProc) Done() <-chan struct{} { return p.done }

func (p *fakeProc) Status() exitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// exit ends the process with st (first end wins).
func (p *fakeProc) exit(st exitStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return
	default:
	}
	st.At = time.Now()
	p.status = st
	close(p.done)
}

func (p *fakeProc) Stop(ctx context.Context, grace time.Duration) error {
	_, ok := ctx.Deadline()
	p.mu.Lock()
	p.stopGraces = append(p.stopGraces, grace)
	p.hadDeadline = ok
	p.mu.Unlock()
	if !p.stubborn {
		time.AfterFunc(p.stopDelay, func() { p.exit(exitStatus{Code: 143, Signal: syscall.SIGTERM}) })
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fake stop: %w", ErrProcStopTimeout)
	}
}

func (p *fakeProc) Kill() {
	p.mu.Lock()
	p.nKills++
	p.mu.Unlock()
	p.exit(exitStatus{Code: 137, Signal: syscall.SIGKILL})
}

func (p *fakeProc) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *fakeProc) graces() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.stopGraces)
}

func (p *fakeProc) stopHadDeadline() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hadDeadline
}

func (p *fakeProc) kills() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nKills
}
