package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// directStart is the floor of "all running" (item 6): the harness itself
// starts the same n sensor scripts at once, the way the agent does (one
// goroutine each, fork/exec from Go into its own process group, stdout and
// stderr on pipes), with no token, database or log files, and times until
// all n have written their mark. On a machine where process creation is
// slow, this is what no agent can beat; the agent's number is read against
// it. Every process is killed and reaped before it returns.
func directStart(ctx context.Context, stack *benchStack, n int) (time.Duration, error) {
	if err := stack.clearMarks(); err != nil {
		return 0, err
	}
	script := filepath.Join(stack.packs, "benchpack", "sensors", "idle")
	cmds := make([]*exec.Cmd, n)
	reads := make([]*os.File, 0, 2*n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	t0 := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(script)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), stack.marker(),
				fmt.Sprintf("ATTUNE_SENSOR_REF=benchpack.f%04d", i+1)}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			r1, w1, err := os.Pipe()
			if err != nil {
				errs <- err
				return
			}
			r2, w2, err := os.Pipe()
			if err != nil {
				r1.Close()
				w1.Close()
				errs <- err
				return
			}
			cmd.Stdout, cmd.Stderr = w1, w2
			err = cmd.Start()
			w1.Close()
			w2.Close()
			mu.Lock()
			reads = append(reads, r1, r2)
			if err == nil {
				cmds[i] = cmd
			}
			mu.Unlock()
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range cmds {
			if c != nil {
				syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				c.Wait()
			}
		}
		for _, r := range reads {
			r.Close()
		}
		stack.clearMarks()
	}()
	select {
	case err := <-errs:
		return 0, fmt.Errorf("direct start: %w", err)
	default:
	}
	deadline := t0.Add(3 * time.Minute)
	for stack.countMarks(".up") < n {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("direct start: only %d of %d scripts ran within 3 min", stack.countMarks(".up"), n)
		}
		if !sleepCtxBench(ctx, 20*time.Millisecond) {
			return 0, ctx.Err()
		}
	}
	return time.Since(t0), nil
}
