package main

// processrows.go owns what each supervisor transition writes to a
// sensor_process row (CONTRACT §7, as the reference's sensor_process
// repository does) and the two batch statements that write them. The
// writer that queues, coalesces and sends them is processrecorder.go.

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Columns a pending row sets; a column outside the mask keeps its value.
const (
	colStatus uint32 = 1 << iota
	colPid
	colFailures
	colExitCode
	colSignal
	colStarted
	colStopped
	colNextRestart
	colExcerpt
	colLogRef
	colRuleCount
	colMeta
	colAlertReset // last_alerted_failure_count = 0, last_alerted_at = NULL
)

// processMeta replaces sensor_process.meta at every spawn (never merged).
const processMeta = `{"manager":"attune-sensor-agent"}`

// pendingRow is the latest wanted state of one sensor's row not yet written:
// the columns in mask, and whether the row must exist (a spawn inserts it;
// every other transition only updates a row that exists).
type pendingRow struct {
	sensor    int64
	ref       string
	insert    bool
	mask      uint32
	status    string
	pid       *int32
	failures  int32
	exitCode  *int32
	signal    *int32
	started   *time.Time
	stopped   *time.Time
	next      *time.Time
	excerpt   *string
	logRef    string
	ruleCount int32
	alert     *alertJob // an alert to raise once this row is written
}

// overlay applies newer on top of p: newer's columns win, the row must exist
// if either needs it, and the latest alert request is kept.
func (p *pendingRow) overlay(n *pendingRow) {
	p.ref = n.ref
	p.insert = p.insert || n.insert
	m := n.mask
	if m&colStatus != 0 {
		p.status = n.status
	}
	if m&colPid != 0 {
		p.pid = n.pid
	}
	if m&colFailures != 0 {
		p.failures = n.failures
	}
	if n.insert && m&colFailures == 0 && p.mask&colFailures == 0 {
		p.failures = n.failures // the value an inserted row starts with
	}
	if m&colExitCode != 0 {
		p.exitCode = n.exitCode
	}
	if m&colSignal != 0 {
		p.signal = n.signal
	}
	if m&colStarted != 0 {
		p.started = n.started
	}
	if m&colStopped != 0 {
		p.stopped = n.stopped
	}
	if m&colNextRestart != 0 {
		p.next = n.next
	}
	if m&colExcerpt != 0 {
		p.excerpt = n.excerpt
	}
	if m&colLogRef != 0 {
		p.logRef = n.logRef
	}
	if m&colRuleCount != 0 {
		p.ruleCount = n.ruleCount
	}
	p.mask |= m
	if n.alert != nil {
		p.alert = n.alert
	}
}

// spawnRow: a process exists. Upsert running, pid, start time, log artifact
// ref and rule count; clear exit code, signal, stop time, next restart and
// excerpt; replace meta. Only a fresh start (no failure streak behind it)
// resets the failure count and the alert marker.
func spawnRow(spec sensorSpec, pid, failures int, at time.Time) *pendingRow {
	p32 := int32(pid)
	r := &pendingRow{sensor: spec.ID, ref: spec.Ref, insert: true,
		mask: colStatus | colPid | colStarted | colExitCode | colSignal | colStopped | colNextRestart |
			colExcerpt | colLogRef | colRuleCount | colMeta,
		status: "running", pid: &p32, failures: int32(failures), started: &at,
		logRef: "sensor." + spec.Ref + ".stderr", ruleCount: int32(len(spec.Rules))}
	if failures == 0 {
		r.mask |= colFailures | colAlertReset
	}
	return r
}

// crashRow: the process ended while it should run. Update only: backoff,
// the failure count, exit code (NULL for a signal death), signal, stop
// time, next restart and the stderr excerpt.
func crashRow(spec sensorSpec, st exitStatus, failures int, next time.Time, excerpt *string) *pendingRow {
	r := &pendingRow{sensor: spec.ID, ref: spec.Ref,
		mask: colStatus | colPid | colFailures | colExitCode | colSignal | colStopped | colNextRestart |
			colExcerpt | colRuleCount,
		status: "backoff", failures: int32(failures), next: &next, ruleCount: int32(len(spec.Rules))}
	at := st.At
	r.stopped = &at
	if st.Signal != 0 {
		sig := int32(st.Signal)
		r.signal = &sig
	} else {
		code := int32(st.Code)
		r.exitCode = &code
	}
	r.excerpt = excerpt
	return r
}

// startFailedRow: a launch failed before any process existed (token,
// runtime environment, exec). No process exited, so exit code, signal,
// stop time and excerpt are left alone; an existing row shows the retry
// (backoff, no pid, the failure count, next restart). A sensor that never
// ran gets no row, as in the reference, which writes none for this case.
func startFailedRow(spec sensorSpec, failures int, next time.Time) *pendingRow {
	return &pendingRow{sensor: spec.ID, ref: spec.Ref,
		mask:   colStatus | colPid | colFailures | colNextRestart | colRuleCount,
		status: "backoff", failures: int32(failures), next: &next, ruleCount: int32(len(spec.Rules))}
}

// stopRow: the agent stopped the sensor. Update only: stopped, no pid,
// stop time, no next restart; failure count and last exit untouched.
func stopRow(spec sensorSpec, at time.Time) *pendingRow {
	return &pendingRow{sensor: spec.ID, ref: spec.Ref,
		mask:   colStatus | colPid | colStopped | colNextRestart,
		status: "stopped", stopped: &at}
}

// insertProcessRows creates the rows spawns need. Columns beyond the key
// and the starting failure count come from the update that follows in the
// same transaction; a row that exists (either unique key) is left to it.
const insertProcessRows = `INSERT INTO sensor_process (sensor, sensor_ref, worker, worker_name, consecutive_failures)
SELECT v.sensor, v.sensor_ref, $1, $2, v.failures
FROM unnest($3::bigint[], $4::text[], $5::int[]) AS v(sensor, sensor_ref, failures)
ON CONFLICT DO NOTHING`

// updateProcessRows sets, per row, exactly the columns in its mask.
const updateProcessRows = `UPDATE sensor_process sp SET
	sensor_ref = v.sensor_ref, worker_name = $2,
	status = CASE WHEN v.m & 1 <> 0 THEN v.status::sensor_process_status_enum ELSE sp.status END,
	pid = CASE WHEN v.m & 2 <> 0 THEN v.pid ELSE sp.pid END,
	consecutive_failures = CASE WHEN v.m & 4 <> 0 THEN v.failures ELSE sp.consecutive_failures END,
	last_exit_code = CASE WHEN v.m & 8 <> 0 THEN v.exit_code ELSE sp.last_exit_code END,
	last_signal = CASE WHEN v.m & 16 <> 0 THEN v.signal ELSE sp.last_signal END,
	last_started_at = CASE WHEN v.m & 32 <> 0 THEN v.started ELSE sp.last_started_at END,
	last_stopped_at = CASE WHEN v.m & 64 <> 0 THEN v.stopped ELSE sp.last_stopped_at END,
	next_restart_at = CASE WHEN v.m & 128 <> 0 THEN v.next_restart ELSE sp.next_restart_at END,
	stderr_excerpt = CASE WHEN v.m & 256 <> 0 THEN v.excerpt ELSE sp.stderr_excerpt END,
	log_artifact_ref = CASE WHEN v.m & 512 <> 0 THEN v.log_ref ELSE sp.log_artifact_ref END,
	active_rule_count = CASE WHEN v.m & 1024 <> 0 THEN v.rules ELSE sp.active_rule_count END,
	meta = CASE WHEN v.m & 2048 <> 0 THEN '` + processMeta + `'::jsonb ELSE sp.meta END,
	last_alerted_failure_count = CASE WHEN v.m & 4096 <> 0 THEN 0 ELSE sp.last_alerted_failure_count END,
	last_alerted_at = CASE WHEN v.m & 4096 <> 0 THEN NULL ELSE sp.last_alerted_at END
FROM unnest($3::bigint[], $4::text[], $5::int[], $6::text[], $7::int[], $8::int[], $9::int[], $10::int[],
	$11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::text[], $15::text[], $16::int[])
	AS v(sensor, sensor_ref, m, status, pid, failures, exit_code, signal, started, stopped, next_restart, excerpt, log_ref, rules)
WHERE sp.sensor = v.sensor AND sp.worker = $1`

// writeProcessRows writes one batch in one transaction: two statements
// whatever its size.
func writeProcessRows(ctx context.Context, db pgxBeginner, workerID int64, workerName string, rows []*pendingRow) error {
	var insSensor []int64
	var insRef []string
	var insFailures []int32
	n := len(rows)
	sensor, ref, mask := make([]int64, n), make([]string, n), make([]int32, n)
	status, pid, failures := make([]*string, n), make([]*int32, n), make([]int32, n)
	code, sig := make([]*int32, n), make([]*int32, n)
	started, stopped, next := make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
	excerpt, logRef, rules := make([]*string, n), make([]*string, n), make([]int32, n)
	for i, r := range rows {
		if r.insert {
			insSensor, insRef, insFailures = append(insSensor, r.sensor), append(insRef, r.ref), append(insFailures, r.failures)
		}
		sensor[i], ref[i], mask[i], failures[i], rules[i] = r.sensor, r.ref, int32(r.mask), r.failures, r.ruleCount
		if r.mask&colStatus != 0 {
			s := r.status
			status[i] = &s
		}
		if r.mask&colLogRef != 0 {
			s := r.logRef
			logRef[i] = &s
		}
		pid[i], code[i], sig[i], excerpt[i] = r.pid, r.exitCode, r.signal, r.excerpt
		started[i], stopped[i], next[i] = r.started, r.stopped, r.next
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if len(insSensor) > 0 {
			if _, err := tx.Exec(ctx, insertProcessRows, workerID, workerName, insSensor, insRef, insFailures); err != nil {
				return fmt.Errorf("insert sensor_process rows: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, updateProcessRows, workerID, workerName, sensor, ref, mask, status, pid, failures,
			code, sig, started, stopped, next, excerpt, logRef, rules); err != nil {
			return fmt.Errorf("update sensor_process rows: %w", err)
		}
		return nil
	})
}

// pgxBeginner is what writeProcessRows needs of the pool.
type pgxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}
