package main

// readygate.go owns the wait behind the ready line: "Attune Sensor Agent is
// ready" comes after the first start of the eligible sensors (CONTRACT §1),
// and supervisors launch asynchronously, so the first pass alone does not
// mean they started.

import (
	"context"
	"sync"
	"time"
)

// readyStartWait bounds the wait for first starts: a runtime environment
// that takes minutes to build must not keep the heartbeat from starting.
const readyStartWait = 60 * time.Second

// startGate forwards supervisor events and remembers which sensors have had
// the outcome of a launch (started, or failed before a process existed).
type startGate struct {
	sensorEvents
	mu      sync.Mutex
	settled map[int64]bool
	changed chan struct{}
}

var _ sensorEvents = (*startGate)(nil)

func newStartGate(inner sensorEvents) *startGate {
	return &startGate{sensorEvents: inner, settled: map[int64]bool{}, changed: make(chan struct{}, 1)}
}

func (g *startGate) mark(id int64) {
	g.mu.Lock()
	g.settled[id] = true
	g.mu.Unlock()
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

func (g *startGate) sensorStarted(spec sensorSpec, pid int, failures int) {
	g.sensorEvents.sensorStarted(spec, pid, failures)
	g.mark(spec.ID)
}

func (g *startGate) sensorExited(spec sensorSpec, st exitStatus, failures int, next time.Time) {
	g.sensorEvents.sensorExited(spec, st, failures, next)
	g.mark(spec.ID)
}

func (g *startGate) sensorStopped(spec sensorSpec, st exitStatus) {
	g.sensorEvents.sensorStopped(spec, st)
	g.mark(spec.ID)
}

// wait returns once every sensor that ids returns has settled, ctx ends or
// timeout passes; it reports whether all settled. ids is asked again after
// each event, so a sensor stopped meanwhile is no longer waited for.
func (g *startGate) wait(ctx context.Context, ids func() []int64, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		g.mu.Lock()
		all := true
		for _, id := range ids() {
			if !g.settled[id] {
				all = false
				break
			}
		}
		g.mu.Unlock()
		if all {
			return true
		}
		select {
		case <-g.changed:
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		}
	}
}

// supervisedIDs lists the sensors the manager supervises now.
func (m *sensorManager) supervisedIDs() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]int64, 0, len(m.active))
	for id := range m.active {
		ids = append(ids, id)
	}
	return ids
}
