//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeReaperWorld is the clock and pid table the reaper's bookkeeping sees
// in tests, so it can be checked without real processes.
type fakeReaperWorld struct {
	now   time.Time
	alive map[int]bool
}

func newTestReaperState(t *testing.T) (*reaper, *fakeReaperWorld) {
	w := &fakeReaperWorld{now: time.Unix(1700000000, 0), alive: map[int]bool{}}
	r := newReaperState(slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.now = func() time.Time { return w.now }
	r.exists = func(pid int) bool { return w.alive[pid] }
	return r, w
}

// publish stands in for one Wait4 result.
func (r *reaper) testPublish(pid, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.publishLocked(pid, exitStatus{Code: code, At: r.now()})
	r.pruneLocked()
}

func receiveNow(ch <-chan exitStatus) (exitStatus, bool) {
	select {
	case st := <-ch:
		return st, true
	default:
		return exitStatus{}, false
	}
}

func TestReaperBookkeeping(t *testing.T) {
	t.Run("an exit before registration is buffered and delivered", func(t *testing.T) {
		r, _ := newTestReaperState(t)
		r.subscribe()
		r.testPublish(100, 3) // the child exited before Start returned its pid
		ch := r.claim(100)
		r.unsubscribe()
		if st, ok := receiveNow(ch); !ok || st.Code != 3 {
			t.Fatalf("want buffered exit code 3, got %v (delivered %v)", st, ok)
		}
	})
	t.Run("an exit after registration is delivered once", func(t *testing.T) {
		r, w := newTestReaperState(t)
		r.subscribe()
		w.alive[100] = true
		ch := r.claim(100)
		r.unsubscribe()
		r.testPublish(100, 7)
		if st, ok := receiveNow(ch); !ok || st.Code != 7 {
			t.Fatalf("want exit code 7, got %v (delivered %v)", st, ok)
		}
		r.testPublish(100, 9) // a later process with the same pid, an orphan
		if _, ok := receiveNow(ch); ok {
			t.Fatal("a second status reached a finished waiter")
		}
	})
	t.Run("orphans are dropped when no start is in flight", func(t *testing.T) {
		r, _ := newTestReaperState(t)
		r.testPublish(200, 1)
		if len(r.pending) != 0 {
			t.Fatalf("pending: want empty, got %v", r.pending)
		}
	})
	t.Run("a stale buffered exit of a reused pid is not delivered", func(t *testing.T) {
		r, w := newTestReaperState(t)
		r.subscribe()
		r.testPublish(300, 1) // an orphan that had pid 300
		w.alive[300] = true   // our new child got pid 300 and still runs
		ch := r.claim(300)
		r.unsubscribe()
		if st, ok := receiveNow(ch); ok {
			t.Fatalf("stale status %v delivered to the new process", st)
		}
		r.testPublish(300, 4)
		if st, ok := receiveNow(ch); !ok || st.Code != 4 {
			t.Fatalf("want the real exit code 4, got %v (delivered %v)", st, ok)
		}
	})
	t.Run("buffered exits expire", func(t *testing.T) {
		r, w := newTestReaperState(t)
		r.subscribe()
		r.testPublish(400, 1)
		w.now = w.now.Add(reaperPendingTTL + time.Second)
		r.testPublish(401, 2)
		if _, ok := r.pending[400]; ok || len(r.pending) != 1 {
			t.Fatalf("pending: want only 401, got %v", r.pending)
		}
	})
	t.Run("the buffer is bounded and drops the oldest", func(t *testing.T) {
		r, w := newTestReaperState(t)
		r.subscribe()
		for pid := 1000; pid < 1000+reaperPendingMax+5; pid++ {
			w.now = w.now.Add(time.Millisecond)
			r.testPublish(pid, 0)
		}
		if len(r.pending) != reaperPendingMax {
			t.Fatalf("pending: want %d entries, got %d", reaperPendingMax, len(r.pending))
		}
		if _, ok := r.pending[1000]; ok {
			t.Fatal("the oldest entry survived")
		}
		if _, ok := r.pending[1000+reaperPendingMax+4]; !ok {
			t.Fatal("the newest entry was dropped")
		}
		r.unsubscribe()
		if len(r.pending) != 0 {
			t.Fatalf("pending after the last start: want empty, got %d", len(r.pending))
		}
	})
}

func init() {
	testHelpers["runner-pid1agent"] = helperPID1Agent
	testHelpers["runner-doublefork"] = helperDoubleFork
	testHelpers["runner-spawndaemon"] = func() int {
		exe, _ := os.Executable()
		c := exec.Command(exe)
		c.Env = []string{helperEnv + "=runner-daemon"}
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // leaves the sensor's group, like a daemon
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 90
		}
		fmt.Printf("daemon %d\n", c.Process.Pid)
		return 0 // without waiting: the daemon is orphaned
	}
	testHelpers["runner-daemon"] = func() int {
		time.Sleep(300 * time.Millisecond)
		return 0
	}
}

// helperDoubleFork is the sensor of the PID 1 test: it runs a child that
// starts a daemon (a grandchild in its own group) and exits, passes on the
// daemon's pid and exits 7.
func helperDoubleFork() int {
	exe, _ := os.Executable()
	c := exec.Command(exe)
	c.Env = []string{helperEnv + "=runner-spawndaemon"}
	out, err := c.Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 91
	}
	os.Stdout.Write(out)
	return 7
}

// helperPID1Agent is a mini agent run as PID 1 of a new pid namespace. It
// checks that newProcRunner picks the reaper, that its sensor's exit code
// arrives although an orphaned daemon also exits into the agent, and that
// no zombie is left behind.
func helperPID1Agent() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "pid1 agent: "+format+"\n", args...)
		return 1
	}
	if os.Getpid() != 1 {
		return fail("pid is %d, not 1", os.Getpid())
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := newProcRunner(log)
	if err != nil {
		return fail("new runner: %v", err)
	}
	defer r.Close()
	if r.strategy != monitorReaperPID1 {
		return fail("strategy: want %s, got %s", monitorReaperPID1, r.strategy)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exe, _ := os.Executable()
	var out runnerOutput
	p, err := r.start(ctx, procSpec{Ref: "pid1.sensor", Path: exe, Env: []string{helperEnv + "=runner-doublefork"}, Stdout: &out, Stderr: os.Stderr})
	if err != nil {
		return fail("start sensor: %v", err)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		return fail("sensor not done")
	}
	if st := p.Status(); st.Code != 7 || st.Signal != 0 {
		return fail("sensor status: want exit code 7, got %v", st)
	}
	var daemon int
	if _, err := fmt.Sscanf(out.String(), "daemon %d", &daemon); err != nil || daemon <= 1 {
		return fail("sensor output %q: %v", out.String(), err)
	}
	if err := pollPID1(ctx, func() string {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", daemon)); err == nil {
			return fmt.Sprintf("orphaned daemon %d still in /proc (state %s)", daemon, procState(daemon))
		}
		return ""
	}); err != nil {
		return fail("%v", err)
	}
	if err := pollPID1(ctx, func() string {
		if z := zombiePids(); len(z) > 0 {
			return fmt.Sprintf("zombies left: %v", z)
		}
		return ""
	}); err != nil {
		return fail("%v", err)
	}
	st, err := r.runToCompletion(ctx, procSpec{Ref: "pid1.setup", Path: "/bin/sh", Args: []string{"-c", "exit 5"}})
	if err != nil || st.Code != 5 {
		return fail("runToCompletion: want exit code 5, got %v (%v)", st, err)
	}
	fmt.Println("pid1 agent ok")
	return 0
}

// pollPID1 polls until check returns "" or ctx ends.
func pollPID1(ctx context.Context, check func() string) error {
	for {
		why := check()
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s", why)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// procState is the state letter of pid from /proc, "" if it is gone.
func procState(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

// zombiePids lists every zombie visible in /proc.
func zombiePids() []int {
	stats, _ := filepath.Glob("/proc/[0-9]*")
	var z []int
	for _, d := range stats {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err == nil && procState(pid) == "Z" {
			z = append(z, pid)
		}
	}
	return z
}

// TestReaperAsPID1 runs the mini agent as PID 1 of a new pid namespace.
// We are root in the test environment, so unshare must work: its failure
// fails the test.
func TestReaperAsPID1(t *testing.T) {
	reaperMu.Lock()
	busy := sharedReaper != nil
	reaperMu.Unlock()
	if busy {
		t.Fatal("a reaper is still active in the test process; it would race this test's exec")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("the PID 1 test needs util-linux's unshare on PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "--pid", "--fork", "--mount-proc", runnerTestExe(t))
	cmd.Env = append(os.Environ(), helperEnv+"=runner-pid1agent", "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("Operation not permitted")) {
			t.Fatalf("unshare --pid is not permitted (needs root or CAP_SYS_ADMIN; this environment is root, so it must work): %v\n%s", err, out)
		}
		t.Fatalf("mini agent as PID 1 failed: %v\n%s", err, out)
	}
	var ok bool
	for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
		ok = ok || sc.Text() == "pid1 agent ok"
	}
	if !ok {
		t.Fatalf("mini agent did not confirm:\n%s", out)
	}
}

// requireGroupGone waits until no live process is left in group pgid. With
// the reaper the agent is the subreaper of the dead members, so it must
// also have reaped them: the group must no longer exist at all.
func requireGroupGone(t *testing.T, pgid int, members []int, strategy string) {
	t.Helper()
	runnerEventually(t, 10*time.Second, func() (bool, string) {
		live := liveGroupMembers(pgid)
		if len(live) > 0 {
			return false, fmt.Sprintf("live members of group %d: %v (grandchildren %v)", pgid, live, members)
		}
		if strategy == "reaper" {
			if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
				return false, fmt.Sprintf("kill(-%d, 0) = %v, want ESRCH (unreaped zombies?)", pgid, err)
			}
		}
		return true, ""
	})
}

// liveGroupMembers lists the processes of group pgid that are not zombies,
// from /proc/<pid>/stat ("pid (comm) state ppid pgrp ...").
func liveGroupMembers(pgid int) []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var live []string
	for _, f := range stats {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		fields := strings.Fields(string(data[i+1:]))
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) && fields[0] != "Z" {
			live = append(live, f+":"+fields[0])
		}
	}
	return live
}

// runnerEventually polls cond every 20 ms until it holds or within elapses.
func runnerEventually(t *testing.T, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %s", within, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
