package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// heartbeatStaleAfter is the reference's staleness cut-off for a worker's
// last_heartbeat: an interval at or above it makes the worker look dead
// between beats.
const heartbeatStaleAfter = 90 * time.Second

// heartbeatDefaultCallTimeout bounds each registry call of a beat, so a
// stalled database costs one tick, not the loop.
const heartbeatDefaultCallTimeout = 10 * time.Second

// heartbeatCounters are the three capability numbers the heartbeat keeps
// current: sensors monitored, sensors running, and active rules.
type heartbeatCounters struct {
	Monitored   int
	Running     int
	ActiveRules int
}

// workerRegistry is what the heartbeat needs from the worker table (pgRegistry
// in production, a fake in tests).
type workerRegistry interface {
	// register finds or creates the sensor worker row and returns its id.
	register(ctx context.Context, name, host string, caps []byte) (int64, error)
	// updateCapabilities rewrites the capabilities; ErrWorkerGone when no row.
	updateCapabilities(ctx context.Context, workerID int64, caps []byte) error
	// beat sets last_heartbeat and status active; ErrWorkerGone when no row.
	beat(ctx context.Context, workerID int64) error
}

// heartbeatOptions configures a heartbeater.
type heartbeatOptions struct {
	Interval   time.Duration // sensor.heartbeat_interval (default 30 s)
	WorkerName string
	Host       string
	// Capabilities is the input the row was registered with; its Counters
	// are taken as what the row holds now.
	Capabilities capabilityInput
	// Counters recomputes the three numbers each tick (nil: always zero).
	Counters func() heartbeatCounters
	// OnBeat runs after every successful beat (the status file hook).
	OnBeat func(workerID int64, at time.Time, c heartbeatCounters)
	// OnRegistered runs when the row had vanished and was created again,
	// with the new id.
	OnRegistered func(workerID int64)
	// CallTimeout bounds each registry call (default min(Interval, 10 s)).
	CallTimeout time.Duration
}

// heartbeater keeps the worker row alive: last_heartbeat every interval,
// capabilities rewritten only when a counter changed, and the row registered
// again if someone purged it. A failing database is logged once per outage
// and retried next tick; the loop never stops the agent.
type heartbeater struct {
	reg  workerRegistry
	log  *slog.Logger
	opts heartbeatOptions

	id atomic.Int64 // current worker id; 0 = not registered

	// Owned by the run goroutine.
	written heartbeatCounters // counters the row holds
	failing bool              // inside an outage (already logged)
}

// newHeartbeater returns a heartbeater for the row workerID (0 makes the
// first tick register).
func newHeartbeater(reg workerRegistry, log *slog.Logger, workerID int64, opts heartbeatOptions) *heartbeater {
	if opts.Interval <= 0 {
		opts.Interval = 30 * time.Second
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = min(opts.Interval, heartbeatDefaultCallTimeout)
	}
	h := &heartbeater{reg: reg, log: log, opts: opts, written: opts.Capabilities.Counters}
	h.id.Store(workerID)
	return h
}

// workerID returns the current worker id; it changes when the row had to be
// registered again.
func (h *heartbeater) workerID() int64 { return h.id.Load() }

// run beats at once, then every interval, until ctx ends; it returns nil then.
func (h *heartbeater) run(ctx context.Context) error {
	if h.opts.Interval >= heartbeatStaleAfter {
		h.log.Warn("heartbeat interval is at or above the staleness cut-off; the worker will look dead between beats",
			"interval", h.opts.Interval.String(), "cutoff", heartbeatStaleAfter.String())
	}
	t := time.NewTicker(h.opts.Interval)
	defer t.Stop()
	for {
		err := h.tick(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil && !h.failing:
			h.failing = true
			h.log.Warn("heartbeat failed, retrying every interval", "worker_id", h.workerID(), "error", err.Error())
		case err == nil && h.failing:
			h.failing = false
			h.log.Info("heartbeat recovered", "worker_id", h.workerID())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// tick is one beat: counters, capabilities when changed, then last_heartbeat.
func (h *heartbeater) tick(ctx context.Context) error {
	c := heartbeatCounters{}
	if h.opts.Counters != nil {
		c = h.opts.Counters()
	}
	id := h.workerID()
	if id == 0 {
		return h.registerAgain(ctx, c)
	}
	var capsErr error
	if c != h.written {
		caps, err := h.capabilitiesJSON(c)
		if err != nil {
			return err
		}
		err = h.call(ctx, func(ctx context.Context) error { return h.reg.updateCapabilities(ctx, id, caps) })
		switch {
		case errors.Is(err, ErrWorkerGone):
			return h.registerAgain(ctx, c)
		case err != nil:
			// Still beat: liveness matters more than fresh counters, and the
			// unchanged `written` makes the next tick try again.
			capsErr = fmt.Errorf("update capabilities: %w", err)
		default:
			h.written = c
		}
	}
	err := h.call(ctx, func(ctx context.Context) error { return h.reg.beat(ctx, id) })
	switch {
	case errors.Is(err, ErrWorkerGone):
		return h.registerAgain(ctx, c)
	case err != nil:
		return fmt.Errorf("heartbeat: %w", err)
	}
	h.notify(id, c)
	return capsErr
}

// registerAgain recreates a purged (or never created) row with the current
// counters and publishes the new id.
func (h *heartbeater) registerAgain(ctx context.Context, c heartbeatCounters) error {
	caps, err := h.capabilitiesJSON(c)
	if err != nil {
		return err
	}
	var id int64
	err = h.call(ctx, func(ctx context.Context) error {
		var err error
		id, err = h.reg.register(ctx, h.opts.WorkerName, h.opts.Host, caps)
		return err
	})
	if err != nil {
		return fmt.Errorf("register worker %q again: %w", h.opts.WorkerName, err)
	}
	old := h.id.Swap(id)
	h.written = c
	if old == 0 {
		h.log.Info("worker registered", "worker", h.opts.WorkerName, "worker_id", id)
	} else {
		h.log.Info("worker row was missing, registered again", "worker", h.opts.WorkerName, "old_worker_id", old, "worker_id", id)
	}
	if h.opts.OnRegistered != nil {
		h.opts.OnRegistered(id)
	}
	h.notify(id, c) // register sets last_heartbeat too
	return nil
}

// call runs one registry call under the per-call timeout.
func (h *heartbeater) call(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, h.opts.CallTimeout)
	defer cancel()
	return f(ctx)
}

// capabilitiesJSON renders the capabilities with counters c.
func (h *heartbeater) capabilitiesJSON(c heartbeatCounters) ([]byte, error) {
	in := h.opts.Capabilities
	in.Counters = c
	b, err := json.Marshal(buildCapabilities(in))
	if err != nil {
		return nil, fmt.Errorf("encode capabilities: %w", err)
	}
	return b, nil
}

// notify reports a successful beat to the owner's hook.
func (h *heartbeater) notify(id int64, c heartbeatCounters) {
	if h.opts.OnBeat != nil {
		h.opts.OnBeat(id, time.Now(), c)
	}
}
