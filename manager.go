package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// sensorManager converges the set of supervised sensors on the desired set
// read from the database. It owns one supervisor goroutine per sensor and is
// the only place that starts or stops them.
type sensorManager struct {
	launcher launcher
	events   sensorEvents
	outputs  sensorOutputs
	log      *slog.Logger
	max      int           // max_concurrent_sensors
	grace    time.Duration // per-sensor SIGTERM grace
	// backoff and healthyRun are handed to every supervisor (nil and 0 mean
	// the contract's schedule); tests set them to run in milliseconds.
	backoff    func(failures int) time.Duration
	healthyRun time.Duration
	// leases is handed to every supervisor on the newest generation (nil before).
	leases sensorLeases

	mu       sync.Mutex
	active   map[int64]*managedSensor // sensors that should run
	stopping map[*managedSensor]struct{}
	wg       sync.WaitGroup
	overCap  int // sensors over max_concurrent_sensors at the last pass, to log changes only
}

// managedSensor is one supervised sensor and the handle to stop it.
type managedSensor struct {
	sup    *supervisor
	cancel context.CancelFunc
	done   chan struct{}
}

func newSensorManager(l launcher, ev sensorEvents, outputs sensorOutputs, log *slog.Logger, max int, grace time.Duration) *sensorManager {
	return &sensorManager{launcher: l, events: ev, outputs: outputs, log: log, max: max, grace: grace,
		active: map[int64]*managedSensor{}, stopping: map[*managedSensor]struct{}{}}
}

// converge starts missing sensors, stops the ones no longer desired and
// restarts those whose row changed (sensor.updated). A sensor whose previous
// process is still stopping is started on a later pass, never twice at once.
func (m *sensorManager) converge(ctx context.Context, desired []sensorSpec) {
	// ref order, as the reference visits candidates: the capacity limit keeps the first ones.
	slices.SortFunc(desired, func(a, b sensorSpec) int { return strings.Compare(a.Ref, b.Ref) })
	if m.max > 0 && len(desired) > m.max {
		// Sensors already running keep their slot; free slots go in ref
		// order. Without this, leases freed by another agent's failover that
		// sort before running sensors would stop healthy sensors here.
		m.mu.Lock()
		slices.SortStableFunc(desired, func(a, b sensorSpec) int {
			_, ra := m.active[a.ID]
			_, rb := m.active[b.ID]
			switch {
			case ra == rb:
				return 0
			case ra:
				return -1
			}
			return 1
		})
		m.mu.Unlock()
		if over := len(desired) - m.max; over != m.overCap {
			m.log.Warn("more sensors than max_concurrent_sensors: extra sensors not started",
				"max_concurrent_sensors", m.max, "desired", len(desired), "not_started", over,
				"not_started_sensors", overCapRefs(desired[m.max:]))
			m.overCap = over
		}
		desired = desired[:m.max]
		slices.SortFunc(desired, func(a, b sensorSpec) int { return strings.Compare(a.Ref, b.Ref) })
	} else if m.overCap != 0 {
		m.overCap = 0
		m.log.Info("all desired sensors fit max_concurrent_sensors", "desired", len(desired))
	}
	want := make(map[int64]sensorSpec, len(desired))
	for _, sp := range desired {
		want[sp.ID] = sp
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, ms := range m.active {
		sp, ok := want[id]
		switch {
		case !ok:
			m.stopLocked(id, ms, "no longer assigned")
		case !sp.Updated.Equal(ms.sup.spec.Updated):
			m.stopLocked(id, ms, "sensor changed")
		case !sameRelease(sp.Release, ms.sup.spec.Release):
			m.stopLocked(id, ms, "pack release changed")
		default:
			ms.sup.mu.Lock()
			ms.sup.spec.Rules = sp.Rules // rule changes: the sensor learns them itself; keep counters true
			ms.sup.mu.Unlock()
		}
	}
	for _, sp := range desired {
		if _, ok := m.active[sp.ID]; ok || m.isStoppingLocked(sp.ID) {
			continue
		}
		m.startLocked(ctx, sp)
	}
}

// overCapRefs names the sensors left out by max_concurrent_sensors, so an
// operator sees which ones do not run; a long list is cut to keep the line short.
func overCapRefs(specs []sensorSpec) []string {
	const maxNamed = 20
	refs := make([]string, 0, min(len(specs), maxNamed+1))
	for i, sp := range specs {
		if i == maxNamed {
			refs = append(refs, fmt.Sprintf("... %d more", len(specs)-maxNamed))
			break
		}
		refs = append(refs, sp.Ref)
	}
	return refs
}

// stopPack stops at once every sensor of a pack (PackDeleted prompt).
func (m *sensorManager) stopPack(packRef string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, ms := range m.active {
		if ms.sup.spec.PackRef == packRef {
			m.stopLocked(id, ms, "pack deleted")
		}
	}
}

func (m *sensorManager) startLocked(ctx context.Context, sp sensorSpec) {
	sctx, cancel := context.WithCancel(ctx)
	ms := &managedSensor{
		sup: &supervisor{spec: sp, launcher: m.launcher, events: m.events, log: m.log,
			outputs: m.outputs, grace: m.grace, backoff: m.backoff, healthyRun: m.healthyRun,
			leases: m.leases},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	m.active[sp.ID] = ms
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(ms.done)
		ms.sup.run(sctx)
		m.mu.Lock()
		delete(m.stopping, ms)
		if m.active[sp.ID] == ms {
			delete(m.active, sp.ID)
		}
		m.mu.Unlock()
		// A supervisor can end without any launch (its lease is another
		// worker's): the ready gate must not wait for that sensor.
		if g, ok := m.events.(interface{ mark(id int64) }); ok {
			g.mark(sp.ID)
		}
	}()
}

func (m *sensorManager) stopLocked(id int64, ms *managedSensor, reason string) {
	m.log.Info("stopping sensor", "sensor", ms.sup.spec.Ref, "reason", reason)
	delete(m.active, id)
	m.stopping[ms] = struct{}{}
	ms.cancel()
}

func (m *sensorManager) isStoppingLocked(id int64) bool {
	for ms := range m.stopping {
		if ms.sup.spec.ID == id {
			return true
		}
	}
	return false
}

// counters reports the heartbeat counters: sensors supervised, sensors with
// a live process, and the active rules of the supervised sensors.
func (m *sensorManager) counters() heartbeatCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	var c heartbeatCounters
	for _, ms := range m.active {
		c.Monitored++
		ms.sup.mu.Lock()
		if ms.sup.proc != nil {
			c.Running++
		}
		c.ActiveRules += len(ms.sup.spec.Rules)
		ms.sup.mu.Unlock()
	}
	return c
}

// stopAll stops every sensor concurrently and waits until all are gone or
// ctx ends; then it kills whatever is left and waits a little more.
func (m *sensorManager) stopAll(ctx context.Context) error {
	m.mu.Lock()
	for id, ms := range m.active {
		m.stopLocked(id, ms, "agent shutdown")
	}
	m.mu.Unlock()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	m.killAll()
	select {
	case <-done:
		return fmt.Errorf("sensors stopped only after SIGKILL: %w", ctx.Err())
	case <-time.After(5 * time.Second):
		return fmt.Errorf("sensors still running after SIGKILL: %w", ctx.Err())
	}
}

// killAll sends SIGKILL to every sensor group at once (second signal).
func (m *sensorManager) killAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ms := range m.active {
		ms.sup.kill()
	}
	for ms := range m.stopping {
		ms.sup.kill()
	}
}

// teeCloser writes to both w and mirror, and closes both.
func teeCloser(w io.WriteCloser, mirror io.Writer) io.WriteCloser {
	return struct {
		io.Writer
		io.Closer
	}{io.MultiWriter(w, mirror), closerFunc(func() error {
		if c, ok := mirror.(io.Closer); ok {
			c.Close()
		}
		return w.Close()
	})}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// sameRelease reports whether two pinned releases are the same (both nil included).
func sameRelease(a, b *packRelease) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
