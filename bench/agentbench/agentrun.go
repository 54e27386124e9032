package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// agentLogLine is one JSON log line of the agent, with the moment the
// harness read it.
type agentLogLine struct {
	Time   time.Time `json:"time"`
	Level  string    `json:"level"`
	Msg    string    `json:"msg"`
	Sensor string    `json:"sensor"`
	Read   time.Time `json:"-"`
}

// parseAgentLogLine decodes one line; ok is false for anything that is not
// a JSON object with a time and a message. A line may start with the tail of
// a Go runtime trace (GODEBUG=gctrace=1 prints in pieces, and a log line can
// land between them), so the object is looked for from its first key.
func parseAgentLogLine(raw []byte, read time.Time) (agentLogLine, bool) {
	var l agentLogLine
	if i := bytes.Index(raw, []byte(`{"time":`)); i > 0 {
		raw = raw[i:]
	}
	if err := json.Unmarshal(raw, &l); err != nil || l.Time.IsZero() || l.Msg == "" {
		return agentLogLine{}, false
	}
	l.Read = read
	return l, true
}

// gcTrace is one GODEBUG=gctrace=1 line of the agent: heap sizes in MB at
// the start and end of a collection, the live heap it marked, the goal, and
// the goroutine stacks.
type gcTrace struct {
	Read                     time.Time
	Start, End, Live, Stacks int64
}

// gcTraceRE matches the sizes of a gctrace line ("12->13->6 MB, 14 MB goal, 0 MB stacks").
var gcTraceRE = regexp.MustCompile(`(\d+)->(\d+)->(\d+) MB, \d+ MB goal, (\d+) MB stacks`)

// parseGCTrace reads a gctrace line; ok is false for any other line.
func parseGCTrace(raw []byte, read time.Time) (gcTrace, bool) {
	m := gcTraceRE.FindSubmatch(raw)
	if m == nil {
		return gcTrace{}, false
	}
	n := func(b []byte) int64 { v, _ := strconv.ParseInt(string(b), 10, 64); return v }
	return gcTrace{Read: read, Start: n(m[1]), End: n(m[2]), Live: n(m[3]), Stacks: n(m[4])}, true
}

// agentRun is the real agent binary running under a benchmark. Its stderr
// (the JSON log) goes through a pipe the harness reads line by line, copying
// it to a file and keeping the parsed lines for waitLine; a separate
// goroutine reaps it, so exitAt is when it really exited.
type agentRun struct {
	cmd     *exec.Cmd
	started time.Time // just before fork/exec

	mu      sync.Mutex
	lines   []agentLogLine
	gcs     []gcTrace
	changed chan struct{} // closed and replaced at each new line
	readEOF chan struct{}
	done    chan struct{} // closed once reaped
	exitAt  time.Time
	code    int
}

// startAgentRun starts bin with exactly env, logging to logPath.
func startAgentRun(bin string, env []string, logPath string) (*agentRun, error) {
	return startAgentCmd(exec.Command(bin), env, logPath)
}

// startAgentCmd starts cmd (the agent, or a wrapper such as unshare that
// runs it) with exactly env, logging to logPath.
func startAgentCmd(cmd *exec.Cmd, env []string, logPath string) (*agentRun, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	a := &agentRun{changed: make(chan struct{}), readEOF: make(chan struct{}), done: make(chan struct{})}
	a.cmd = cmd
	a.cmd.Env = env
	// The agent logs on stdout; fatal errors go to stderr. Both into w, an
	// *os.File: no copying goroutine, so Wait returns at exit.
	a.cmd.Stdout, a.cmd.Stderr = w, w
	// If the harness dies, the agent dies with it (and its sensors with it:
	// the harness's cleanup kills whatever is left).
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	a.started = time.Now()
	err = a.cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		logf.Close()
		return nil, fmt.Errorf("start agent: %w", err)
	}
	go a.readLog(r, logf)
	go func() {
		a.cmd.Wait()
		at := time.Now()
		a.mu.Lock()
		a.exitAt, a.code = at, a.cmd.ProcessState.ExitCode()
		a.mu.Unlock()
		close(a.done)
	}()
	return a, nil
}

// readLog copies the agent's stderr to logf and records every JSON line.
func (a *agentRun) readLog(r io.ReadCloser, logf *os.File) {
	defer close(a.readEOF)
	defer logf.Close()
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		raw, err := br.ReadBytes('\n')
		if len(raw) > 0 {
			now := time.Now()
			logf.Write(raw)
			if l, ok := parseAgentLogLine(raw, now); ok {
				a.mu.Lock()
				a.lines = append(a.lines, l)
				close(a.changed)
				a.changed = make(chan struct{})
				a.mu.Unlock()
			} else if g, ok := parseGCTrace(raw, now); ok {
				a.mu.Lock()
				a.gcs = append(a.gcs, g)
				a.mu.Unlock()
			}
		}
		if err != nil {
			return
		}
	}
}

// gcTraces returns the gctrace lines read so far.
func (a *agentRun) gcTraces() []gcTrace {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.gcs)
}

// pid is the agent's process id.
func (a *agentRun) pid() int { return a.cmd.Process.Pid }

// errAgentExited reports that the agent ended while the harness waited for it to log something.
var errAgentExited = errors.New("agent exited")

// waitLine waits for the first line at index ≥ from that satisfies match and
// returns it with its index.
func (a *agentRun) waitLine(ctx context.Context, from int, match func(agentLogLine) bool) (agentLogLine, int, error) {
	for {
		a.mu.Lock()
		lines, changed := a.lines, a.changed
		a.mu.Unlock()
		for i := from; i < len(lines); i++ {
			if match(lines[i]) {
				return lines[i], i, nil
			}
		}
		from = max(from, len(lines))
		select {
		case <-changed:
		case <-a.readEOF:
			a.mu.Lock()
			more := len(a.lines) > from
			a.mu.Unlock()
			if !more {
				return agentLogLine{}, 0, errAgentExited
			}
		case <-ctx.Done():
			return agentLogLine{}, 0, ctx.Err()
		}
	}
}

// waitMsg waits for a line with message msg (and sensor ref, when not empty).
func (a *agentRun) waitMsg(ctx context.Context, from int, msg, sensor string) (agentLogLine, int, error) {
	l, i, err := a.waitLine(ctx, from, func(l agentLogLine) bool {
		return l.Msg == msg && (sensor == "" || l.Sensor == sensor)
	})
	if err != nil {
		return l, i, fmt.Errorf("agent log line %q %s: %w", msg, sensor, err)
	}
	return l, i, nil
}

// count is the number of lines so far that satisfy match.
func (a *agentRun) count(match func(agentLogLine) bool) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, l := range a.lines {
		if match(l) {
			n++
		}
	}
	return n
}

// nLines is the number of lines read so far (a starting index for waitLine).
func (a *agentRun) nLines() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.lines)
}

// signal sends sig to the agent.
func (a *agentRun) signal(sig syscall.Signal) error { return a.cmd.Process.Signal(sig) }

// wait waits for the exit; it returns the exit time and code.
func (a *agentRun) wait(ctx context.Context) (time.Time, int, error) {
	select {
	case <-a.done:
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.exitAt, a.code, nil
	case <-ctx.Done():
		return time.Time{}, 0, fmt.Errorf("wait for agent exit: %w", ctx.Err())
	}
}

// stop sends SIGTERM and waits up to timeout, then SIGKILLs; it returns the
// exit code.
func (a *agentRun) stop(timeout time.Duration) int {
	a.signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, code, err := a.wait(ctx); err == nil {
		return code
	}
	a.cmd.Process.Kill()
	_, code, _ := a.wait(context.Background())
	return code
}
