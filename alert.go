package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The reference's repeated-failure alert (crates/sensor/src/sensor_manager.rs
// maybe_emit_sensor_failure_alert and crates/common/src/system_alert.rs): after
// the third consecutive failure of a sensor that still has active rules, it
// inserts an `event` row for trigger core.alert (source_ref "attune.system")
// and publishes an EventCreated envelope for that row on attune.events with
// routing key event.created, source_service "system-alert", publisher confirms
// and a 30 s publish timeout. No alert is raised when core.alert is not
// registered, and each failure count is alerted at most once.
const (
	coreAlertTriggerRef      = "core.alert"
	coreAlertSourceRef       = "attune.system"
	coreAlertSourceService   = "system-alert"
	coreAlertRoutingKey      = "event.created"
	sensorAlertThreshold     = 3
	brokerPublishTimeout     = 30 * time.Second
	brokerPublishContentType = "application/json"
)

// errPublishNotConfirmed means the broker nacked the message or the channel
// closed before confirming it (for example: the exchange does not exist).
var errPublishNotConfirmed = errors.New("broker did not confirm the message")

// coreAlert is the reference's SystemAlert, the payload of a core.alert
// event. Absent optional fields are serialized as null, as serde does.
type coreAlert struct {
	Severity      string    `json:"severity"`
	Category      string    `json:"category"`
	FailureType   string    `json:"failure_type"`
	ComponentType string    `json:"component_type"`
	ComponentID   *int64    `json:"component_id"`
	ComponentRef  *string   `json:"component_ref"`
	WorkerRole    *string   `json:"worker_role"`
	ObservedAt    time.Time `json:"observed_at"`
	Summary       string    `json:"summary"`
	Details       any       `json:"details"`
	CorrelationID *string   `json:"correlation_id"`
}

// sensorFailure is what the supervisor knows about a sensor that just failed
// again; it becomes the alert's details.
type sensorFailure struct {
	SensorID            int64
	SensorRef           string
	WorkerID            int64
	WorkerName          *string
	ProcessStatus       string // sensor_process.status, e.g. "backoff"
	ConsecutiveFailures int
	LastExitCode        *int
	LastSignal          *int
	Backoff             time.Duration
	NextRestartAt       *time.Time
	ActiveRuleCount     int
	StderrExcerpt       *string
	ObservedAt          time.Time
}

// shouldRaiseSensorAlert is the reference's gate: the sensor still has active
// rules, has failed at least three times in a row, and this failure count has
// not been alerted yet (sensor_process.last_alerted_failure_count).
func shouldRaiseSensorAlert(activeRules, consecutiveFailures, lastAlertedFailures int) bool {
	return activeRules > 0 && consecutiveFailures >= sensorAlertThreshold &&
		lastAlertedFailures < consecutiveFailures
}

// sensorFailureAlert builds the alert with the reference's fixed fields,
// summary wording, details keys and correlation id.
func sensorFailureAlert(f sensorFailure) coreAlert {
	ref := f.SensorRef
	role := "sensor"
	corr := fmt.Sprintf("sensor:%d:worker:%d:repeated_failure", f.SensorID, f.WorkerID)
	id := f.SensorID
	secs := int64(f.Backoff / time.Second)
	return coreAlert{
		Severity:      "error",
		Category:      "sensor_process_health",
		FailureType:   "sensor_process_repeated_failure",
		ComponentType: "sensor",
		ComponentID:   &id,
		ComponentRef:  &ref,
		WorkerRole:    &role,
		ObservedAt:    f.ObservedAt.UTC(),
		Summary: fmt.Sprintf("Sensor '%s' failed %d consecutive time(s); restarting after %ds backoff",
			f.SensorRef, f.ConsecutiveFailures, secs),
		Details: map[string]any{
			"sensor_id":             f.SensorID,
			"sensor_ref":            f.SensorRef,
			"worker_id":             f.WorkerID,
			"worker_name":           f.WorkerName,
			"process_status":        f.ProcessStatus,
			"consecutive_failures":  f.ConsecutiveFailures,
			"last_exit_code":        f.LastExitCode,
			"last_signal":           f.LastSignal,
			"backoff_delay_seconds": secs,
			"next_restart_at":       f.NextRestartAt,
			"active_rule_count":     f.ActiveRuleCount,
			"stderr_excerpt":        f.StderrExcerpt,
		},
		CorrelationID: &corr,
	}
}

// eventCreatedPayload is the reference's EventCreatedPayload.
type eventCreatedPayload struct {
	EventID    int64   `json:"event_id"`
	TriggerID  *int64  `json:"trigger_id"`
	TriggerRef string  `json:"trigger_ref"`
	SensorID   *int64  `json:"sensor_id"`
	SensorRef  *string `json:"sensor_ref"`
	Payload    any     `json:"payload"`
	Config     any     `json:"config"`
}

// publishCoreAlertEvent announces a core.alert event row the caller has
// already inserted (eventID, with the core.alert trigger's id), so the
// executor evaluates rules on it as for any other event.
func (b *amqpPrompts) publishCoreAlertEvent(ctx context.Context, eventID, triggerID int64, alert coreAlert) error {
	source := coreAlertSourceRef
	env, err := newEnvelope(msgTypeEventCreated, coreAlertSourceService, eventCreatedPayload{
		EventID:    eventID,
		TriggerID:  &triggerID,
		TriggerRef: coreAlertTriggerRef,
		SensorRef:  &source,
		Payload:    alert,
	})
	if err != nil {
		return err
	}
	return b.publish(ctx, exchangeEvents, coreAlertRoutingKey, env)
}

// publish sends msg as persistent JSON and waits for the broker's confirm.
// It uses the consumer's live connection when there is one and otherwise
// dials its own, as the reference connects afresh for each alert. An envelope
// also sets the message_id, correlation_id and timestamp properties.
func (b *amqpPrompts) publish(ctx context.Context, exchange, routingKey string, msg any) error {
	pub, err := brokerPublishing(msg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, brokerPublishTimeout)
	defer cancel()
	if conn := b.liveConn(); conn != nil {
		err := publishConfirmed(ctx, conn, exchange, routingKey, pub)
		if err == nil || !conn.IsClosed() {
			return err
		}
		// The session died under us; fall through to a connection of our own.
	}
	conn, err := dialBroker(ctx, b.URL)
	if err != nil {
		return fmt.Errorf("publish to %s: connect: %w", exchange, err)
	}
	defer conn.Close()
	return publishConfirmed(ctx, conn, exchange, routingKey, pub)
}

// publishConfirmed publishes on a channel of its own in confirm mode, so a
// failure (which closes the channel) never touches the consumer's channel.
func publishConfirmed(ctx context.Context, conn *amqp.Connection, exchange, routingKey string, pub amqp.Publishing) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("publish to %s: open channel: %w", exchange, err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("publish to %s: enable confirms: %w", exchange, err)
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, routingKey, false, false, pub)
	if err != nil {
		return fmt.Errorf("publish to %s: %w", exchange, err)
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("publish to %s: wait for confirm: %w", exchange, err)
	}
	if !acked {
		return fmt.Errorf("publish to %s with key %s: %w", exchange, routingKey, errPublishNotConfirmed)
	}
	return nil
}

// brokerPublishing encodes msg with the reference's properties: persistent,
// application/json, and for an envelope its ids and whole-second timestamp.
func brokerPublishing(msg any) (amqp.Publishing, error) {
	pub := amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: brokerPublishContentType}
	var err error
	switch m := msg.(type) {
	case envelope:
		pub.MessageId, pub.CorrelationId = m.MessageID, m.CorrelationID
		pub.Timestamp = m.Timestamp.Truncate(time.Second)
		pub.Body, err = m.encode()
	default:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		err = enc.Encode(m)
		pub.Body = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	}
	if err != nil {
		return amqp.Publishing{}, fmt.Errorf("encode message: %w", err)
	}
	return pub, nil
}
