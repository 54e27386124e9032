package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestSensorAlerterRaisesOncePerFailureCount runs the alerter against the
// current fixture: no alert for failures 1 and 2, one event row and one
// publish for failure 3, nothing when failure 3 is reported again, and none
// at all without a core.alert trigger or without active rules.
func TestSensorAlerterRaisesOncePerFailureCount(t *testing.T) {
	dbURL := newTestDB(t, "current")
	db := newSeedDB(t, dbURL)
	packID := db.pack("testpack")
	rtID := db.runtime("core.native", "Native", `{}`)
	sensorID := db.sensor(packID, "testpack", "testpack.crashy", "crashy", rtID, "")
	workerID := db.id(`INSERT INTO worker (name, worker_type, worker_role) VALUES ('sensor-alert', 'local', 'sensor') RETURNING id`)
	spec := sensorSpec{ID: sensorID, Ref: "testpack.crashy", PackRef: "testpack",
		Rules: []sensorRule{{ID: 1, Ref: "testpack.r", TriggerRef: "testpack.t"}}}

	pub := &fakeAlertPublisher{}
	a := newSensorEvents(db.pool, schemaInfo{SensorProcess: true}, "sensor-alert", t.TempDir(), pub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.setWorkerID(workerID)
	t.Cleanup(func() { a.close(5 * time.Second) })
	// Alerts are raised after their row is written, off the caller:
	// flush waits for both.
	flush := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if !a.flush(ctx) {
			t.Fatal("sensor_process writer did not drain within 10 s")
		}
	}
	a.sensorStarted(spec, 4242, 0) // the row a crash updates
	exit := exitStatus{Code: 3, At: time.Now()}
	countEvents := func() int {
		var n int
		db.pool.QueryRow(context.Background(), `SELECT count(*) FROM event WHERE trigger_ref = 'core.alert'`).Scan(&n)
		return n
	}

	// No core.alert trigger registered: the reference raises nothing.
	for f := 1; f <= 3; f++ {
		a.sensorExited(spec, exit, f, time.Now().Add(20*time.Second))
		flush()
	}
	if n := countEvents(); n != 0 || len(pub.calls) != 0 {
		t.Fatalf("alert raised without a core.alert trigger: %d events, %d publishes", n, len(pub.calls))
	}

	corePack := db.pack("core")
	triggerID := db.id(`INSERT INTO trigger (ref, pack, pack_ref, label) VALUES ('core.alert', $1, 'core', 'Alert') RETURNING id`, corePack)
	a.sensorExited(spec, exit, 3, time.Now().Add(20*time.Second))
	flush()
	a.sensorExited(spec, exit, 3, time.Now().Add(20*time.Second)) // same count: not again
	flush()
	if n := countEvents(); n != 1 || len(pub.calls) != 1 {
		t.Fatalf("after failure 3 twice: %d events, %d publishes; want 1 and 1", n, len(pub.calls))
	}
	c := pub.calls[0]
	if c.triggerID != triggerID || c.alert.FailureType != "sensor_process_repeated_failure" || *c.alert.ComponentRef != spec.Ref {
		t.Errorf("published %+v", c)
	}
	var payload map[string]any
	var raw []byte
	db.pool.QueryRow(context.Background(), `SELECT payload FROM event WHERE id = $1`, c.eventID).Scan(&raw)
	json.Unmarshal(raw, &payload)
	if payload["category"] != "sensor_process_health" {
		t.Errorf("event payload %v", payload)
	}
	var lastAlerted int
	db.pool.QueryRow(context.Background(), `SELECT last_alerted_failure_count FROM sensor_process WHERE sensor = $1`, sensorID).Scan(&lastAlerted)
	if lastAlerted != 3 {
		t.Errorf("last_alerted_failure_count = %d, want 3", lastAlerted)
	}

	a.sensorExited(spec, exit, 4, time.Now().Add(40*time.Second))
	flush()
	noRules := spec
	noRules.Rules = nil
	a.sensorExited(noRules, exit, 5, time.Now().Add(80*time.Second))
	flush()
	if len(pub.calls) != 2 {
		t.Errorf("publishes = %d, want 2 (failure 4 alerts, a sensor without rules does not)", len(pub.calls))
	}
}

// fakeAlertPublisher records what the alerter publishes.
type fakeAlertPublisher struct {
	calls []fakeAlertCall
}

type fakeAlertCall struct {
	eventID, triggerID int64
	alert              coreAlert
}

func (f *fakeAlertPublisher) publishCoreAlertEvent(ctx context.Context, eventID, triggerID int64, alert coreAlert) error {
	if _, ok := ctx.Deadline(); !ok {
		panic("publishCoreAlertEvent called without a deadline")
	}
	f.calls = append(f.calls, fakeAlertCall{eventID, triggerID, alert})
	return nil
}
