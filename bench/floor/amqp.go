//go:build !floor_no_amqp

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func init() { floorExercises = append(floorExercises, floorExercise{"amqp", exerciseFloorAMQP}) }

// exerciseFloorAMQP uses the broker client as the agent does: dial with
// properties, close notification, topology, QoS, consume, confirmed publish.
func exerciseFloorAMQP(ctx context.Context) error {
	conn, err := amqp.DialConfig(os.Getenv("FLOOR_AMQP_URL"), amqp.Config{Heartbeat: 10 * time.Second, Properties: amqp.Table{"connection_name": "floor"}})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	if err := ch.ExchangeDeclare("floor", amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("exchange: %w", err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, amqp.Table{"x-queue-type": "classic"})
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := ch.QueueBind(q.Name, "rule.#", "floor", false, nil); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := ch.Qos(10, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	deliveries, err := ch.ConsumeWithContext(ctx, q.Name, "floor", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "floor", "rule.created", false, false,
		amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: []byte(`{}`)})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if _, err := conf.WaitContext(ctx); err != nil {
		return fmt.Errorf("confirm wait: %w", err)
	}
	select {
	case d := <-deliveries:
		var body map[string]any
		_ = json.Unmarshal(d.Body, &body)
		return d.Ack(false)
	case e := <-closed:
		return fmt.Errorf("closed: %w", e)
	}
}
