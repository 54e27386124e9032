//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Helper modes: the re-executed test binary plays the sensor.
func init() {
	testHelpers["runner-exit"] = func() int {
		code, _ := strconv.Atoi(os.Getenv("RUNNER_TEST_EXIT_CODE"))
		return code
	}
	testHelpers["runner-sleep"] = func() int { // dies of SIGTERM (Go's default)
		fmt.Println("ready")
		time.Sleep(2 * time.Minute)
		return 0
	}
	testHelpers["runner-ignoreterm"] = func() int {
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(2 * time.Minute)
		return 0
	}
	testHelpers["runner-grandchild"] = func() int {
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(2 * time.Minute)
		return 0
	}
	testHelpers["runner-forkgrand"] = helperForkGrandchildren
	testHelpers["runner-flood"] = func() int {
		total, _ := strconv.Atoi(os.Getenv("RUNNER_TEST_FLOOD_BYTES"))
		var chunk []byte
		for i := 0; i*100 < total; i++ {
			chunk = fmt.Appendf(chunk, "%09d %s\n", i, strings.Repeat("x", 89))
			if len(chunk) >= 64<<10 {
				os.Stdout.Write(chunk)
				chunk = chunk[:0]
			}
		}
		chunk = append(chunk, "END\n"...)
		os.Stdout.Write(chunk)
		return 0
	}
	testHelpers["runner-closestdout"] = func() int {
		os.Stdout.Close()
		fmt.Fprintln(os.Stderr, "ready")
		time.Sleep(2 * time.Minute)
		return 0
	}
	testHelpers["runner-dumpenv"] = func() int {
		fmt.Print(strings.Join(os.Environ(), "\n"))
		return 0
	}
}

// helperForkGrandchildren starts two grandchildren that ignore SIGTERM, in
// its own process group, prints "ready <pid> <pid>" and then either exits at
// once (RUNNER_TEST_LEADER_EXIT=1) or waits to be signalled.
func helperForkGrandchildren() int {
	exe, _ := os.Executable()
	var pids []string
	for range 2 {
		c := exec.Command(exe)
		c.Env = append(os.Environ(), helperEnv+"=runner-grandchild")
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 90
		}
		pids = append(pids, strconv.Itoa(c.Process.Pid))
	}
	fmt.Println("ready " + strings.Join(pids, " "))
	if os.Getenv("RUNNER_TEST_LEADER_EXIT") == "1" {
		return 0
	}
	time.Sleep(2 * time.Minute)
	return 0
}

// runnerMonitors are the exit monitor strategies the contract suite runs
// over. The reaper works without being PID 1 because acquireReaper makes
// the test process a child subreaper, exactly as in production.
var runnerMonitors = map[string]func(t *testing.T, log *slog.Logger) *procRunner{
	"reaper": func(t *testing.T, log *slog.Logger) *procRunner {
		rp, err := acquireReaper(log)
		if err != nil {
			t.Fatalf("acquire reaper: %v", err)
		}
		if rp.strategy() != monitorReaperSubreaper {
			t.Fatalf("strategy: want %s, got %s", monitorReaperSubreaper, rp.strategy())
		}
		r := newProcRunnerWith(log, rp, rp.strategy(), rp.release)
		t.Cleanup(func() { r.Close() })
		return r
	},
	"plain": func(t *testing.T, log *slog.Logger) *procRunner {
		r := newProcRunnerWith(log, plainMonitor{}, monitorPlain, nil)
		t.Cleanup(func() { r.Close() })
		return r
	},
}

func TestRunnerContract(t *testing.T) {
	for name, newRunner := range runnerMonitors {
		t.Run(name, func(t *testing.T) {
			for _, tc := range runnerContractCases {
				t.Run(tc.name, func(t *testing.T) {
					log := newRunnerTestLogger(t)
					tc.run(t, newRunner(t, log), name)
				})
			}
		})
	}
}

// runnerContractCases is the behaviour every strategy must show.
var runnerContractCases = []struct {
	name string
	run  func(t *testing.T, r *procRunner, strategy string)
}{
	{"exit code is reported", func(t *testing.T, r *procRunner, _ string) {
		p := startRunnerHelper(t, r, "runner-exit", nil, "RUNNER_TEST_EXIT_CODE=3")
		st := waitRunnerDone(t, p, 20*time.Second)
		if st.Code != 3 || st.Signal != 0 {
			t.Fatalf("status: want exit code 3, got %v", st)
		}
	}},
	{"killed by a signal is 128 plus the signal", func(t *testing.T, r *procRunner, _ string) {
		var out runnerOutput
		p := startRunnerHelper(t, r, "runner-sleep", &out)
		out.waitFor(t, "ready")
		p.Kill()
		st := waitRunnerDone(t, p, 10*time.Second)
		if st.Code != 137 || st.Signal != syscall.SIGKILL {
			t.Fatalf("status: want 137 (SIGKILL), got %v", st)
		}
	}},
	{"stop ends a cooperative sensor with SIGTERM", func(t *testing.T, r *procRunner, _ string) {
		var out runnerOutput
		p := startRunnerHelper(t, r, "runner-sleep", &out)
		out.waitFor(t, "ready")
		if err := p.Stop(t.Context(), 10*time.Second); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if st := p.Status(); st.Code != 143 || st.Signal != syscall.SIGTERM {
			t.Fatalf("status: want 143 (SIGTERM), got %v", st)
		}
	}},
	{"stop kills a sensor that ignores SIGTERM after the grace", func(t *testing.T, r *procRunner, _ string) {
		var out runnerOutput
		p := startRunnerHelper(t, r, "runner-ignoreterm", &out)
		out.waitFor(t, "ready")
		grace := 300 * time.Millisecond
		began := time.Now()
		if err := p.Stop(t.Context(), grace); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if took := time.Since(began); took < grace || took > grace+5*time.Second {
			t.Errorf("stop took %v: want at least the grace %v and a bounded escalation", took, grace)
		}
		if st := p.Status(); st.Signal != syscall.SIGKILL {
			t.Fatalf("status: want SIGKILL after the grace, got %v", st)
		}
	}},
	{"stop leaves no process of the group", func(t *testing.T, r *procRunner, strategy string) {
		var out runnerOutput
		p := startRunnerHelper(t, r, "runner-forkgrand", &out)
		grandchildren := out.waitForPids(t)
		if err := p.Stop(t.Context(), 300*time.Millisecond); err != nil {
			t.Fatalf("stop: %v", err)
		}
		requireGroupGone(t, p.Pid(), grandchildren, strategy)
	}},
	{"a leader exiting on its own takes its group with it", func(t *testing.T, r *procRunner, strategy string) {
		var out runnerOutput
		p := startRunnerHelper(t, r, "runner-forkgrand", &out, "RUNNER_TEST_LEADER_EXIT=1")
		if st := waitRunnerDone(t, p, 20*time.Second); st.Code != 0 {
			t.Fatalf("status: want 0, got %v", st)
		}
		requireGroupGone(t, p.Pid(), out.waitForPids(t), strategy)
	}},
	{"a stdout flood is rotated within bounds", func(t *testing.T, r *procRunner, _ string) {
		path := filepath.Join(t.TempDir(), "sensors", "flood", "stdout.log")
		const maxBytes, maxFiles = 1 << 20, 3
		w, err := newRotatingFile(path, maxBytes, maxFiles)
		if err != nil {
			t.Fatal(err)
		}
		p := startRunnerHelperTo(t, r, "runner-flood", w, nil, "RUNNER_TEST_FLOOD_BYTES=20000000")
		if st := waitRunnerDone(t, p, 60*time.Second); st.Code != 0 {
			t.Fatalf("status: want 0, got %v", st)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		checkFloodFiles(t, path, maxBytes, maxFiles)
	}},
	{"a sensor that closed stdout is still stopped", func(t *testing.T, r *procRunner, _ string) {
		var out, errOut runnerOutput
		p := startRunnerHelperTo(t, r, "runner-closestdout", &out, &errOut)
		errOut.waitFor(t, "ready")
		if err := p.Stop(t.Context(), 5*time.Second); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if st := p.Status(); st.Signal != syscall.SIGTERM {
			t.Fatalf("status: want SIGTERM, got %v", st)
		}
	}},
	{"env is exactly the spec's", func(t *testing.T, r *procRunner, _ string) {
		t.Setenv("RUNNER_TEST_AGENT_SECRET", "must-not-leak")
		env := []string{helperEnv + "=runner-dumpenv", "A=1", "PATH=/nowhere", "GORACE=atexit_sleep_ms=0"}
		var out runnerOutput
		p, err := r.start(t.Context(), procSpec{Ref: "t.env", Path: runnerTestExe(t), Env: env, Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		waitRunnerDone(t, p, 20*time.Second)
		if got := strings.Split(out.String(), "\n"); !slices.Equal(got, env) {
			t.Fatalf("child env: want %q, got %q", env, got)
		}
	}},
	{"a nil env is empty, not inherited", func(t *testing.T, r *procRunner, _ string) {
		var out runnerOutput
		st, err := r.runToCompletion(t.Context(), procSpec{Ref: "t.nilenv", Path: "/usr/bin/env", Stdout: &out})
		if err != nil || st.Code != 0 {
			t.Fatalf("run env: %v, %v", st, err)
		}
		if out.String() != "" {
			t.Fatalf("child env: want empty, got %q", out.String())
		}
	}},
	{"exits racing registration are all delivered", func(t *testing.T, r *procRunner, _ string) {
		const n = 40
		codes := make([]int, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				spec := procSpec{Ref: "t.race", Path: "/bin/sh", Args: []string{"-c", "exit " + strconv.Itoa(i+1)}}
				p, err := r.start(t.Context(), spec)
				if err != nil {
					errs[i] = err
					return
				}
				select {
				case <-p.Done():
					codes[i] = p.Status().Code
				case <-time.After(20 * time.Second):
					errs[i] = fmt.Errorf("exit of pid %d never arrived", p.Pid())
				}
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || codes[i] != i+1 {
				t.Errorf("process %d: want exit code %d, got %d (%v)", i, i+1, codes[i], errs[i])
			}
		}
	}},
	{"runToCompletion returns the code and the output", func(t *testing.T, r *procRunner, _ string) {
		var out, errOut runnerOutput
		spec := procSpec{Ref: "t.setup", Path: "/bin/sh", Args: []string{"-c", "echo out; echo err >&2; exit 5"}, Stdout: &out, Stderr: &errOut}
		st, err := r.runToCompletion(t.Context(), spec)
		if err != nil || st.Code != 5 {
			t.Fatalf("run: want exit code 5, got %v (%v)", st, err)
		}
		if out.String() != "out\n" || errOut.String() != "err\n" {
			t.Fatalf("output: got stdout %q, stderr %q", out.String(), errOut.String())
		}
	}},
	{"the start context does not bound the process", func(t *testing.T, r *procRunner, _ string) {
		ctx, cancel := context.WithCancel(t.Context())
		var out runnerOutput
		p, err := r.start(ctx, procSpec{Ref: "t.ctx", Path: runnerTestExe(t), Env: []string{helperEnv + "=runner-sleep"}, Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Kill(); <-p.Done() })
		out.waitFor(t, "ready")
		cancel()
		if err := syscall.Kill(p.Pid(), 0); err != nil {
			t.Fatalf("process gone after its start context ended: %v", err)
		}
		select {
		case <-p.Done():
			t.Fatalf("process ended with its start context: %v", p.Status())
		default:
		}
	}},
	{"an ended context stops runToCompletion's command", func(t *testing.T, r *procRunner, _ string) {
		ctx, cancel := context.WithCancel(t.Context())
		var out runnerOutput
		type result struct {
			st  exitStatus
			err error
		}
		res := make(chan result, 1)
		go func() {
			st, err := r.runToCompletion(ctx, procSpec{Ref: "t.setup", Path: runnerTestExe(t),
				Env: []string{helperEnv + "=runner-sleep"}, Stdout: &out})
			res <- result{st, err}
		}()
		out.waitFor(t, "ready")
		cancel()
		select {
		case got := <-res:
			if !errors.Is(got.err, context.Canceled) || got.st.Signal != syscall.SIGTERM {
				t.Fatalf("want SIGTERM and context.Canceled, got %v, %v", got.st, got.err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("runToCompletion did not return after its context ended")
		}
	}},
	{"one writer for both streams gets one pipe", func(t *testing.T, r *procRunner, _ string) {
		var out runnerOutput
		spec := procSpec{Ref: "t.both", Path: "/bin/sh", Args: []string{"-c", "echo a; echo b >&2; echo c"}, Stdout: &out, Stderr: &out}
		if st, err := r.runToCompletion(t.Context(), spec); err != nil || st.Code != 0 {
			t.Fatalf("run: %v, %v", st, err)
		}
		if out.String() != "a\nb\nc\n" {
			t.Fatalf("output: want the three lines in order, got %q", out.String())
		}
	}},
	{"bad specs are refused", func(t *testing.T, r *procRunner, _ string) {
		if _, err := r.start(t.Context(), procSpec{Ref: "t.rel", Path: "sh"}); !errors.Is(err, ErrProcSpec) {
			t.Errorf("relative path: want ErrProcSpec, got %v", err)
		}
		if _, err := r.start(t.Context(), procSpec{Ref: "t.missing", Path: "/nonexistent/sensor"}); err == nil {
			t.Errorf("missing program: want an error")
		}
	}},
}

func TestDecodeWaitStatus(t *testing.T) {
	at := time.Unix(1700000000, 0)
	cases := []struct {
		name string
		ws   syscall.WaitStatus
		want exitStatus
		str  string
	}{
		{"exit 0", 0, exitStatus{Code: 0, At: at}, "exit code 0"},
		{"exit 3", 3 << 8, exitStatus{Code: 3, At: at}, "exit code 3"},
		{"exit 255", 255 << 8, exitStatus{Code: 255, At: at}, "exit code 255"},
		{"SIGTERM", 15, exitStatus{Code: 143, Signal: syscall.SIGTERM, At: at}, "killed by signal 15 (terminated), exit code 143"},
		{"SIGKILL", 9, exitStatus{Code: 137, Signal: syscall.SIGKILL, At: at}, "killed by signal 9 (killed), exit code 137"},
		{"SIGSEGV with core", 0x80 | 11, exitStatus{Code: 139, Signal: syscall.SIGSEGV, At: at}, "killed by signal 11 (segmentation fault), exit code 139"},
		{"stopped is not an exit", 0x7f | 19<<8, exitStatus{Code: -1, At: at}, "exit status unknown"},
		{"continued is not an exit", 0xffff, exitStatus{Code: -1, At: at}, "exit status unknown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decodeWaitStatus(tc.ws, at)
			if got != tc.want {
				t.Errorf("decodeWaitStatus(%#x): want %+v, got %+v", uint32(tc.ws), tc.want, got)
			}
			if got.String() != tc.str {
				t.Errorf("String: want %q, got %q", tc.str, got.String())
			}
		})
	}
}

// startRunnerHelper starts the test binary in a helper mode with stdout
// going to out (nil: /dev/null) and stderr to the test log buffer.
func startRunnerHelper(t *testing.T, r *procRunner, mode string, out *runnerOutput, env ...string) *sensorProc {
	t.Helper()
	if out == nil {
		return startRunnerHelperTo(t, r, mode, nil, nil, env...)
	}
	return startRunnerHelperTo(t, r, mode, out, nil, env...)
}

// startRunnerHelperTo starts a helper mode with explicit writers and makes
// sure it is killed when the test ends.
func startRunnerHelperTo(t *testing.T, r *procRunner, mode string, stdout, stderr io.Writer, env ...string) *sensorProc {
	t.Helper()
	spec := procSpec{
		Ref:  "t." + mode,
		Path: runnerTestExe(t),
		// GORACE: a -race binary exiting 0 otherwise sleeps 1 s at exit.
		Env: append([]string{helperEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}, env...),
	}
	if stdout != nil {
		spec.Stdout = stdout
	}
	if stderr != nil {
		spec.Stderr = stderr
	}
	p, err := r.start(t.Context(), spec)
	if err != nil {
		t.Fatalf("start %s: %v", mode, err)
	}
	t.Cleanup(func() {
		p.Kill()
		<-p.Done()
	})
	return p
}

// waitRunnerDone waits a bounded time for the process and returns its status.
func waitRunnerDone(t *testing.T, p *sensorProc, within time.Duration) exitStatus {
	t.Helper()
	select {
	case <-p.Done():
		return p.Status()
	case <-time.After(within):
		t.Fatalf("process %d not done after %v", p.Pid(), within)
		return exitStatus{}
	}
}

func runnerTestExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// runnerOutput is a goroutine-safe buffer a child writes into.
type runnerOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *runnerOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *runnerOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// waitFor waits until the output contains s.
func (o *runnerOutput) waitFor(t *testing.T, s string) {
	t.Helper()
	runnerEventually(t, 20*time.Second, func() (bool, string) {
		return strings.Contains(o.String(), s), fmt.Sprintf("output %q lacks %q", o.String(), s)
	})
}

// waitForPids waits for a "ready <pid>..." line and returns the pids.
func (o *runnerOutput) waitForPids(t *testing.T) []int {
	t.Helper()
	o.waitFor(t, "\n")
	line, _, _ := strings.Cut(o.String(), "\n")
	fields := strings.Fields(line)
	var pids []int
	for _, f := range fields[1:] {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("ready line %q: %v", line, err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// newRunnerTestLogger logs into a buffer that is printed only when the test
// fails (goroutines may still log after a test returns; t.Log would panic).
func newRunnerTestLogger(t *testing.T) *slog.Logger {
	var buf runnerOutput
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runner log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
