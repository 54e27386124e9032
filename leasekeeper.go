package main

// leasekeeper.go is the lease side of one sensor start as the supervisor
// sees it: acquire (and log a refusal once, not every pass), hand the lease
// to the renewer, shorten it once the process runs, and give it back on every
// stop without ever making the supervisor wait for the database.

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// releaseTimeout bounds one release statement; a release that cannot be
// written lets the lease expire on its own (at most the renewal lease).
const releaseTimeout = 2 * time.Second

// agentLeases implements sensorLeases for the newest generation.
type agentLeases struct {
	db      *pgLeases
	renewer *leaseRenewer
	log     *slog.Logger

	wg sync.WaitGroup // releases in flight
	// admit lets one acquire run at a time: they serialise on this worker's
	// row lock in the database anyway, and fifteen of them waiting there
	// would hold every pooled connection the pass, renewal and heartbeat need.
	admit chan struct{}
	mu    sync.Mutex
	noted map[int64]string // last refusal logged per sensor
}

var _ sensorLeases = (*agentLeases)(nil)

func newAgentLeases(db *pgLeases, log *slog.Logger) *agentLeases {
	return &agentLeases{db: db, renewer: newLeaseRenewer(db, db.timing, log), log: log, noted: map[int64]string{},
		admit: make(chan struct{}, 1)}
}

// acquire takes spec's lease and returns it with the spec to launch (from
// the workload snapshot). A refusal (held elsewhere, ineligible, capacity,
// no release) is logged once per sensor and reason.
func (a *agentLeases) acquire(ctx context.Context, spec sensorSpec) (*heldLease, sensorSpec, error) {
	select {
	case a.admit <- struct{}{}:
	case <-ctx.Done():
		return nil, sensorSpec{}, ctx.Err()
	}
	sent := time.Now()
	got, err := a.db.acquire(ctx, spec)
	<-a.admit
	if err != nil {
		a.note(spec, err)
		return nil, sensorSpec{}, err
	}
	a.mu.Lock()
	delete(a.noted, spec.ID)
	a.mu.Unlock()
	h := &heldLease{sensorID: spec.ID, ref: spec.Ref, fence: got.fence, lost: make(chan struct{}),
		sentAt: sent, length: a.db.timing.Start}
	a.renewer.add(h)
	a.log.Debug("sensor lease acquired", "sensor", spec.Ref, "workload_id", got.fence.WorkloadID,
		"generation", got.fence.Generation)
	return h, got.spec, nil
}

// note logs a refused acquire when its reason changed for that sensor.
func (a *agentLeases) note(spec sensorSpec, err error) {
	a.mu.Lock()
	same := a.noted[spec.ID] == err.Error()
	a.noted[spec.ID] = err.Error()
	a.mu.Unlock()
	if same {
		return
	}
	switch {
	case errors.Is(err, ErrLeaseHeld), errors.Is(err, ErrLeaseCapacity), errors.Is(err, ErrLeaseIneligible),
		errors.Is(err, ErrNoActiveRelease):
		a.log.Info("sensor not started here", "sensor", spec.Ref, "reason", err.Error())
	default:
		a.log.Warn("sensor lease not acquired", "sensor", spec.Ref, "error", err)
	}
}

// running tells the renewer the process of h is up: renew now, so the lease
// drops from the start lease to the renewal lease.
func (a *agentLeases) running(h *heldLease) { a.renewer.shorten() }

// release gives h back in the background (bounded); the supervisor goes on at once.
func (a *agentLeases) release(h *heldLease) {
	a.renewer.remove(h)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer cancel()
		if err := a.db.release(ctx, h.fence); err != nil {
			a.log.Warn("sensor lease not released; it expires on its own", "sensor", h.ref, "error", err)
		}
	}()
}

// run renews the held leases until ctx ends.
func (a *agentLeases) run(ctx context.Context) { a.renewer.run(ctx) }

// wait waits for the releases in flight, at most timeout.
func (a *agentLeases) wait(timeout time.Duration) {
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		a.log.Warn("lease releases still pending at exit", "waited", timeout.String())
	}
}
