//go:build linux

package main

// memory_test.go guards the per-sensor memory cost (issue 12,
// docs/benchmarks.md item 6): a regression such as a buffer or a goroutine
// kept per idle stream again fails `make test`, long before a benchmark run.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

// Bounds of the per-sensor cost, measured in-process at memSensors real
// supervised processes (the runner with a stub launcher; no token or plan).
// Measured when written (go1.26, linux/amd64): about 4.1 KiB of live heap
// and 9 KiB of goroutine stacks per sensor (its supervisor's 8 KiB stack),
// one goroutine. The bounds leave headroom (stacks come in powers of two,
// so the next step up, a 16 KiB supervisor stack, is a real regression),
// and the cost before issue 12 (two parked copy goroutines with a 4 KiB
// buffer each, plus a goroutine waiting for each exit: 15 KiB of heap,
// 15 KiB of stacks and four goroutines per sensor) fails every one.
const (
	memSensors             = 200
	memHeapPerSensorMax    = 8 << 10 // live heap bytes per sensor
	memStacksPerSensorMax  = 8 << 10 // goroutine stack bytes per sensor (about 6 KB measured)
	memGoroutinesPerSensor = 1.5     // the supervisor, plus slack for transient ones
)

// runnerLauncher is a stub launcher over the real runner: no token, plan or
// environment, but a real process with both output pipes, as a sensor has.
type runnerLauncher struct {
	r       *procRunner
	started atomic.Int64
}

func (l *runnerLauncher) launch(ctx context.Context, spec sensorSpec, stdout, stderr io.Writer) (launched, error) {
	p, err := l.r.start(ctx, procSpec{Ref: spec.Ref, Path: "/bin/sh",
		Args: []string{"-c", "echo started; exec sleep 600"}, Stdout: stdout, Stderr: stderr})
	if err != nil {
		return launched{}, err
	}
	l.started.Add(1)
	return launched{proc: p}, nil
}

// memSample is the runtime's own account, after two full collections.
type memSample struct{ heap, stacks, goroutines uint64 }

func readMemSample() memSample {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(s)
	return memSample{heap: s[0].Value.Uint64(), stacks: s[1].Value.Uint64(), goroutines: s[2].Value.Uint64()}
}

// memChildEnv marks the child test process that measures alone.
const memChildEnv = "ATTUNE_TEST_MEMORY_CHILD"

// TestMemoryPerSupervisedSensor measures in a child process of the test
// binary, so goroutines and garbage left by other tests of the suite cannot
// enter the per-sensor figures; the child fails when a bound is exceeded.
func TestMemoryPerSupervisedSensor(t *testing.T) {
	if os.Getenv(memChildEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestMemoryPerSupervisedSensor$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), memChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("measured in a child process:\n%s", out)
		if err != nil {
			t.Fatalf("per-sensor memory check failed: %v", err)
		}
		return
	}
	measureMemoryPerSupervisedSensor(t)
}

func measureMemoryPerSupervisedSensor(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := newProcRunner(log)
	if err != nil {
		t.Fatalf("runner: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	l := &runnerLauncher{r: r}
	dir := t.TempDir()
	cfg := &Config{ArtifactsDir: dir}
	cfg.Artifacts.SensorLogMaxBytes, cfg.Artifacts.SensorLogMaxFiles = 1<<20, 2
	logs := localOutputs{cfg: cfg, log: log} // the files the agent writes on every generation
	m := newSensorManager(l, &fakeSensorEvents{}, logs, log, memSensors+10, 2*time.Second)
	specs := make([]sensorSpec, memSensors)
	for i := range specs {
		specs[i] = sensorSpec{ID: int64(i + 1), Ref: fmt.Sprintf("mem.s%03d", i), PackRef: "mem",
			Updated: time.Unix(1700000000, 0), Rules: []sensorRule{{ID: int64(i + 1)}}}
	}

	before := readMemSample()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.converge(ctx, specs)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		if err := m.stopAll(sctx); err != nil {
			t.Errorf("stopAll: %v", err)
		}
	})
	// Every sensor started and its first line reached its log file: the
	// output path is live, not merely set up.
	if !waitUntil(60*time.Second, func() bool {
		if l.started.Load() < memSensors {
			return false
		}
		for _, sp := range specs {
			b, err := os.ReadFile(filepath.Join(dir, "sensors", sp.Ref, "stdout.log"))
			if err != nil || string(b) != "started\n" {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("within 60 s only %d of %d sensors started and logged their first line", l.started.Load(), memSensors)
	}
	// Let the start-up burst's transient goroutines finish before counting.
	var after memSample
	waitUntil(10*time.Second, func() bool {
		after = readMemSample()
		return float64(after.goroutines-before.goroutines) <= memGoroutinesPerSensor*memSensors
	})

	heap := (int64(after.heap) - int64(before.heap)) / memSensors
	stacks := (int64(after.stacks) - int64(before.stacks)) / memSensors
	gor := float64(int64(after.goroutines)-int64(before.goroutines)) / memSensors
	t.Logf("per supervised sensor at %d sensors: live heap %d B, stacks %d B, goroutines %.2f", memSensors, heap, stacks, gor)
	// The race detector's shadow state makes goroutines and their stacks
	// bigger; its build gets proportionally wider bounds.
	heapMax, stacksMax := int64(memHeapPerSensorMax), int64(memStacksPerSensorMax)
	if raceEnabled {
		heapMax, stacksMax = 2*heapMax, 3*stacksMax
	}
	if heap > heapMax {
		t.Errorf("live heap per sensor %d B, bound %d B: something keeps more per idle sensor", heap, heapMax)
	}
	if stacks > stacksMax {
		t.Errorf("goroutine stacks per sensor %d B, bound %d B: something parks more goroutines or deeper stacks per sensor", stacks, stacksMax)
	}
	if gor > memGoroutinesPerSensor {
		t.Errorf("goroutines per sensor %.2f, bound %.1f: an idle sensor must cost only its supervisor", gor, memGoroutinesPerSensor)
	}
}

func TestTuneMemory(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	env := func(kv map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	}
	cases := []struct {
		name     string
		env      map[string]string
		wantGC   int // what the runtime runs with afterwards
		wantFrom string
		limit    string
	}{
		{"no GOGC: the agent's 50", nil, agentGCPercent, "agent", "none"},
		{"empty GOGC counts as unset", map[string]string{"GOGC": ""}, agentGCPercent, "agent", "none"},
		{"the user's GOGC wins", map[string]string{"GOGC": "100"}, 100, "GOGC", "none"},
		{"GOGC=off is reported as off and left alone", map[string]string{"GOGC": "off"}, 100, "GOGC", "none"},
		{"GOMEMLIMIT is reported", map[string]string{"GOMEMLIMIT": "64MiB"}, agentGCPercent, "agent", "GOMEMLIMIT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100) // as the runtime starts with GOGC unset or 100
			got := tuneMemory(env(tc.env))
			if now := debug.SetGCPercent(100); now != tc.wantGC {
				t.Errorf("runtime GC percent %d, want %d", now, tc.wantGC)
			}
			if got.GCFrom != tc.wantFrom || got.LimitFrom != tc.limit {
				t.Errorf("reported from %q / limit %q, want %q / %q", got.GCFrom, got.LimitFrom, tc.wantFrom, tc.limit)
			}
			if tc.env["GOGC"] == "off" && got.GCPercent != -1 {
				t.Errorf("GOGC=off reported as %d, want -1", got.GCPercent)
			}
			if memTuningApplied != got {
				t.Errorf("memTuningApplied %+v, want %+v", memTuningApplied, got)
			}
			if attrs := got.logAttrs(); len(attrs) != 8 || attrs[0] != "gogc" {
				t.Errorf("log attrs %v", attrs)
			}
		})
	}
}
