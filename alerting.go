package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// alertTimeout bounds the whole alert (row reads, event insert, publish with
// confirm): the reference gives the publish 30 s; a supervisor waiting on it
// delays only that sensor's restart, never the others.
const alertTimeout = 30 * time.Second

// alertPublisher announces a core.alert event row on the broker.
type alertPublisher interface {
	publishCoreAlertEvent(ctx context.Context, eventID, triggerID int64, alert coreAlert) error
}

// sensorAlerter wraps the sensor_process recorder and raises the reference's
// repeated-failure alert (CONTRACT §7): from the third consecutive failure of
// a sensor that still has active rules, once per failure count, it inserts an
// `event` row for trigger core.alert and publishes EventCreated, then records
// sensor_process.last_alerted_failure_count. It needs sensor_process, so it
// is active on the current schema generation only; without a core.alert
// trigger nothing is raised (as in the reference).
type sensorAlerter struct {
	*processRecorder
	pub alertPublisher
}

var _ sensorEvents = (*sensorAlerter)(nil)

// sensorExited records the exit and, when an alert may be due, asks the
// recorder to consider it once the row is written: the supervisor never
// waits for the database or the broker.
func (a *sensorAlerter) sensorExited(spec sensorSpec, st exitStatus, failures int, next time.Time) {
	var job *alertJob
	if a.pub != nil && len(spec.Rules) > 0 && failures >= sensorAlertThreshold {
		job = &alertJob{spec: spec, st: st, failures: failures, next: next}
	}
	a.processRecorder.exited(spec, st, failures, next, job)
}

// raiseJob performs one queued alert within alertTimeout.
func (a *sensorAlerter) raiseJob(ctx context.Context, j alertJob) {
	ctx, cancel := context.WithTimeout(ctx, alertTimeout)
	defer cancel()
	if err := a.raise(ctx, j.spec, j.st, j.failures, j.next); err != nil {
		a.log.Warn("sensor failure alert not raised", "sensor", j.spec.Ref, "attempt", j.failures, "error", err)
	}
}

// raise performs one alert; it returns nil when none is due.
func (a *sensorAlerter) raise(ctx context.Context, spec sensorSpec, st exitStatus, failures int, next time.Time) error {
	workerID := a.workerID.Load()
	var lastAlerted int
	err := a.pool.QueryRow(ctx, `SELECT last_alerted_failure_count FROM sensor_process WHERE sensor = $1 AND worker = $2`,
		spec.ID, workerID).Scan(&lastAlerted)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if lastAlerted > failures {
		lastAlerted = 0 // a new failure streak after a healthy run
	}
	if !shouldRaiseSensorAlert(len(spec.Rules), failures, lastAlerted) {
		return nil
	}
	var triggerID int64
	err = a.pool.QueryRow(ctx, `SELECT id FROM trigger WHERE ref = $1`, coreAlertTriggerRef).Scan(&triggerID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // core.alert not registered: the reference raises nothing either
	}
	if err != nil {
		return err
	}
	f := sensorFailure{SensorID: spec.ID, SensorRef: spec.Ref, WorkerID: workerID, WorkerName: &a.workerName,
		ProcessStatus: "backoff", ConsecutiveFailures: failures, Backoff: time.Until(next).Round(time.Second),
		NextRestartAt: &next, ActiveRuleCount: len(spec.Rules), ObservedAt: time.Now()}
	if st.Code >= 0 {
		code := st.Code
		f.LastExitCode = &code
		if st.Signal != 0 {
			sig := int(st.Signal)
			f.LastSignal = &sig
		}
	}
	alert := sensorFailureAlert(f)
	var eventID int64
	if err := a.pool.QueryRow(ctx, `INSERT INTO event (trigger, trigger_ref, payload, source_ref)
		VALUES ($1, $2, $3, $4) RETURNING id`, triggerID, coreAlertTriggerRef, alert, coreAlertSourceRef).Scan(&eventID); err != nil {
		return err
	}
	if err := a.pub.publishCoreAlertEvent(ctx, eventID, triggerID, alert); err != nil {
		return err
	}
	_, err = a.pool.Exec(ctx, `UPDATE sensor_process SET last_alerted_failure_count = $3, last_alerted_at = now()
		WHERE sensor = $1 AND worker = $2`, spec.ID, workerID, failures)
	if err == nil {
		a.log.Warn("sensor failure alert raised", "sensor", spec.Ref, "attempt", failures, "event_id", eventID)
	}
	return err
}

// newSensorEvents returns the supervisor's event sink: the sensor_process
// recorder, raising alerts through pub when the schema has what they need.
func newSensorEvents(pool *pgxpool.Pool, si schemaInfo, workerName, artifactsDir string, pub alertPublisher, log *slog.Logger) *sensorAlerter {
	a := &sensorAlerter{processRecorder: newProcessRecorder(pool, si, workerName, artifactsDir, log), pub: pub}
	if pub != nil {
		a.onAlert = a.raiseJob
	}
	return a
}
