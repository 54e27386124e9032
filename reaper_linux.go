package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Limits of the reaper's buffer of exits nobody has claimed yet.
const (
	// reaperPendingMax bounds the buffer; the oldest entry goes first.
	reaperPendingMax = 1024
	// reaperPendingTTL drops unclaimed exits (orphans of sensors, reaped
	// while some start was in flight) after a while.
	reaperPendingTTL = 30 * time.Second
	// reaperSweepInterval is a safety net: a periodic pass that reaps and
	// prunes even if no SIGCHLD arrives.
	reaperSweepInterval = 10 * time.Second
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>.
const prSetChildSubreaper = 36

// reaper is the exit monitor of an agent that is PID 1 or a child
// subreaper (containerd's reaper pattern). Orphaned descendants are
// reparented to such a process, and unless it waits for them they stay
// zombies forever. So one goroutine reacts to SIGCHLD by calling
// Wait4(-1, WNOHANG) until nothing is left, and hands each status to the
// runner that started that pid. It is the only code in the agent that
// waits for children.
//
// A child can exit (and be reaped) before cmd.Start has even returned its
// pid to the runner. So the runner subscribes before Start (startCmd counts
// starts in flight) and, while any start is in flight, exits of unknown pids
// are buffered instead of dropped (bounded by reaperPendingMax and
// reaperPendingTTL). When no start is in flight an unknown pid can only be
// an orphan, and its status is dropped at once.
//
// The reaper is process-wide (SIGCHLD and subreaper status are): runners
// share it through acquireReaper and release.
type reaper struct {
	log  *slog.Logger
	pid1 bool
	now  func() time.Time
	// exists reports whether a pid names a live or not-yet-reaped process.
	exists func(pid int) bool

	mu sync.Mutex
	// waiters are called once, under mu, with their pid's exit; they must
	// not block (the runner's spawns the goroutine that finishes the run).
	// A callback instead of a channel plus a goroutine parked on it saves a
	// goroutine stack per sensor (docs/benchmarks.md item 6).
	waiters  map[int]func(exitStatus)
	pending  map[int]exitStatus
	starting int

	sigs    chan os.Signal
	stop    chan struct{}
	stopped chan struct{}
	refs    int // guarded by reaperMu
}

var _ exitMonitor = (*reaper)(nil)

var (
	reaperMu     sync.Mutex
	sharedReaper *reaper
)

// newReaperState returns a reaper with no goroutine (acquireReaper starts
// it; tests drive the bookkeeping directly).
func newReaperState(log *slog.Logger) *reaper {
	return &reaper{
		log:     log,
		now:     time.Now,
		exists:  pidExists,
		waiters: make(map[int]func(exitStatus)),
		pending: make(map[int]exitStatus),
	}
}

// acquireReaper returns the process's reaper, starting it on first use.
// Unless the agent is PID 1 it first makes the agent a child subreaper; an
// error means that failed and the caller must fall back to plainMonitor.
func acquireReaper(log *slog.Logger) (*reaper, error) {
	reaperMu.Lock()
	defer reaperMu.Unlock()
	if sharedReaper != nil {
		sharedReaper.refs++
		return sharedReaper, nil
	}
	r := newReaperState(log)
	r.pid1 = os.Getpid() == 1
	if !r.pid1 {
		if err := setChildSubreaper(true); err != nil {
			return nil, fmt.Errorf("become child subreaper: %w", err)
		}
	}
	r.refs = 1
	r.sigs = make(chan os.Signal, 1)
	r.stop = make(chan struct{})
	r.stopped = make(chan struct{})
	signal.Notify(r.sigs, syscall.SIGCHLD)
	go r.loop()
	sharedReaper = r
	return r, nil
}

// release drops one reference; the last one stops the goroutine and gives
// up subreaper status.
func (r *reaper) release() {
	reaperMu.Lock()
	defer reaperMu.Unlock()
	if r.refs--; r.refs > 0 {
		return
	}
	sharedReaper = nil
	signal.Stop(r.sigs)
	close(r.stop)
	<-r.stopped
	if !r.pid1 {
		if err := setChildSubreaper(false); err != nil {
			r.log.Warn("cannot give up child subreaper status", "error", err)
		}
	}
}

// strategy names the strategy for logs and tests.
func (r *reaper) strategy() string {
	if r.pid1 {
		return monitorReaperPID1
	}
	return monitorReaperSubreaper
}

// loop is the reaper goroutine. SIGCHLD signals coalesce, which is fine:
// every pass reaps until no exited child is left.
func (r *reaper) loop() {
	defer close(r.stopped)
	sweep := time.NewTicker(reaperSweepInterval)
	defer sweep.Stop()
	r.reap()
	for {
		select {
		case <-r.sigs:
		case <-sweep.C:
		case <-r.stop:
			r.reap()
			return
		}
		r.reap()
	}
}

// reap collects every exited child. It holds the lock across Wait4 (which
// does not block with WNOHANG) so that claim sees a pid either not yet
// reaped or reaped and published, never in between.
func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children; 0: none exited
			break
		}
		r.publishLocked(pid, decodeWaitStatus(ws, r.now()))
	}
	r.pruneLocked()
}

// publishLocked hands a status to its waiter, or buffers it while a start
// is in flight, or drops it (an orphan's).
func (r *reaper) publishLocked(pid int, st exitStatus) {
	if fn, ok := r.waiters[pid]; ok {
		delete(r.waiters, pid)
		fn(st)
		return
	}
	if r.starting == 0 {
		r.log.Debug("reaped orphan", "pid", pid, "exit_code", st.Code, "signal", int(st.Signal))
		return
	}
	if len(r.pending) >= reaperPendingMax {
		oldest, first := 0, true
		for p, s := range r.pending {
			if first || s.At.Before(r.pending[oldest].At) {
				oldest, first = p, false
			}
		}
		delete(r.pending, oldest)
	}
	r.pending[pid] = st
}

// pruneLocked drops buffered statuses older than reaperPendingTTL.
func (r *reaper) pruneLocked() {
	now := r.now()
	for pid, st := range r.pending {
		if now.Sub(st.At) > reaperPendingTTL {
			delete(r.pending, pid)
		}
	}
}

// subscribe announces a start in flight (before cmd.Start).
func (r *reaper) subscribe() {
	r.mu.Lock()
	r.starting++
	r.mu.Unlock()
}

// unsubscribe ends a start in flight. When none is left, everything still
// buffered belongs to orphans and is dropped.
func (r *reaper) unsubscribe() {
	r.mu.Lock()
	if r.starting--; r.starting == 0 {
		clear(r.pending)
	}
	r.mu.Unlock()
}

// claim returns a channel that receives pid's exit (claimFunc with a
// buffered channel; tests use it).
func (r *reaper) claim(pid int) <-chan exitStatus {
	ch := make(chan exitStatus, 1)
	r.claimFunc(pid, func(st exitStatus) { ch <- st })
	return ch
}

// claimFunc registers onExit for pid's exit, calling it at once with a
// buffered one. A buffered status is only trusted when the pid no longer
// exists: if it does, the entry came from an earlier, reaped process that
// had the same pid (pid reuse), and the real exit is still to come.
func (r *reaper) claimFunc(pid int, onExit func(exitStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.pending[pid]; ok {
		delete(r.pending, pid)
		if !r.exists(pid) {
			onExit(st)
			return
		}
	}
	r.waiters[pid] = onExit
}

// startCmd subscribes, starts cmd and claims its pid for onExit.
func (r *reaper) startCmd(cmd *exec.Cmd, onExit func(exitStatus)) error {
	r.subscribe()
	defer r.unsubscribe()
	if err := cmd.Start(); err != nil {
		return err
	}
	r.claimFunc(cmd.Process.Pid, onExit)
	return nil
}

// pidExists reports whether pid is alive or a zombie (kill 0 succeeds or is
// refused for permissions).
func pidExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// setChildSubreaper turns PR_SET_CHILD_SUBREAPER on or off for the agent.
func setChildSubreaper(on bool) error {
	var v uintptr
	if on {
		v = 1
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, v, 0); errno != 0 {
		return os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", errno)
	}
	return nil
}
