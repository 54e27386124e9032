package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// processRecordTimeout bounds one sensor_process write: the supervisor calls
// the recorder inline, and a stalled database must not hold a restart longer.
const processRecordTimeout = 2 * time.Second

// processRecorder keeps one sensor_process row per (sensor, worker) current on
// the current schema generation (CONTRACT §7), so operators see in the
// database what the agent sees. On the legacy generation it does nothing.
type processRecorder struct {
	pool       *pgxpool.Pool // nil: no sensor_process table
	workerName string
	workerID   atomic.Int64
	log        *slog.Logger

	mu      sync.Mutex
	failing bool // inside a write outage (already logged)
}

var _ sensorEvents = (*processRecorder)(nil)

// newProcessRecorder returns a recorder; without a sensor_process table it is a no-op.
func newProcessRecorder(pool *pgxpool.Pool, si schemaInfo, workerName string, log *slog.Logger) *processRecorder {
	r := &processRecorder{workerName: workerName, log: log}
	if si.SensorProcess {
		r.pool = pool
	}
	return r
}

// setWorkerID records the worker id the rows belong to.
func (r *processRecorder) setWorkerID(id int64) { r.workerID.Store(id) }

const upsertSensorProcess = `INSERT INTO sensor_process (sensor, sensor_ref, worker, worker_name, status, pid,
	consecutive_failures, last_exit_code, last_signal, last_started_at, last_stopped_at, next_restart_at,
	active_rule_count, meta)
VALUES ($1, $2, $3, $4, $5::sensor_process_status_enum, $6, $7, $8, $9, $10, $11, $12, $13,
	'{"manager":"attune-sensor-agent"}'::jsonb)
ON CONFLICT (sensor, worker) DO UPDATE SET
	sensor_ref = EXCLUDED.sensor_ref, worker_name = EXCLUDED.worker_name, status = EXCLUDED.status,
	pid = EXCLUDED.pid, consecutive_failures = EXCLUDED.consecutive_failures,
	last_exit_code = COALESCE(EXCLUDED.last_exit_code, sensor_process.last_exit_code),
	last_signal = CASE WHEN EXCLUDED.last_exit_code IS NULL THEN sensor_process.last_signal ELSE EXCLUDED.last_signal END,
	last_started_at = COALESCE(EXCLUDED.last_started_at, sensor_process.last_started_at),
	last_stopped_at = COALESCE(EXCLUDED.last_stopped_at, sensor_process.last_stopped_at),
	next_restart_at = EXCLUDED.next_restart_at, active_rule_count = EXCLUDED.active_rule_count,
	meta = sensor_process.meta || EXCLUDED.meta`

// processRow is one sensor_process state to write.
type processRow struct {
	status           string
	pid              *int
	failures         int
	exitCode, signal *int
	started, stopped *time.Time
	nextRestart      *time.Time
}

func (r *processRecorder) write(spec sensorSpec, row processRow) {
	id := r.workerID.Load()
	if r.pool == nil || id == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), processRecordTimeout)
	defer cancel()
	_, err := r.pool.Exec(ctx, upsertSensorProcess, spec.ID, spec.Ref, id, r.workerName, row.status, row.pid,
		row.failures, row.exitCode, row.signal, row.started, row.stopped, row.nextRestart, len(spec.Rules))
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil && !r.failing:
		r.failing = true
		r.log.Warn("sensor_process update failed", "sensor", spec.Ref, "error", err)
	case err == nil && r.failing:
		r.failing = false
		r.log.Info("sensor_process updates recovered")
	}
}

func (r *processRecorder) sensorStarted(spec sensorSpec, pid int, failures int) {
	now := time.Now()
	r.write(spec, processRow{status: "running", pid: &pid, failures: failures, started: &now})
}

func (r *processRecorder) sensorExited(spec sensorSpec, st exitStatus, failures int, next time.Time) {
	code, sig := st.Code, int(st.Signal)
	row := processRow{status: "backoff", failures: failures, nextRestart: &next, stopped: &st.At}
	if code >= 0 {
		row.exitCode = &code
		if sig != 0 {
			row.signal = &sig
		}
	}
	r.write(spec, row)
}

// sensorStopped records a stop. An unknown status (Code -1: stopped while
// waiting to retry a failed launch) keeps the last known exit code and signal.
func (r *processRecorder) sensorStopped(spec sensorSpec, st exitStatus) {
	code, sig := st.Code, int(st.Signal)
	row := processRow{status: "stopped", stopped: &st.At}
	if code >= 0 {
		row.exitCode = &code
		if sig != 0 {
			row.signal = &sig
		}
	}
	r.write(spec, row)
}
