package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// reconcileInterval is how often the database is re-read even without a
// broker prompt (the reference's 2 s), so a lost prompt or a broker outage
// delays a change by at most this much.
const reconcileInterval = 2 * time.Second

// reconcilePassTimeout bounds one read of the desired sensors. A database
// that stops answering without resetting the connection (a dead peer, a
// black-holing network) would otherwise hold the loop until the kernel gives
// up on the TCP connection, many minutes later: statement_timeout cannot help
// when the server never sees the statement. A pass normally takes
// milliseconds.
const reconcilePassTimeout = 5 * time.Second

// deregisterTimeout bounds marking the worker inactive at shutdown. It is
// the first step of the stop and the sensors keep running meanwhile, so a
// silent database must cost little of the shutdown grace an orchestrator
// gives (30 s by default in Kubernetes); a live one answers in milliseconds.
const deregisterTimeout = 5 * time.Second

// promptPassGap is the least time between the start of a pass and a pass
// made for a prompt. The kick channel already folds prompts that arrive
// during a pass into one, but a steady stream (a pack registering hundreds of
// rules, a replayed backlog) would still cost one database read per few
// milliseconds: 10 000 prompts made ~1 400 passes. Holding prompt passes
// 200 ms apart folds such a stream into a handful while a lone prompt, long
// after the previous pass, is still served at once.
const promptPassGap = 200 * time.Millisecond

// errForcedStop reports that a second signal cut the graceful stop short.
var errForcedStop = errors.New("second signal: sensors killed without grace")

// sensorSource is where the desired sensor set comes from (the database).
type sensorSource interface {
	desiredSensors(ctx context.Context, w workerPlacement) ([]sensorSpec, error)
}

// promptSource delivers broker prompts until ctx ends; it owns its reconnects.
type promptSource interface {
	run(ctx context.Context, notify func(prompt)) error
}

// workerStore is the worker row: what the heartbeat needs, plus marking the
// worker inactive at shutdown.
type workerStore interface {
	workerRegistry
	deregister(ctx context.Context, id int64) error
}

// Service is the running agent: it registers the worker, heartbeats, and keeps
// the right sensors running until ctx ends, then shuts down in the contract's
// order. Run owns every goroutine it starts and returns after all have ended.
type Service struct {
	Config    *Config
	Log       *slog.Logger
	Placement workerPlacement
	Workers   workerStore
	Caps      capabilityInput
	Sensors   sensorSource
	Prompts   promptSource
	Manager   *sensorManager
	// Starts, when set, is the event sink of Manager's supervisors: the
	// ready line waits for their first launch outcomes.
	Starts *startGate
	// OnWorkerID learns the worker id at registration and after a re-registration.
	OnWorkerID func(id int64)
	// OnBeat runs after each successful heartbeat (the status file).
	OnBeat func(id int64, at time.Time, c heartbeatCounters)
	// OnStop runs after the sensors are stopped (e.g. remove the status file).
	OnStop func()
	// Leases renews the workload leases of the newest generation from
	// registration until shutdown; nil on older generations.
	Leases *agentLeases

	passes atomic.Int64 // reconcile passes run, for tests and benchmarks
}

// Run is the agent's life: register, heartbeat, consume prompts, reconcile
// every 2 s and on each prompt; on ctx end stop in order and return.
func (s *Service) Run(ctx context.Context) error {
	caps, err := json.Marshal(buildCapabilities(s.Caps))
	if err != nil {
		return fmt.Errorf("build capabilities: %w", err)
	}
	id, err := s.Workers.register(ctx, s.Config.Sensor.WorkerName, s.Config.Sensor.Host, caps)
	if err != nil {
		return fmt.Errorf("register worker %q: %w", s.Config.Sensor.WorkerName, err)
	}
	s.OnWorkerID(id)
	s.Log.Info("sensor worker registered", "worker_id", id, "worker", s.Config.Sensor.WorkerName,
		"runtimes", s.Placement.Runtimes)

	var wg sync.WaitGroup
	bg := context.WithoutCancel(ctx) // internal loops are stopped one by one, in order
	hbCtx, stopHB := context.WithCancel(bg)
	hb := newHeartbeater(s.Workers, s.Log, id, heartbeatOptions{
		Interval: s.Config.Sensor.HeartbeatInterval, WorkerName: s.Config.Sensor.WorkerName,
		Host: s.Config.Sensor.Host, Capabilities: s.Caps, Counters: s.Manager.counters,
		OnBeat: s.OnBeat, OnRegistered: s.OnWorkerID,
	})

	leaseCtx, stopLeases := context.WithCancel(bg)
	leasesDone := make(chan struct{})
	go func() {
		defer close(leasesDone)
		if s.Leases != nil {
			s.Leases.run(leaseCtx)
		}
	}()

	kick := make(chan struct{}, 1)
	notify := func(prompt) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	mqCtx, stopMQ := context.WithCancel(bg)
	mqDone := make(chan struct{})
	go func() { defer close(mqDone); s.Prompts.run(mqCtx, notify) }()

	// Ready comes in the reference's order (CONTRACT §1): the first start of
	// the eligible sensors (pass 1), the first counter sync, the heartbeat's
	// start. The sync is one synchronous beat before the heartbeat loop
	// starts, so the two never run at once.
	ready := func() {
		if s.Starts != nil && !s.Starts.wait(ctx, s.Manager.supervisedIDs, readyStartWait) && ctx.Err() == nil {
			s.Log.Warn("first sensor starts still pending; reporting ready anyway", "waited", readyStartWait.String())
		}
		if err := hb.tick(hbCtx); err != nil {
			s.Log.Warn("first counter sync failed; the heartbeat retries every interval", "worker_id", id, "error", err.Error())
		}
		wg.Add(1)
		go func() { defer wg.Done(); hb.run(hbCtx) }()
		s.Log.Info("Attune Sensor Agent is ready", "worker_id", hb.workerID())
	}
	// Supervisors run under bg: they stop through stopSensors, after the worker
	// row is inactive, not the instant the signal arrives.
	s.reconcileLoop(ctx, bg, kick, ready)

	// Shutdown (CONTRACT §8). The heartbeat stops before the row is marked
	// inactive: a beat landing after deregistration would flip it back to active.
	s.Log.Info("shutting down")
	stopHB()
	wg.Wait()
	// Renewal ends before the row turns inactive (which would make every
	// lease ineligible at the next renewal); the stops below release them.
	stopLeases()
	<-leasesDone
	id = hb.workerID()
	dctx, cancel := context.WithTimeout(bg, deregisterTimeout)
	if err := s.Workers.deregister(dctx, id); err != nil {
		s.Log.Warn("mark worker inactive failed", "worker_id", id, "error", err)
	}
	cancel()
	stopErr := s.stopSensors(ctx)
	stopMQ()
	<-mqDone
	if s.OnStop != nil {
		s.OnStop()
	}
	return stopErr
}

// stopSensors stops every sensor concurrently within sensor.shutdown_timeout;
// a second signal kills them all at once.
func (s *Service) stopSensors(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Config.Sensor.ShutdownTimeout)
	defer cancel()
	forced := make(chan struct{})
	go func() {
		select {
		case <-hardStop(ctx):
			close(forced)
			s.Log.Warn("second signal: killing every sensor group now")
			s.Manager.killAll()
		case <-sctx.Done():
		}
	}()
	err := s.Manager.stopAll(sctx)
	cancel()
	select {
	case <-forced:
		return errForcedStop
	default:
	}
	if err != nil && s.Manager.sensorsLeft() == 0 {
		// The reference exits 0 when a sensor needed SIGKILL after the
		// shutdown timeout; so do we, and say so.
		s.Log.Warn("shutdown needed SIGKILL: a sensor outlived sensor.shutdown_timeout; exiting 0 as the reference does",
			"shutdown_timeout", s.Config.Sensor.ShutdownTimeout.String())
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop sensors: %w", err)
	}
	return nil
}

// sensorsLeft counts the supervisors that have not finished, running or
// stopping: 0 once every sensor process is gone.
func (m *sensorManager) sensorsLeft() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.active) + len(m.stopping)
}

// reconcileLoop converges the sensor set at start, every reconcileInterval and
// at once after a prompt; bursts of prompts coalesce into one pass per
// promptPassGap. afterFirst runs once, after the first pass, whatever its outcome: a
// database that cannot be read yet must not hold the heartbeat back.
func (s *Service) reconcileLoop(ctx, sensorCtx context.Context, kick <-chan struct{}, afterFirst func()) {
	t := time.NewTicker(reconcileInterval)
	defer t.Stop()
	dbDown := false
	cause := "start"
	for {
		pass := s.passes.Add(1)
		s.Log.Debug("reconcile pass", "pass", pass, "cause", cause)
		passStart := time.Now()
		pctx, cancel := context.WithTimeout(ctx, reconcilePassTimeout)
		desired, err := s.Sensors.desiredSensors(pctx, s.Placement)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !dbDown {
				s.Log.Warn("read desired sensors failed; keeping the current sensors until the database answers", "error", err)
				dbDown = true
			}
		default:
			if dbDown {
				s.Log.Info("desired sensors readable again")
				dbDown = false
			}
			s.Manager.converge(sensorCtx, desired)
		}
		if afterFirst != nil {
			afterFirst()
			afterFirst = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
			cause = "prompt"
			if wait := promptPassGap - time.Since(passStart); wait > 0 {
				if !sleepCtx(ctx, wait) {
					return
				}
				select { // prompts that came meanwhile are served by this pass
				case <-kick:
				default:
				}
			}
		case <-t.C:
			cause = "interval"
		}
	}
}
