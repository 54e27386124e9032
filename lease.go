package main

// lease.go owns the workload lease statements of the newest schema
// generation (CONTRACT §12): acquire (admission lock, capacity, eligibility,
// workload pin, assignment claim, process begin, in one transaction),
// renewal of every held lease in one batch, and release. Rust agents share
// these rows, so every statement keeps the reference's guards.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// workloadFence names the lease one sensor process runs under on the newest
// schema generation (CONTRACT §12): the API checks it on every sensor-token
// request and every event, so it travels with the process from acquire to
// release. Generation is bumped by every process start.
type workloadFence struct {
	WorkloadID     int64
	WorkerID       int64
	WorkerInstance string // uuid v4, one per agent process, the worker JWT's metadata.worker_instance
	Generation     int64
}

// leaseTiming are the reference's lease numbers (CONTRACT §12).
type leaseTiming struct {
	Start       time.Duration // lease taken by acquire (900 s)
	Renewal     time.Duration // lease set by each renewal (120 s)
	RenewEvery  time.Duration // renewal tick (30 s)
	StartWithin time.Duration // a start must finish within this after acquire (840 s)
}

// leaseScaleEnv divides every lease number, for tests only: failover and
// self-fencing tests cannot wait two minutes per case. Never set in production.
const leaseScaleEnv = "ATTUNE_SENSOR_AGENT_TEST_LEASE_SCALE"

// defaultLeaseTiming returns the reference's numbers, divided by
// ATTUNE_SENSOR_AGENT_TEST_LEASE_SCALE when that is a number above 1.
func defaultLeaseTiming() leaseTiming {
	t := leaseTiming{Start: 900 * time.Second, Renewal: 120 * time.Second,
		RenewEvery: 30 * time.Second, StartWithin: 840 * time.Second}
	if f, err := strconv.ParseFloat(os.Getenv(leaseScaleEnv), 64); err == nil && f > 1 {
		scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) / f) }
		t = leaseTiming{scale(t.Start), scale(t.Renewal), scale(t.RenewEvery), scale(t.StartWithin)}
	}
	return t
}

var (
	// ErrLeaseHeld: another worker (or another process of this worker)
	// holds a live lease. Normal next to other agents: the next pass retries.
	ErrLeaseHeld = errors.New("sensor lease held by another worker")
	// ErrLeaseIneligible: the re-check inside the admission lock says the
	// sensor must not run here (any more).
	ErrLeaseIneligible = errors.New("sensor not eligible on this worker")
	// ErrLeaseCapacity: this worker's live leases already reach max_concurrent_sensors.
	ErrLeaseCapacity = errors.New("worker at max_concurrent_sensors")
	// ErrNoActiveRelease: the pack has no active release, so no workload can be pinned.
	ErrNoActiveRelease = errors.New("pack has no active release to pin")
)

// pgLeases runs the lease statements for one agent process.
type pgLeases struct {
	pool      *pgxpool.Pool
	schema    schemaInfo
	timing    leaseTiming
	placement workerPlacement
	identity  func() (workerID int64, instance string)
}

// acquired is a lease just taken: its fence, the spec to launch (the
// workload snapshot's sensor, runtime and versions, with live rules), and
// the database's expiry.
type acquired struct {
	fence   workloadFence
	spec    sensorSpec
	expires time.Time
}

// admissionLock is the reference's advisory lock: shared for agents, taken
// exclusive by the API while it changes rules and sensors.
const admissionLock = `SELECT pg_advisory_xact_lock_shared(hashtext('sensor_rule_admission')::BIGINT)`

// acquire takes spec's lease for one process start. The error is one of the
// Err* values above (wrapped with detail) or a database error.
func (l *pgLeases) acquire(ctx context.Context, spec sensorSpec) (acquired, error) {
	workerID, instance := l.identity()
	var out acquired
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, admissionLock); err != nil {
			return fmt.Errorf("admission lock: %w", err)
		}
		if err := checkCapacity(ctx, tx, workerID, spec.ID); err != nil {
			return err
		}
		if why, err := workerNotLive(ctx, tx, workerID); err != nil {
			return err
		} else if why != "" {
			return fmt.Errorf("%w: %s", ErrLeaseIneligible, why)
		}
		live, skipped, err := loadSensors(ctx, tx, l.schema, l.placement, workerID, instance, []int64{spec.ID})
		if err != nil {
			return err
		}
		if len(live) != 1 {
			why := "sensor disabled, retired or without demand"
			if len(skipped) == 1 {
				why = skipped[0].reason
			}
			return fmt.Errorf("%w: %s", ErrLeaseIneligible, why)
		}
		w, err := ensureWorkload(ctx, tx, spec.ID)
		if err != nil {
			return err
		}
		if err := claimAssignment(ctx, tx, w.id, workerID, instance); err != nil {
			return err
		}
		if w.stale {
			if w, err = repinWorkload(ctx, tx, w.id); err != nil {
				return err
			}
		}
		f, expires, err := takeLease(ctx, tx, w.id, workerID, instance, l.timing.Start)
		if err != nil {
			return err
		}
		launch, err := specFromSnapshot(live[0], w.snapshot)
		if err != nil {
			return err
		}
		launch.Fence = &f
		out = acquired{fence: f, spec: launch, expires: expires}
		return nil
	})
	if err != nil {
		return acquired{}, fmt.Errorf("acquire lease of sensor %s: %w", spec.Ref, err)
	}
	return out, nil
}

// checkCapacity locks this worker's row and refuses when its unexpired
// leases on other sensors reach capabilities.max_concurrent_sensors (10 when absent).
func checkCapacity(ctx context.Context, tx pgx.Tx, workerID, sensorID int64) error {
	var caps []byte
	err := tx.QueryRow(ctx, `SELECT capabilities FROM worker WHERE id = $1 FOR UPDATE`, workerID).Scan(&caps)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: worker row %d is gone", ErrLeaseIneligible, workerID)
	}
	if err != nil {
		return fmt.Errorf("lock worker row: %w", err)
	}
	limit := int64(10)
	var c struct {
		Max *float64 `json:"max_concurrent_sensors"`
	}
	if json.Unmarshal(caps, &c) == nil && c.Max != nil && *c.Max >= 0 && *c.Max == float64(int64(*c.Max)) {
		limit = int64(*c.Max)
	}
	var held int64
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM sensor_workload_assignment a
JOIN sensor_workload w ON w.id = a.workload
WHERE a.worker = $1 AND a.lease_expires_at > clock_timestamp() AND w.sensor <> $2`, workerID, sensorID).Scan(&held); err != nil {
		return fmt.Errorf("count held leases: %w", err)
	}
	if held >= limit {
		return fmt.Errorf("%w (%d of %d held)", ErrLeaseCapacity, held, limit)
	}
	return nil
}

// claimAssignment makes sure the assignment row exists, locks it and checks
// it is free: no owner, an expired lease (database clock), or this very
// worker and process.
func claimAssignment(ctx context.Context, tx pgx.Tx, workloadID, workerID int64, instance string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO sensor_workload_assignment (workload) VALUES ($1)
ON CONFLICT (workload) DO NOTHING`, workloadID); err != nil {
		return fmt.Errorf("create assignment: %w", err)
	}
	var owner *int64
	var ownerInstance *string
	var expired bool
	if err := tx.QueryRow(ctx, `SELECT worker, worker_instance::text, COALESCE(lease_expires_at <= clock_timestamp(), TRUE)
FROM sensor_workload_assignment WHERE workload = $1 FOR UPDATE`, workloadID).Scan(&owner, &ownerInstance, &expired); err != nil {
		return fmt.Errorf("lock assignment: %w", err)
	}
	if owner == nil || expired || (*owner == workerID && ownerInstance != nil && *ownerInstance == instance) {
		return nil
	}
	return fmt.Errorf("%w: worker %d", ErrLeaseHeld, *owner)
}

// takeLease claims the assignment for d (keeping assigned_at when this
// process re-takes its own), then begins the process: generation + 1,
// guarded by owner, previous generation and an unexpired lease.
func takeLease(ctx context.Context, tx pgx.Tx, workloadID, workerID int64, instance string, d time.Duration) (workloadFence, time.Time, error) {
	var gen int64
	if err := tx.QueryRow(ctx, `UPDATE sensor_workload_assignment
SET assigned_at = CASE WHEN worker = $2 AND worker_instance = $3::uuid THEN assigned_at ELSE clock_timestamp() END,
    worker = $2, worker_instance = $3::uuid,
    lease_expires_at = clock_timestamp() + make_interval(secs => $4), renewed_at = clock_timestamp()
WHERE workload = $1 RETURNING generation`, workloadID, workerID, instance, d.Seconds()).Scan(&gen); err != nil {
		return workloadFence{}, time.Time{}, fmt.Errorf("take lease: %w", err)
	}
	var expires time.Time
	err := tx.QueryRow(ctx, `UPDATE sensor_workload_assignment
SET generation = generation + 1, renewed_at = clock_timestamp()
WHERE workload = $1 AND worker = $2 AND worker_instance = $3::uuid AND generation = $4
  AND lease_expires_at > clock_timestamp()
RETURNING generation, lease_expires_at`, workloadID, workerID, instance, gen).Scan(&gen, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return workloadFence{}, time.Time{}, fmt.Errorf("%w: lease lost while beginning the process", ErrLeaseHeld)
	}
	if err != nil {
		return workloadFence{}, time.Time{}, fmt.Errorf("begin process: %w", err)
	}
	return workloadFence{WorkloadID: workloadID, WorkerID: workerID, WorkerInstance: instance, Generation: gen}, expires, nil
}

// release gives a lease back, fenced by workload, worker, instance and
// generation: the five owner columns are cleared, the generation kept. A
// lease already taken over or expired and re-taken is left alone.
func (l *pgLeases) release(ctx context.Context, f workloadFence) error {
	_, err := l.pool.Exec(ctx, `UPDATE sensor_workload_assignment
SET worker = NULL, worker_instance = NULL, lease_expires_at = NULL, assigned_at = NULL, renewed_at = NULL
WHERE workload = $1 AND worker = $2 AND worker_instance = $3::uuid AND generation = $4`,
		f.WorkloadID, f.WorkerID, f.WorkerInstance, f.Generation)
	if err != nil {
		return fmt.Errorf("release lease of workload %d: %w", f.WorkloadID, err)
	}
	return nil
}

// renewal is one held lease handed to renew.
type renewal struct {
	sensorID int64
	fence    workloadFence
}

// renew extends every given lease to the renewal lease in one transaction
// whose statement count does not depend on how many there are: admission
// lock, worker liveness, one eligibility load, one UPDATE over the arrays.
// It returns the workload ids still held; the others are lost (ineligible,
// taken over or expired) and their sensors must stop.
func (l *pgLeases) renew(ctx context.Context, held []renewal) (map[int64]bool, error) {
	kept := map[int64]bool{}
	if len(held) == 0 {
		return kept, nil
	}
	workerID, instance := l.identity()
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, admissionLock); err != nil {
			return fmt.Errorf("admission lock: %w", err)
		}
		why, err := workerNotLive(ctx, tx, workerID)
		if err != nil || why != "" {
			return err // not live: nothing is renewed, every sensor stops
		}
		ids := make([]int64, len(held))
		for i, h := range held {
			ids[i] = h.sensorID
		}
		live, _, err := loadSensors(ctx, tx, l.schema, l.placement, workerID, instance, ids)
		if err != nil {
			return err
		}
		eligible := make(map[int64]bool, len(live))
		for _, sp := range live {
			eligible[sp.ID] = true
		}
		var workloads, gens []int64
		for _, h := range held {
			if eligible[h.sensorID] {
				workloads = append(workloads, h.fence.WorkloadID)
				gens = append(gens, h.fence.Generation)
			}
		}
		rows, err := tx.Query(ctx, `UPDATE sensor_workload_assignment a
SET lease_expires_at = clock_timestamp() + make_interval(secs => $5), renewed_at = clock_timestamp()
FROM unnest($3::bigint[], $4::bigint[]) AS h(workload, generation)
WHERE a.workload = h.workload AND a.generation = h.generation
  AND a.worker = $1 AND a.worker_instance = $2::uuid AND a.lease_expires_at > clock_timestamp()
RETURNING a.workload`, workerID, instance, workloads, gens, l.timing.Renewal.Seconds())
		if err != nil {
			return fmt.Errorf("renew leases: %w", err)
		}
		ws, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("renew leases: %w", err)
		}
		for _, w := range ws {
			kept[w] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return kept, nil
}
