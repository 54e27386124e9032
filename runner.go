package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Sentinel errors of process supervision.
var (
	// ErrProcSpec reports a procSpec the runner refuses to execute.
	ErrProcSpec = errors.New("invalid process spec")
	// ErrProcStopTimeout reports a process group that was still there after
	// SIGKILL and the bounded wait that follows it.
	ErrProcStopTimeout = errors.New("process did not exit after SIGKILL")
	// ErrProcUnsupported reports a platform without process groups and
	// wait status semantics the runner relies on (the agent targets Linux).
	ErrProcUnsupported = errors.New("process supervision is only supported on Linux")
)

// Timing of supervision. The 5 s grace is the reference's stop sequence
// (SIGTERM, 5 s, SIGKILL; CONTRACT §7).
const (
	// defaultStopGrace is the grace runToCompletion gives a command whose
	// context ended.
	defaultStopGrace = 5 * time.Second
	// stopKillWait bounds the wait for the exit event after SIGKILL. It is
	// longer than outputDrainDelay because Done waits for the drain too.
	stopKillWait = 5 * time.Second
	// outputDrainDelay bounds the wait for a dead sensor's output pipes to
	// reach EOF: a descendant that left the process group (setsid) may hold
	// them open forever.
	outputDrainDelay = 2 * time.Second
)

// Names of the exit monitor strategies, as logged and as tests assert.
const (
	monitorReaperPID1      = "reaper-pid1"
	monitorReaperSubreaper = "reaper-subreaper"
	monitorPlain           = "plain"
)

// exitStatus is how a process ended. Code follows the shell convention that
// sensors' authors and the sensor_process row (last_exit_code, last_signal)
// expect: the exit code, or 128+signal when a signal killed it, with the
// signal kept separately so nobody has to undo the arithmetic. Code is -1
// when the status could not be read.
type exitStatus struct {
	Code   int
	Signal syscall.Signal
	At     time.Time
}

// String renders the status for logs and error messages.
func (s exitStatus) String() string {
	switch {
	case s.Signal != 0:
		return fmt.Sprintf("killed by signal %d (%v), exit code %d", int(s.Signal), s.Signal, s.Code)
	case s.Code < 0:
		return "exit status unknown"
	default:
		return fmt.Sprintf("exit code %d", s.Code)
	}
}

// decodeWaitStatus turns a raw wait status into an exitStatus stamped at.
// Stops and continues are not exits (nobody asks for them with WUNTRACED)
// and decode as unknown.
func decodeWaitStatus(ws syscall.WaitStatus, at time.Time) exitStatus {
	switch {
	case ws.Exited():
		return exitStatus{Code: ws.ExitStatus(), At: at}
	case ws.Signaled():
		return exitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal(), At: at}
	default:
		return exitStatus{Code: -1, At: at}
	}
}

// exitStatusFromState decodes what os/exec's Wait recorded.
func exitStatusFromState(ps *os.ProcessState, at time.Time) exitStatus {
	if ps == nil {
		return exitStatus{Code: -1, At: at}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
		return decodeWaitStatus(ws, at)
	}
	return exitStatus{Code: ps.ExitCode(), At: at}
}

// exitMonitor is the one owner of wait for the processes the runner starts
// (STYLE 9): exactly one piece of code reaps each child, so no status is
// ever stolen or lost. Two strategies implement it: the reaper (PID 1 or
// child subreaper; reaper_linux.go) and plainMonitor.
type exitMonitor interface {
	// startCmd starts cmd and calls onExit with its exit status exactly
	// once, as soon as the process has been reaped. onExit must not block
	// (the reaper calls it under its lock).
	startCmd(cmd *exec.Cmd, onExit func(exitStatus)) error
}

// plainMonitor waits with one goroutine per process calling cmd.Wait, like
// go-runc's defaultMonitor. It is used when the agent can become neither
// PID 1's reaper nor a subreaper (orphans then go to the real init), and in
// tests. Since the runner owns the output pipes, cmd.Wait has no I/O to
// wait for and returns the moment the process exits.
type plainMonitor struct{}

var _ exitMonitor = plainMonitor{}

func (plainMonitor) startCmd(cmd *exec.Cmd, onExit func(exitStatus)) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		_ = cmd.Wait() // the status is in cmd.ProcessState; a non-zero exit is not a failure here
		onExit(exitStatusFromState(cmd.ProcessState, time.Now()))
	}()
	return nil
}

// procSpec describes one process to run. Path must be absolute (the caller
// resolves interpreters; the agent's own PATH must not decide what a sensor
// runs). Args are the arguments after the program name (argv[0] is Path).
// Env is the complete environment: nothing is inherited from the agent, and
// a nil Env means an empty one (CONTRACT §6). Dir empty means no working
// directory change (CONTRACT §7). Nil Stdout/Stderr mean /dev/null.
type procSpec struct {
	Ref    string
	Path   string
	Args   []string
	Env    []string
	Dir    string
	Stdout io.Writer
	Stderr io.Writer
}

// procRunner starts and supervises sensor processes and short setup
// commands. All of them go through its single exitMonitor, so while a reaper
// is active nothing else in the agent may wait for child processes (an
// os/exec Wait elsewhere would race the reaper and may fail with ECHILD);
// short commands use runToCompletion instead.
type procRunner struct {
	log        *slog.Logger
	mon        exitMonitor
	strategy   string
	stopGrace  time.Duration
	killWait   time.Duration
	drainDelay time.Duration
	release    func()
	closeOnce  sync.Once
}

// newProcRunner picks the exit monitor: the reaper when the agent is PID 1
// (it must reap orphans, CONTRACT §7) or can make itself a child subreaper
// (orphaned sensor descendants then reparent to the agent, which keeps them
// visible and reaps them); the plain monitor otherwise. Close releases it.
func newProcRunner(log *slog.Logger) (*procRunner, error) {
	mon, strategy, release, err := chooseExitMonitor(log)
	if err != nil {
		return nil, fmt.Errorf("process runner: %w", err)
	}
	log.Info("process supervision ready", "monitor", strategy, "pid", os.Getpid())
	return newProcRunnerWith(log, mon, strategy, release), nil
}

// newProcRunnerWith builds a runner over a given monitor (tests run one
// contract suite over every strategy with it).
func newProcRunnerWith(log *slog.Logger, mon exitMonitor, strategy string, release func()) *procRunner {
	return &procRunner{
		log: log, mon: mon, strategy: strategy, release: release,
		stopGrace: defaultStopGrace, killWait: stopKillWait, drainDelay: outputDrainDelay,
	}
}

// Close releases the exit monitor (stopping the reaper when this was its
// last user). Call it after every process the runner started is done; it
// does not stop them.
func (r *procRunner) Close() error {
	r.closeOnce.Do(func() {
		if r.release != nil {
			r.release()
		}
	})
	return nil
}

// start launches spec in its own process group with stdin from /dev/null.
// ctx bounds only the start: unlike exec.CommandContext, the process does
// not die with ctx, because its owner (the supervisor) stops it with the
// configured shutdown grace, which a context-triggered stop would cut short.
// Its life ends when it exits, or through Stop or Kill.
func (r *procRunner) start(ctx context.Context, spec procSpec) (*sensorProc, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %q: %w", spec.Ref, err)
	}
	if !filepath.IsAbs(spec.Path) {
		return nil, fmt.Errorf("start %q: program %q is not an absolute path: %w", spec.Ref, spec.Path, ErrProcSpec)
	}
	env := slices.Clone(spec.Env)
	if env == nil {
		env = []string{} // a nil Env would make os/exec inherit the agent's environment
	}
	cmd := &exec.Cmd{
		Path:        spec.Path,
		Args:        append([]string{spec.Path}, spec.Args...),
		Env:         env,
		Dir:         spec.Dir,
		SysProcAttr: procGroupAttr(),
	}
	outs := &outputPipes{log: r.log, ref: spec.Ref}
	var err error
	if cmd.Stdout, err = outs.add(spec.Stdout, "stdout"); err == nil {
		if sameOutputWriter(spec.Stdout, spec.Stderr) {
			cmd.Stderr = cmd.Stdout // one pipe, so the writer never sees two concurrent writes
		} else {
			cmd.Stderr, err = outs.add(spec.Stderr, "stderr")
		}
	}
	if err != nil {
		outs.abort()
		return nil, fmt.Errorf("start %q: %w", spec.Ref, err)
	}
	p := &sensorProc{ref: spec.Ref, log: r.log, killWait: r.killWait, done: make(chan struct{})}
	// Held until p is complete: the exit callback may run as soon as the
	// child is reaped, possibly before startCmd has returned.
	p.mu.Lock()
	drainDelay := r.drainDelay
	err = r.mon.startCmd(cmd, func(st exitStatus) { go p.finish(st, drainDelay) })
	outs.closeChildEnds()
	if err != nil {
		p.mu.Unlock()
		outs.abort()
		return nil, fmt.Errorf("start %q: %w", spec.Ref, err)
	}
	p.pid, p.proc, p.outs = cmd.Process.Pid, cmd.Process, outs
	p.mu.Unlock()
	r.log.Debug("sensor process started", "sensor", spec.Ref, "pid", p.pid, "pgid", p.pid)
	return p, nil
}

// runToCompletion runs a short command (venv creation, pip install) to its
// end through the same single wait owner as the sensors, and returns how it
// ended. A non-zero exit is not an error (the caller decides what it means);
// an error means it could not start, or ctx ended first: the command's group
// was then stopped (SIGTERM, the default 5 s grace, SIGKILL) before
// returning, so no setup process outlives the call.
func (r *procRunner) runToCompletion(ctx context.Context, spec procSpec) (exitStatus, error) {
	p, err := r.start(ctx, spec)
	if err != nil {
		return exitStatus{Code: -1}, err
	}
	select {
	case <-p.Done():
		return p.Status(), nil
	case <-ctx.Done():
	}
	if err := p.Stop(context.WithoutCancel(ctx), r.stopGrace); err != nil {
		return p.Status(), fmt.Errorf("run %q: %w (and stopping it: %w)", spec.Ref, ctx.Err(), err)
	}
	return p.Status(), fmt.Errorf("run %q: %w", spec.Ref, ctx.Err())
}

// sensorProc is one running process group started by procRunner. Its
// leader's pid is also the group id.
type sensorProc struct {
	ref      string
	pid      int
	log      *slog.Logger
	killWait time.Duration
	done     chan struct{}

	mu       sync.Mutex
	exited   bool // the leader was reaped: its pid, and so the pgid, may be reused
	termSent bool
	status   exitStatus
	proc     *os.Process  // released by finish; the exec.Cmd (env, args) is not kept
	outs     *outputPipes // drained by finish
}

// Pid is the leader's pid, which is also the process group id.
func (p *sensorProc) Pid() int { return p.pid }

// Done is closed once the leader has exited, the rest of its group has been
// killed and its output has been drained.
func (p *sensorProc) Done() <-chan struct{} { return p.done }

// Status is how the leader ended; valid once Done is closed.
func (p *sensorProc) Status() exitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Stop ends the process group: SIGTERM to the whole group (not only the
// leader, so interpreter wrappers and their children all hear it), up to
// grace for it to exit, then SIGKILL to the group and a bounded wait for the
// exit event. An ended ctx cuts the grace short. It returns nil once the
// process is gone, ErrProcStopTimeout if it survived SIGKILL.
func (p *sensorProc) Stop(ctx context.Context, grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if _, err := p.signalGroup(syscall.SIGTERM, true); err != nil {
		return fmt.Errorf("stop %q: %w", p.ref, err)
	}
	graceTimer := time.NewTimer(grace)
	defer graceTimer.Stop()
	select {
	case <-p.done:
		return nil
	case <-graceTimer.C:
	case <-ctx.Done():
	}
	sent, err := p.signalGroup(syscall.SIGKILL, false)
	if err != nil {
		return fmt.Errorf("stop %q: %w", p.ref, err)
	}
	if sent {
		p.log.Warn("sensor did not stop in time, killed its process group",
			"sensor", p.ref, "pid", p.pid, "pgid", p.pid, "grace", grace)
	}
	killTimer := time.NewTimer(p.killWait)
	defer killTimer.Stop()
	select {
	case <-p.done:
		return nil
	case <-killTimer.C:
		return fmt.Errorf("stop %q (pid %d): %w", p.ref, p.pid, ErrProcStopTimeout)
	}
}

// Kill sends SIGKILL to the whole group at once and does not wait (the
// agent's second shutdown signal; Done reports the end).
func (p *sensorProc) Kill() {
	if _, err := p.signalGroup(syscall.SIGKILL, false); err != nil {
		p.log.Warn("kill sensor process group failed", "sensor", p.ref, "pgid", p.pid, "error", err)
	}
}

// signalGroup signals the group unless the leader was already reaped:
// from then on the group id may name someone else's group, so nothing is
// sent. With once, a signal already sent is not repeated (two Stop calls,
// say the caller's and the context's, send one SIGTERM). sent reports
// whether a signal went out.
func (p *sensorProc) signalGroup(sig syscall.Signal, once bool) (sent bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited || (once && p.termSent) {
		return false, nil
	}
	if once {
		p.termSent = true
	}
	return true, signalProcGroup(p.pid, sig)
}

// finish runs once the leader has been reaped (the exit monitor spawns it,
// so no goroutine waits per sensor while it runs): it kills what is left of
// its group, drains the output and closes done.
//
// Why kill the rest of the group when the leader exits on its own: a
// sensor's children (a shell's pipeline, a Python multiprocessing pool)
// belong to that sensor run. Left alive they would keep the old run's
// trigger subscriptions and output pipes while the restart starts a second
// set, and nothing would ever stop them. This is done at once, while the
// group id cannot have been reused yet.
func (p *sensorProc) finish(st exitStatus, drainDelay time.Duration) {
	p.mu.Lock() // also waits for start to have filled in p
	p.exited = true
	p.status = st
	err := signalProcGroup(p.pid, syscall.SIGKILL)
	proc, outs := p.proc, p.outs
	p.proc, p.outs = nil, nil
	p.mu.Unlock()
	if err != nil {
		p.log.Warn("kill leftover sensor processes failed", "sensor", p.ref, "pgid", p.pid, "error", err)
	}
	outs.drain(drainDelay)
	_ = proc.Release() // the monitor already reaped it; this frees the pidfd
	p.log.Debug("sensor process exited", "sensor", p.ref, "pid", p.pid,
		"exit_code", st.Code, "signal", int(st.Signal))
	close(p.done)
}

// sameOutputWriter reports whether stdout and stderr are one non-nil writer
// (as os/exec does; comparing uncomparable writers panics, which means no).
func sameOutputWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a != nil && a == b
}
