package main

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestShouldRaiseSensorAlert(t *testing.T) {
	cases := []struct {
		name                           string
		activeRules, failures, alerted int
		want                           bool
	}{
		{name: "first failure", activeRules: 1, failures: 1, want: false},
		{name: "second failure", activeRules: 1, failures: 2, want: false},
		{name: "third failure", activeRules: 1, failures: 3, want: true},
		{name: "third failure already alerted", activeRules: 1, failures: 3, alerted: 3, want: false},
		{name: "fourth failure after alert at third", activeRules: 2, failures: 4, alerted: 3, want: true},
		{name: "no active rules", activeRules: 0, failures: 5, want: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := shouldRaiseSensorAlert(tc.activeRules, tc.failures, tc.alerted); got != tc.want {
				t.Errorf("shouldRaiseSensorAlert(%d, %d, %d) = %v, want %v", tc.activeRules, tc.failures, tc.alerted, got, tc.want)
			}
		})
	}
}

// TestSensorFailureAlert pins the alert's wire form to the reference's
// SystemAlert: fixed fields, summary wording, details keys, nulls for absent
// values, correlation id.
func TestSensorFailureAlert(t *testing.T) {
	exit := 3
	next := time.Date(2025, 5, 1, 12, 0, 20, 0, time.UTC)
	alert := sensorFailureAlert(sensorFailure{
		SensorID: 12, SensorRef: "core.timer_sensor", WorkerID: 7, ProcessStatus: "backoff",
		ConsecutiveFailures: 3, LastExitCode: &exit, Backoff: 20 * time.Second, NextRestartAt: &next,
		ActiveRuleCount: 2, ObservedAt: time.Date(2025, 5, 1, 14, 0, 0, 0, time.FixedZone("x", 7200)),
	})
	got, err := json.Marshal(alert)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"severity":"error","category":"sensor_process_health","failure_type":"sensor_process_repeated_failure",` +
		`"component_type":"sensor","component_id":12,"component_ref":"core.timer_sensor","worker_role":"sensor",` +
		`"observed_at":"2025-05-01T12:00:00Z","summary":"Sensor 'core.timer_sensor' failed 3 consecutive time(s); restarting after 20s backoff",` +
		`"details":{"active_rule_count":2,"backoff_delay_seconds":20,"consecutive_failures":3,"last_exit_code":3,"last_signal":null,` +
		`"next_restart_at":"2025-05-01T12:00:20Z","process_status":"backoff","sensor_id":12,"sensor_ref":"core.timer_sensor",` +
		`"stderr_excerpt":null,"worker_id":7,"worker_name":null},` +
		`"correlation_id":"sensor:12:worker:7:repeated_failure"}`
	if string(got) != want {
		t.Errorf("alert JSON:\n got %s\nwant %s", got, want)
	}
}

// TestPublishCoreAlertEvent publishes the EventCreated announcement on the
// live session's connection and, after the session stops, on a connection of
// its own; both arrive persistent, as JSON, with the envelope's ids. A
// publish to a missing exchange is reported, not lost silently.
func TestPublishCoreAlertEvent(t *testing.T) {
	amqpURL := newTestVhost(t)
	rp := startPrompts(t, amqpURL, nil)
	rp.waitReady(t, 1)
	ch := testBrokerChannel(t, amqpURL)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, coreAlertRoutingKey, exchangeEvents, false, nil); err != nil {
		t.Fatal(err)
	}
	alert := sensorFailureAlert(sensorFailure{SensorID: 1, SensorRef: "p.s", WorkerID: 2, ConsecutiveFailures: 3, ObservedAt: time.Now()})

	check := func(phase string, eventID int64) {
		t.Helper()
		d := testGet(t, ch, q.Name)
		_ = d.Ack(false)
		if d.DeliveryMode != amqp.Persistent || d.ContentType != "application/json" || d.RoutingKey != coreAlertRoutingKey {
			t.Errorf("%s: properties mode=%d type=%q key=%q", phase, d.DeliveryMode, d.ContentType, d.RoutingKey)
		}
		env, err := decodeEnvelope(d.Body)
		if err != nil {
			t.Fatalf("%s: body is not an envelope: %v\n%s", phase, err, d.Body)
		}
		if env.MessageType != "EventCreated" || env.Headers.SourceService != "system-alert" ||
			d.MessageId != env.MessageID || d.CorrelationId != env.CorrelationID || d.Timestamp.IsZero() {
			t.Errorf("%s: envelope %+v with message_id property %q", phase, env, d.MessageId)
		}
		var p struct {
			EventID    int64      `json:"event_id"`
			TriggerID  int64      `json:"trigger_id"`
			TriggerRef string     `json:"trigger_ref"`
			SensorID   *int64     `json:"sensor_id"`
			SensorRef  string     `json:"sensor_ref"`
			Payload    coreAlert  `json:"payload"`
			Config     *time.Time `json:"config"`
		}
		if err := json.Unmarshal(env.Payload, &p); err != nil {
			t.Fatalf("%s: payload: %v", phase, err)
		}
		if p.EventID != eventID || p.TriggerID != 99 || p.TriggerRef != "core.alert" || p.SensorID != nil ||
			p.SensorRef != "attune.system" || p.Payload.FailureType != "sensor_process_repeated_failure" || p.Config != nil {
			t.Errorf("%s: EventCreated payload %+v", phase, p)
		}
	}

	if rp.b.liveConn() == nil {
		t.Fatalf("no live session connection to publish on")
	}
	if err := rp.b.publishCoreAlertEvent(t.Context(), 41, 99, alert); err != nil {
		t.Fatalf("publish on the live session: %v", err)
	}
	check("live session", 41)
	rp.stop(t)
	if rp.b.liveConn() != nil {
		t.Fatalf("live connection still recorded after run returned")
	}
	if err := rp.b.publishCoreAlertEvent(t.Context(), 42, 99, alert); err != nil {
		t.Fatalf("publish without a session: %v", err)
	}
	check("own connection", 42)

	err = rp.b.publish(t.Context(), "attune.no-such-exchange", "x", map[string]int{"a": 1})
	if err == nil {
		t.Fatalf("publish to a missing exchange succeeded")
	}
	var amqpErr *amqp.Error
	if !errors.Is(err, errPublishNotConfirmed) && !(errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound) {
		t.Errorf("publish to a missing exchange: %v, want not-confirmed or NOT_FOUND", err)
	}
}
