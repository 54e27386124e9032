package main

// leaserenewal.go keeps the held leases alive (CONTRACT §12): every renewal
// tick renews all of them in one batch, a process that has just started gets
// the short renewal lease at once, and a watchdog on the agent's monotonic
// clock fences off (stops) any sensor whose lease may lapse because renewals
// keep failing, so no sensor runs on after another worker could take it.

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// heldLease is one lease this agent holds for one sensor process.
type heldLease struct {
	sensorID int64
	ref      string
	fence    workloadFence
	lost     chan struct{} // closed when the lease is lost or fenced off
	reason   string        // why, set before lost is closed

	// sentAt is when the last successful acquire or renewal was sent, by the
	// monotonic clock; the database set the expiry no earlier than that, so
	// the lease lasts at least until sentAt + length.
	sentAt time.Time
	length time.Duration

	releaseOnce sync.Once // the supervisor gives it back once, whichever way its process ends
}

// Lost is closed once the lease is gone; Reason says why.
func (h *heldLease) Lost() <-chan struct{} { return h.lost }

// leaseStore is what the renewer needs of the database (pgLeases).
type leaseStore interface {
	renew(ctx context.Context, held []renewal) (map[int64]bool, error)
}

// leaseRenewer owns the set of held leases and their renewal.
type leaseRenewer struct {
	store  leaseStore
	timing leaseTiming
	log    *slog.Logger

	mu      sync.Mutex
	held    map[int64]*heldLease // by workload id
	kick    chan struct{}
	failing bool // inside a renewal outage (logged once)
}

func newLeaseRenewer(store leaseStore, timing leaseTiming, log *slog.Logger) *leaseRenewer {
	return &leaseRenewer{store: store, timing: timing, log: log,
		held: map[int64]*heldLease{}, kick: make(chan struct{}, 1)}
}

// add starts tracking a lease taken at sentAt for length.
func (r *leaseRenewer) add(h *heldLease) {
	r.mu.Lock()
	r.held[h.fence.WorkloadID] = h
	r.mu.Unlock()
}

// shorten asks for a renewal now: the process of h runs, so its start lease
// (900 s) becomes the renewal lease (120 s) and a crash of this agent frees
// it within about two minutes.
func (r *leaseRenewer) shorten() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// remove stops tracking h (released or lost).
func (r *leaseRenewer) remove(h *heldLease) {
	r.mu.Lock()
	if r.held[h.fence.WorkloadID] == h {
		delete(r.held, h.fence.WorkloadID)
	}
	r.mu.Unlock()
}

// lose marks h lost with reason and forgets it. Caller holds r.mu.
func (r *leaseRenewer) loseLocked(h *heldLease, reason string) {
	if r.held[h.fence.WorkloadID] != h {
		return
	}
	delete(r.held, h.fence.WorkloadID)
	h.reason = reason
	close(h.lost)
}

// fenceMargin is how long before the earliest possible lapse the watchdog
// stops a sensor: the database's clock may run a little ahead of ours.
func (r *leaseRenewer) fenceMargin() time.Duration {
	return min(5*time.Second, r.timing.Renewal/10)
}

// run renews every RenewEvery (sooner after a failure, at once on shorten)
// and runs the watchdog until ctx ends.
func (r *leaseRenewer) run(ctx context.Context) {
	tick := time.NewTicker(r.timing.RenewEvery)
	defer tick.Stop()
	watch := time.NewTicker(min(time.Second, r.timing.Renewal/20))
	defer watch.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-watch.C:
			r.watchdog(time.Now())
			continue
		case <-tick.C:
		case <-r.kick:
		case <-retry:
		}
		retry = nil
		if !r.renewOnce(ctx) {
			retry = time.After(r.timing.RenewEvery / 6)
		}
	}
}

// renewOnce renews every lease held now; false when the database failed.
func (r *leaseRenewer) renewOnce(ctx context.Context) bool {
	r.mu.Lock()
	batch := make([]*heldLease, 0, len(r.held))
	items := make([]renewal, 0, len(r.held))
	for _, h := range r.held {
		batch = append(batch, h)
		items = append(items, renewal{sensorID: h.sensorID, fence: h.fence})
	}
	r.mu.Unlock()
	if len(items) == 0 {
		return true
	}
	sent := time.Now()
	rctx, cancel := context.WithTimeout(ctx, max(r.timing.RenewEvery/2, time.Second))
	kept, err := r.store.renew(rctx, items)
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if !r.failing && ctx.Err() == nil {
			r.log.Warn("lease renewal failed; sensors keep running until their leases could lapse", "leases", len(items), "error", err)
		}
		r.failing = true
		return false
	}
	if r.failing {
		r.log.Info("lease renewal works again", "leases", len(items))
		r.failing = false
	}
	for _, h := range batch {
		if kept[h.fence.WorkloadID] {
			h.sentAt, h.length = sent, r.timing.Renewal
			continue
		}
		r.loseLocked(h, "lease not renewed: sensor no longer eligible here, or its lease was taken over")
	}
	return true
}

// watchdog fences off every lease that could lapse before the next renewal
// succeeds: sentAt + length - margin has passed by the monotonic clock.
func (r *leaseRenewer) watchdog(now time.Time) {
	margin := r.fenceMargin()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.held {
		if now.After(h.sentAt.Add(h.length - margin)) {
			r.loseLocked(h, "self-fenced: renewals failed until the lease could lapse")
		}
	}
}

// count reports how many leases are held (tests, benchmarks).
func (r *leaseRenewer) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}
