package main

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// stopGrace is how long a sensor group gets between SIGTERM and SIGKILL (CONTRACT §7).
const stopGrace = 5 * time.Second

// runningProc is one live sensor process as the supervisor sees it.
type runningProc interface {
	Pid() int
	Done() <-chan struct{}
	Status() exitStatus
	Stop(ctx context.Context, grace time.Duration) error
	Kill()
}

var _ runningProc = (*sensorProc)(nil)

// launched is a started sensor and, when its token expires, when to rotate it.
type launched struct {
	proc        runningProc
	rotateAfter time.Duration // 0: never
}

// launcher starts one sensor: token, plan, runtime environment, process.
// supervisor.go declares it; sensorLauncher in launcher.go is the real one.
type launcher interface {
	launch(ctx context.Context, spec sensorSpec, stdout, stderr io.Writer) (launched, error)
}

// sensorEvents receives the supervisor's state changes (sensor_process rows,
// alerts). All methods must return quickly.
type sensorEvents interface {
	sensorStarted(spec sensorSpec, pid int, failures int)
	sensorExited(spec sensorSpec, st exitStatus, failures int, nextRestart time.Time)
	sensorStopped(spec sensorSpec, st exitStatus)
}

// supervisor keeps one sensor running until its context ends: it launches the
// sensor, notices its exit at once, restarts it with backoff for as long as
// it should run, rotates it before its token expires, and stops its whole
// process group when told to. One goroutine (run) owns all of that.
type supervisor struct {
	spec     sensorSpec
	launcher launcher
	events   sensorEvents
	log      *slog.Logger
	outputs  sensorOutputs // opened per process generation (sensoroutput.go)
	out      sensorOutput  // the current generation's, nil between them
	grace    time.Duration
	// backoff returns the wait before the restart that follows the given
	// number of consecutive failures; nil means restartDelay with jitter.
	// Tests inject a millisecond schedule so they need not wait 5 s.
	backoff func(failures int) time.Duration
	// leases takes and gives back the workload lease of every start on the
	// newest generation (supervisorlease.go); nil on older ones.
	leases sensorLeases
	// healthyRun is how long a run must last for the failure count to start
	// over; 0 means healthyRunReset (60 s). Injectable for the same reason.
	healthyRun time.Duration

	mu       sync.Mutex
	proc     runningProc // nil while not running
	failures int
	killed   bool
}

// running reports whether the sensor process is alive right now.
func (s *supervisor) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// kill sends SIGKILL to the current process group at once (second signal).
func (s *supervisor) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killed = true
	if s.proc != nil {
		s.proc.Kill()
	}
}

// currentSpec returns the sensor row as last seen; the manager refreshes its
// rules in place, so reads go through the lock.
func (s *supervisor) currentSpec() sensorSpec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spec
}

func (s *supervisor) setProc(p runningProc) {
	s.mu.Lock()
	s.proc = p
	killed := s.killed
	s.mu.Unlock()
	if killed && p != nil {
		p.Kill()
	}
}

// run supervises until ctx ends, then stops the process group (SIGTERM,
// grace, SIGKILL) and returns once it is gone. The loop is split so that
// the long wait of an idle sensor (waitRun) happens in a small stack frame:
// the spec copies and log attributes live in startOnce and afterRun only,
// which lets the runtime shrink each idle supervisor's stack.
func (s *supervisor) run(ctx context.Context) {
	defer s.endOutput(outputSealWait) // a controlled stop: drained, then sealed within the bound
	for ctx.Err() == nil {
		r, again := s.startOnce(ctx)
		if r == nil {
			if !again {
				return
			}
			continue
		}
		ended := waitRun(ctx, r)
		if !s.afterRun(ctx, r, ended) {
			return
		}
	}
}

// oneRun is one launched process of the sensor, as the wait and its
// aftermath see it.
type oneRun struct {
	spec    sensorSpec
	l       launched
	h       *heldLease
	started time.Time
	rotate  *time.Timer // nil: no token rotation
}

// runEnd is what ended a wait.
type runEnd int

const (
	runExited runEnd = iota
	runLeaseLost
	runRotate
	runStopped
)

// startOnce takes the lease (newest generation), opens the outputs and
// launches. It returns the run, or nil and whether to try again (after the
// backoff wait of a failed start).
//
//go:noinline
func (s *supervisor) startOnce(ctx context.Context) (*oneRun, bool) {
	log := s.log.With("sensor", s.spec.Ref)
	h, spec, ok := s.takeLease(ctx, s.currentSpec())
	if !ok {
		return nil, false // not ours to run now: the manager's next pass decides again
	}
	out, err := s.outputs.open(ctx, spec)
	var l launched
	if err == nil {
		s.out = out
		l, err = s.launchLeased(ctx, spec, h, out.stdout(), out.stderr())
	}
	if err != nil {
		s.giveBack(h)
		s.endOutput(0)
		if ctx.Err() != nil {
			return nil, false
		}
		s.failures++
		delay := s.restartDelay(s.failures)
		log.Warn("sensor start failed", "attempt", s.failures, "retry_in", delay.Round(time.Millisecond).String(), "error", err)
		st := exitStatus{Code: -1, At: time.Now()}
		s.events.sensorExited(spec, st, s.failures, time.Now().Add(delay))
		return nil, s.backoffWait(ctx, spec, st, delay)
	}
	s.setProc(l.proc)
	log.Info("sensor started", "pid", l.proc.Pid(), "attempt", s.failures+1)
	s.events.sensorStarted(spec, l.proc.Pid(), s.failures)
	if h != nil {
		s.leases.running(h)
	}
	r := &oneRun{spec: spec, l: l, h: h, started: time.Now()}
	if l.rotateAfter > 0 {
		r.rotate = time.NewTimer(l.rotateAfter)
	}
	return r, true
}

// waitRun waits for one run of the sensor to end: an exit, a lost lease, a
// token rotation, or the end of ctx. It only waits; afterRun acts.
//
//go:noinline
func waitRun(ctx context.Context, r *oneRun) runEnd {
	var rotate <-chan time.Time // nil: no rotation, never ready
	if r.rotate != nil {
		rotate = r.rotate.C
	}
	select {
	case <-leaseLost(r.h):
		return runLeaseLost
	case <-r.l.proc.Done():
		return runExited
	case <-rotate:
		return runRotate
	case <-ctx.Done():
		return runStopped
	}
}

// afterRun handles how a run ended (then it waits out the restart delay, or
// stops the process group) and reports whether to launch again.
//
//go:noinline
func (s *supervisor) afterRun(ctx context.Context, r *oneRun, ended runEnd) bool {
	log := s.log.With("sensor", r.spec.Ref)
	spec, l, h := r.spec, r.l, r.h
	if r.rotate != nil {
		// Stopped here, not deferred in run's loop: a crash-looping sensor
		// would otherwise pile up one live timer per restart.
		r.rotate.Stop()
	}
	defer s.giveBack(h) // every way out ends this process's lease; a restart acquires anew
	switch ended {
	case runLeaseLost:
		st := s.stopProc(l.proc)
		log.Info("sensor stopped: lease lost", "pid", l.proc.Pid(), "reason", h.reason)
		s.events.sensorStopped(spec, st)
		return false
	case runExited:
		st := l.proc.Status()
		s.setProc(nil)
		s.giveBack(h) // before the backoff wait: another worker may take it meanwhile
		if ctx.Err() != nil {
			s.events.sensorStopped(spec, st)
			return false // run's deferred endOutput waits for the seals
		}
		s.endOutput(0) // a restart follows: the seals finish in the background
		if time.Since(r.started) >= s.healthyRunThreshold() {
			s.failures = 0
		}
		s.failures++
		delay := s.restartDelay(s.failures)
		log.Warn("sensor exited", "pid", l.proc.Pid(), "exit_code", st.Code, "signal", int(st.Signal),
			"attempt", s.failures, "retry_in", delay.Round(time.Millisecond).String())
		s.events.sensorExited(spec, st, s.failures, time.Now().Add(delay))
		return s.backoffWait(ctx, spec, st, delay)
	case runRotate:
		log.Info("sensor token rotation: restarting sensor", "pid", l.proc.Pid())
		st := s.stopProc(l.proc)
		s.failures = 0
		if ctx.Err() != nil {
			// The agent began stopping during the rotation stop: record the
			// stop, or the sensor_process row would stay "running".
			s.events.sensorStopped(spec, st)
			return false
		}
		s.endOutput(0)
		return true
	default: // runStopped
		st := s.stopProc(l.proc)
		log.Info("sensor stopped", "pid", l.proc.Pid(), "exit_code", st.Code, "signal", int(st.Signal))
		s.events.sensorStopped(spec, st)
		return false
	}
}

// backoffWait waits out a restart delay. When ctx ends first, the sensor
// is reported stopped with its last status: its sensor_process row must not
// keep announcing a restart (status backoff, next_restart_at) that will not
// happen once the agent or this sensor is stopping.
func (s *supervisor) backoffWait(ctx context.Context, spec sensorSpec, last exitStatus, delay time.Duration) bool {
	if sleepCtx(ctx, delay) {
		return true
	}
	s.events.sensorStopped(spec, last)
	return false
}

// restartDelay is the wait before the next launch after `failures`
// consecutive failures.
func (s *supervisor) restartDelay(failures int) time.Duration {
	if s.backoff != nil {
		return s.backoff(failures)
	}
	return restartDelay(failures, rand.Float64())
}

// healthyRunThreshold is the run length that resets the failure count.
func (s *supervisor) healthyRunThreshold() time.Duration {
	if s.healthyRun > 0 {
		return s.healthyRun
	}
	return healthyRunReset
}

// stopProc stops p with the grace period and a bounded wait for its exit.
func (s *supervisor) stopProc(p runningProc) exitStatus {
	grace := s.grace
	if grace <= 0 {
		grace = stopGrace
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace+5*time.Second)
	defer cancel()
	if err := p.Stop(ctx, grace); err != nil {
		s.log.Warn("sensor stop incomplete", "sensor", s.spec.Ref, "pid", p.Pid(), "error", err)
	}
	s.setProc(nil)
	return p.Status()
}

// endOutput ends the current generation's output (drained by then: a
// process's Done waits for its pipes), waiting at most bound.
func (s *supervisor) endOutput(bound time.Duration) {
	if s.out != nil {
		s.out.end(bound)
		s.out = nil
	}
}

// sleepCtx waits d or until ctx ends; it reports whether the full wait elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
