// Command floor is the size baseline of benchmark item 1: a throw-away
// program that links the same modules as the agent (the pgx pool, amqp091,
// the net/http client, yaml and slog) and does nothing. Built with the
// agent's own flags, its size is the floor no agent with those dependencies
// can go under, so "agent size / floor size" is what the agent's own code and
// its use of the standard library cost.
//
// A program that only imported the modules would be no floor: the linker
// drops every function nothing calls, and it would come out a fraction of
// the size any real client of those modules has. So each module's entry
// points that the agent uses are called, on a path the linker cannot prove
// dead (it depends on an environment variable) but that never runs: without
// FLOOR_EXERCISE=1 the program exits at once.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.yaml.in/yaml/v3"
)

func main() {
	if os.Getenv("FLOOR_EXERCISE") != "1" {
		return
	}
	if err := exerciseFloorModules(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// exerciseFloorModules calls what the agent calls of each module: it exists
// so that the linker keeps that code, not to be run.
func exerciseFloorModules(ctx context.Context) error {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.New(slog.NewTextHandler(os.Stderr, nil)).Info("floor", "step", "start")

	var cfg map[string]any
	var node yaml.Node
	raw := []byte(os.Getenv("FLOOR_YAML"))
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	if err := yaml.Unmarshal(raw, &node); err != nil {
		return fmt.Errorf("yaml node: %w", err)
	}

	pc, err := pgxpool.ParseConfig(os.Getenv("FLOOR_DATABASE_URL"))
	if err != nil {
		return fmt.Errorf("pgx config: %w", err)
	}
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SELECT set_config('search_path', $1, false)", "attune, public")
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("pgx pool: %w", err)
	}
	defer pool.Close()
	var id int64
	err = pool.QueryRow(ctx, "SELECT id FROM worker WHERE name = $1", "floor").Scan(&id)
	var pgErr *pgconn.PgError
	if err != nil && !errors.Is(err, pgx.ErrNoRows) && !errors.As(err, &pgErr) {
		return fmt.Errorf("pgx query: %w", err)
	}
	rows, err := pool.Query(ctx, "SELECT id, ref, config FROM sensor WHERE id = ANY($1)", []int64{id})
	if err != nil {
		return fmt.Errorf("pgx rows: %w", err)
	}
	for rows.Next() {
		var ref string
		var conf map[string]any
		if err := rows.Scan(&id, &ref, &conf); err != nil {
			return fmt.Errorf("pgx scan: %w", err)
		}
	}
	rows.Close()
	if _, err := pool.Exec(ctx, "UPDATE worker SET last_heartbeat = now() WHERE id = $1", id); err != nil {
		return fmt.Errorf("pgx exec: %w", err)
	}

	conn, err := amqp.DialConfig(os.Getenv("FLOOR_AMQP_URL"), amqp.Config{Heartbeat: 10 * time.Second, Properties: amqp.Table{"connection_name": "floor"}})
	if err != nil {
		return fmt.Errorf("amqp dial: %w", err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp channel: %w", err)
	}
	if err := ch.ExchangeDeclare("floor", amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("amqp exchange: %w", err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, amqp.Table{"x-queue-type": "classic"})
	if err != nil {
		return fmt.Errorf("amqp queue: %w", err)
	}
	if err := ch.QueueBind(q.Name, "rule.#", "floor", false, nil); err != nil {
		return fmt.Errorf("amqp bind: %w", err)
	}
	if err := ch.Qos(10, 0, false); err != nil {
		return fmt.Errorf("amqp qos: %w", err)
	}
	deliveries, err := ch.ConsumeWithContext(ctx, q.Name, "floor", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("amqp consume: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("amqp confirm: %w", err)
	}
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "floor", "rule.created", false, false,
		amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: []byte(`{}`)})
	if err != nil {
		return fmt.Errorf("amqp publish: %w", err)
	}
	if _, err := conf.WaitContext(ctx); err != nil {
		return fmt.Errorf("amqp confirm wait: %w", err)
	}
	select {
	case d := <-deliveries:
		var body map[string]any
		_ = json.Unmarshal(d.Body, &body)
		_ = d.Ack(false)
	case e := <-closed:
		return fmt.Errorf("amqp closed: %w", e)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, os.Getenv("FLOOR_API_URL"), nil)
	if err != nil {
		return fmt.Errorf("http request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+os.Getenv("FLOOR_TOKEN"))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	defer resp.Body.Close()
	var token map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&token); err != nil {
		return fmt.Errorf("http decode: %w", err)
	}
	log.Info("floor done", "worker_id", id, "status", resp.StatusCode)
	return nil
}
