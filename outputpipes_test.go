//go:build linux

package main

// outputpipes_test.go checks that the poller-driven copy (outputpipes_linux.go,
// outputpoller_linux.go) loses no sensor output, keeps streams apart, never
// lets one failing writer stall a sensor, and never lets an escaped
// descendant keep a dead sensor's supervision open.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func newOutputTestRunner(t *testing.T) *procRunner {
	t.Helper()
	r, err := newProcRunner(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("runner: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func waitProcDone(t *testing.T, p *sensorProc, within time.Duration) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(within):
		t.Fatalf("process %d not done within %v", p.Pid(), within)
	}
}

func TestOutputPipesCarryEveryByte(t *testing.T) {
	r := newOutputTestRunner(t)
	// 3 MB of random bytes (no line structure, NULs included) on stdout and
	// the same reversed on stderr: far more than a pipe holds, so the copy
	// runs many turns, re-arming in between.
	content := make([]byte, 3_000_000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range content {
		content[i] = byte(rng.UintN(256))
	}
	reversed := bytes.Clone(content)
	for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
		reversed[i], reversed[j] = reversed[j], reversed[i]
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.WriteFile(a, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, reversed, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	p, err := r.start(context.Background(), procSpec{Ref: "t.bytes", Path: "/bin/sh",
		Args: []string{"-c", `cat "$0" & cat "$1" >&2; wait`, a, b}, Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatal(err)
	}
	waitProcDone(t, p, 30*time.Second)
	if got := out.String(); got != string(content) {
		t.Errorf("stdout: got %d bytes, want the %d written (first difference at %d)", len(got), len(content), firstDiff([]byte(got), []byte(string(content))))
	}
	if got := errOut.String(); got != string(reversed) {
		t.Errorf("stderr: got %d bytes, want the %d written (first difference at %d)", len(got), len(reversed), firstDiff([]byte(got), []byte(string(reversed))))
	}
}

func TestOutputPipesManySensorsAtOnce(t *testing.T) {
	r := newOutputTestRunner(t)
	const sensors, lines = 60, 200
	outs := make([]*syncBuffer, sensors)
	procs := make([]*sensorProc, sensors)
	for i := range sensors {
		outs[i] = &syncBuffer{}
		script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "s%d line $i"; i=$((i+1)); done`, lines, i)
		p, err := r.start(context.Background(), procSpec{Ref: fmt.Sprintf("t.many%d", i), Path: "/bin/sh",
			Args: []string{"-c", script}, Stdout: outs[i], Stderr: outs[i]})
		if err != nil {
			t.Fatal(err)
		}
		procs[i] = p
	}
	for i, p := range procs {
		waitProcDone(t, p, 60*time.Second)
		var want bytes.Buffer
		for j := range lines {
			fmt.Fprintf(&want, "s%d line %d\n", i, j)
		}
		if got := outs[i].String(); got != want.String() {
			t.Errorf("sensor %d: got %d bytes, want %d: streams mixed up or output lost", i, len(got), want.Len())
		}
	}
}

// failingWriter fails every write, as a full disk does.
type failingWriter struct {
	mu    sync.Mutex
	calls int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	return 0, errors.New("disk full")
}

func TestOutputPipesFailingWriterDoesNotStallTheSensor(t *testing.T) {
	r := newOutputTestRunner(t)
	w := &failingWriter{}
	var errOut syncBuffer
	// 2 MB on stdout: the sensor only exits if the agent keeps reading.
	p, err := r.start(context.Background(), procSpec{Ref: "t.fail", Path: "/bin/sh",
		Args: []string{"-c", "head -c 2000000 /dev/zero; echo done >&2"}, Stdout: w, Stderr: &errOut})
	if err != nil {
		t.Fatal(err)
	}
	waitProcDone(t, p, 30*time.Second)
	if st := p.Status(); st.Code != 0 {
		t.Errorf("status %v, want exit code 0 (the sensor was not blocked)", st)
	}
	w.mu.Lock()
	calls := w.calls
	w.mu.Unlock()
	if calls != 1 {
		t.Errorf("writer called %d times, want once: after a failure the rest is discarded", calls)
	}
	if errOut.String() != "done\n" {
		t.Errorf("stderr %q: the other stream must be unaffected", errOut.String())
	}
}

func TestOutputPipesEscapedDescendantDoesNotHoldSupervision(t *testing.T) {
	r := newOutputTestRunner(t)
	r.drainDelay = 300 * time.Millisecond
	var out syncBuffer
	// The descendant leaves the process group (setsid), so the group kill
	// misses it, and it keeps stdout open for 5 s. The leader exits only once
	// the descendant is in its own session (the mark is written after
	// setsid), or the group kill could catch it first.
	mark := filepath.Join(t.TempDir(), "escaped")
	script := `/usr/bin/setsid /bin/sh -c ': > "$0"; exec /bin/sleep 5' "$1" & echo before; while [ ! -e "$1" ]; do :; done; echo after`
	p, err := r.start(context.Background(), procSpec{Ref: "t.escape", Path: "/bin/sh",
		Args: []string{"-c", script, "sh", mark}, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitProcDone(t, p, 10*time.Second)
	took := time.Since(start)
	if took > 5*time.Second {
		t.Errorf("done after %v: the drain bound (%v) was not applied", took, r.drainDelay)
	}
	if took < r.drainDelay {
		t.Errorf("done after %v, before the drain bound (%v): the descendant did not hold the pipe, so this test tests nothing", took, r.drainDelay)
	}
	if out.String() != "before\nafter\n" {
		t.Errorf("stdout %q, want both lines written before the leader exited", out.String())
	}
}
