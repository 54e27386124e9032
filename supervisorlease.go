package main

// supervisorlease.go is the supervisor's lease step (CONTRACT §12): before
// each start it acquires the sensor's workload lease and launches from the
// workload's snapshot within the start deadline; every end of that process
// gives the lease back. On older generations (leases nil) all of it is a no-op.

import (
	"context"
	"fmt"
	"io"
)

// sensorLeases takes and gives back workload leases (agentLeases).
type sensorLeases interface {
	// acquire takes spec's lease; the returned spec is the one to launch
	// (snapshot rows, Fence set). Any error means "do not start now".
	acquire(ctx context.Context, spec sensorSpec) (*heldLease, sensorSpec, error)
	// running: the process of h is up.
	running(h *heldLease)
	// release gives h back without blocking the caller.
	release(h *heldLease)
}

// takeLease acquires spec's lease when leases are in use. ok is false when
// the sensor must not start now (held elsewhere, ineligible, at capacity,
// database error); the acquire already logged why.
func (s *supervisor) takeLease(ctx context.Context, spec sensorSpec) (*heldLease, sensorSpec, bool) {
	if s.leases == nil {
		return nil, spec, true
	}
	h, launch, err := s.leases.acquire(ctx, spec)
	if err != nil {
		return nil, spec, false
	}
	return h, launch, true
}

// launchLeased launches spec; under a lease the start must finish within
// the start deadline (840 s in the reference) and before the lease is lost.
func (s *supervisor) launchLeased(ctx context.Context, spec sensorSpec, h *heldLease, stdout, stderr io.Writer) (launched, error) {
	if h == nil {
		return s.launcher.launch(ctx, spec, stdout, stderr)
	}
	lctx, cancel := context.WithTimeout(ctx, defaultLeaseTiming().StartWithin)
	defer cancel()
	go func() {
		select {
		case <-h.Lost():
			cancel()
		case <-lctx.Done():
		}
	}()
	l, err := s.launcher.launch(lctx, spec, stdout, stderr)
	if err != nil {
		return launched{}, err
	}
	select {
	case <-h.Lost():
		s.stopProc(l.proc)
		return launched{}, fmt.Errorf("sensor %s: lease lost during start: %s", spec.Ref, h.reason)
	default:
		return l, nil
	}
}

// giveBack releases h once, whatever path ends its process first.
func (s *supervisor) giveBack(h *heldLease) {
	if h != nil {
		h.releaseOnce.Do(func() { s.leases.release(h) })
	}
}

// leaseLost is h's lost channel, or nil (never ready) without a lease.
func leaseLost(h *heldLease) <-chan struct{} {
	if h == nil {
		return nil
	}
	return h.Lost()
}
