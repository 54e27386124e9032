package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Broker object names and consumer settings (CONTRACT §9; the reference's
// defaults in crates/common/src/mq/config.rs and the sensor's
// rule_lifecycle_listener.rs).
const (
	exchangeEvents        = "attune.events"
	exchangeExecutions    = "attune.executions"
	exchangeNotifications = "attune.notifications"
	exchangeMetadata      = "attune.metadata"
	exchangeDLX           = "attune.dlx"
	queueDLX              = "attune.dlx.queue"
	queueEvents           = "attune.events.queue"
	lifecycleConsumerTag  = "sensor.lifecycle.prompts"
	lifecyclePrefetch     = 10
)

// lifecycleRoutingKeys are the attune.events routing keys whose messages make
// the agent reconcile at once instead of at its next periodic pass.
var lifecycleRoutingKeys = []string{
	"rule.created", "rule.enabled", "rule.disabled", "rule.deleted",
	"pack.registered", "pack.deleted", "metadata.trigger.changed",
}

// Reconnect and housekeeping timings.
const (
	brokerRetryBase      = 2 * time.Second  // first wait is 1–2 s (the reference waits 2 s)
	brokerRetryMax       = 30 * time.Second // no wait is longer
	brokerHealthySession = 10 * time.Second // a session this long resets the backoff
	brokerDialTimeout    = 30 * time.Second // TCP+TLS+AMQP handshake, as amqp091-go's default
	brokerHeartbeat      = 10 * time.Second
	brokerInvalidLogGap  = time.Minute     // at most one warn line per minute about junk messages
	brokerCloseTimeout   = 5 * time.Second // cancel, channel close and connection close together, at shutdown
	// packDeletedRetryPause is the wait before a failed PackDeleted is
	// requeued: RabbitMQ redelivers at once, and a cleanup that just failed
	// (a busy database, a directory in use) needs a moment to change.
	packDeletedRetryPause = time.Second
)

// errBrokerURL reports an unusable message-queue URL without echoing it:
// url.Parse errors quote the whole URL, password included.
var errBrokerURL = errors.New("message queue URL is not a valid amqp:// or amqps:// URL")

// amqpPrompts is the agent's RabbitMQ side: it declares Attune's topology,
// consumes rule and pack lifecycle messages, turns each into a prompt, and
// publishes the agent's own messages. It owns its reconnection so that a
// broker outage costs one log line at each end, never the agent.
type amqpPrompts struct {
	URL string
	Log *slog.Logger
	// OnPackDeleted runs for a valid PackDeleted before its ack (the
	// reference's handle_pack_deleted inside the consumer's handler): nil
	// acks, an error nacks with requeue so another attempt, on this agent
	// or another, can finish the cleanup. Nil means no handling.
	OnPackDeleted func(ctx context.Context, p packDeletedPayload) error

	// Reconnect schedule; zero means the production values. Tests shrink them
	// and inject jitter.
	retryBase time.Duration
	retryMax  time.Duration
	jitter    func() float64 // uniform in [0, 1)

	mu   sync.Mutex
	conn *amqp.Connection // the live session's connection, for publish

	// Owned by the run goroutine.
	declWarned map[string]string // declaration → failure already logged at warn
	invalidLog brokerLogLimiter
}

// run consumes lifecycle prompts until ctx is cancelled, reconnecting with
// jittered exponential backoff and no attempt limit. notify is called once per
// valid message, after the ack, from this goroutine; it must not block (the
// caller coalesces). run returns nil on cancellation and an error only when
// the URL can never work.
func (b *amqpPrompts) run(ctx context.Context, notify func(prompt)) error {
	if _, err := amqp.ParseURI(b.URL); err != nil {
		return fmt.Errorf("%w: %w", errBrokerURL, ErrConfig)
	}
	log := b.logger().With("url", redactURL(b.URL))
	var (
		failures    int       // consecutive sessions that ended before being healthy
		outageStart time.Time // zero while the broker is reachable
		connected   bool      // a session has been ready at least once
	)
	for {
		var readyAt time.Time
		err := b.session(ctx, notify, func(queue string) {
			readyAt = time.Now()
			switch {
			case !outageStart.IsZero():
				log.Info("broker available", "queue", queue,
					"outage", time.Since(outageStart).Round(time.Millisecond), "attempts", failures)
				outageStart = time.Time{}
			case !connected:
				log.Info("broker connected", "queue", queue)
			}
			connected = true
		})
		if ctx.Err() != nil {
			return nil
		}
		if !readyAt.IsZero() && time.Since(readyAt) >= brokerHealthySession {
			failures = 0
		}
		failures++
		if outageStart.IsZero() {
			outageStart = time.Now()
			log.Warn("broker unavailable", "err", err)
		} else {
			log.Debug("broker reconnect failed", "attempt", failures, "err", err)
		}
		delay := brokerRetryDelay(failures, b.retryBase, b.retryMax, b.random())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// session runs one connection: dial, declare, consume until something closes.
// onReady is called once the consumer is live. The returned error says why
// the session ended; on ctx cancellation the consumer is cancelled and the
// channel and connection are closed first.
func (b *amqpPrompts) session(ctx context.Context, notify func(prompt), onReady func(queue string)) error {
	conn, err := dialBroker(ctx, b.URL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close() // no-op after a graceful close
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))

	if err := b.declareTopology(conn); err != nil {
		return err
	}
	ch, queue, deliveries, err := openLifecycleConsumer(conn)
	if err != nil {
		return fmt.Errorf("lifecycle consumer: %w", err)
	}
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	b.setConn(conn)
	defer b.setConn(nil)
	onReady(queue)

	for {
		select {
		case <-ctx.Done():
			// Cancel first so the broker stops sending, then close politely.
			// Each step waits for the broker's reply, which a broker that
			// stopped answering (no RST, no FIN) never sends: the whole
			// sequence gets brokerCloseTimeout, then the socket is shut
			// under it, which also releases the steps still waiting.
			deadline := time.Now().Add(brokerCloseTimeout)
			polite := make(chan struct{})
			go func() {
				_ = ch.Cancel(lifecycleConsumerTag, false)
				_ = ch.Close()
				close(polite)
			}()
			t := time.NewTimer(brokerCloseTimeout)
			select {
			case <-polite:
			case <-t.C:
			}
			t.Stop()
			_ = conn.CloseDeadline(deadline)
			return ctx.Err()
		case e := <-connClosed:
			return fmt.Errorf("connection closed: %w", closeReason(e))
		case e := <-chClosed:
			return connectionFirst(connClosed, fmt.Errorf("channel closed: %w", closeReason(e)))
		case d, ok := <-deliveries:
			if !ok {
				return connectionFirst(connClosed, errors.New("consumer cancelled by the broker"))
			}
			if err := b.handleDelivery(ctx, d, notify); err != nil {
				return err
			}
		}
	}
}

// brokerDeclaration is one idempotent topology declaration, named for logs.
type brokerDeclaration struct {
	name    string
	declare func(ch *amqp.Channel) error
}

// brokerTopology lists the durable objects the reference's sensor service
// declares at start (setup_common_infrastructure + setup_sensor_infrastructure):
// exact flags matter, because RabbitMQ refuses a redeclaration whose type,
// durability, auto-delete or arguments differ.
func brokerTopology() []brokerDeclaration {
	exchange := func(name, kind string) brokerDeclaration {
		return brokerDeclaration{name: "exchange " + name, declare: func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(name, kind, true, false, false, false, nil)
		}}
	}
	return []brokerDeclaration{
		exchange(exchangeEvents, amqp.ExchangeTopic),
		exchange(exchangeExecutions, amqp.ExchangeTopic),
		exchange(exchangeNotifications, amqp.ExchangeFanout),
		exchange(exchangeMetadata, amqp.ExchangeTopic),
		exchange(exchangeDLX, amqp.ExchangeDirect),
		{name: "queue " + queueDLX, declare: func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(queueDLX, true, false, false, false, nil)
			return err
		}},
		{name: "binding " + queueDLX + " to " + exchangeDLX, declare: func(ch *amqp.Channel) error {
			return ch.QueueBind(queueDLX, "#", exchangeDLX, false, nil)
		}},
		{name: "queue " + queueEvents, declare: func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(queueEvents, true, false, false, false,
				amqp.Table{"x-dead-letter-exchange": exchangeDLX})
			return err
		}},
		{name: "binding " + queueEvents + " to " + exchangeEvents, declare: func(ch *amqp.Channel) error {
			return ch.QueueBind(queueEvents, "#", exchangeEvents, false, nil)
		}},
	}
}

// declareTopology runs every declaration; a failure only warns (once per
// distinct failure, across reconnects) and the rest still run. RabbitMQ closes
// a channel on a failed declaration, so the next one gets a fresh channel. It
// returns an error only when the connection itself is gone.
func (b *amqpPrompts) declareTopology(conn *amqp.Connection) error {
	if b.declWarned == nil {
		b.declWarned = make(map[string]string)
	}
	var ch *amqp.Channel
	defer func() {
		if ch != nil {
			_ = ch.Close()
		}
	}()
	for _, d := range brokerTopology() {
		if ch == nil {
			c, err := conn.Channel()
			if err != nil {
				return fmt.Errorf("open channel to declare %s: %w", d.name, err)
			}
			ch = c
		}
		err := d.declare(ch)
		if err == nil {
			delete(b.declWarned, d.name)
			continue
		}
		_ = ch.Close()
		ch = nil
		if conn.IsClosed() {
			return fmt.Errorf("declare %s: %w", d.name, err)
		}
		if b.declWarned[d.name] == err.Error() {
			b.logger().Debug("broker declaration still failing", "object", d.name, "err", err)
			continue
		}
		b.declWarned[d.name] = err.Error()
		b.logger().Warn("broker declaration failed", "object", d.name, "err", err)
	}
	return nil
}

// connectionFirst prefers the connection's close reason: when a connection
// dies, amqp091-go reports it to the connection's listeners before it closes
// the channels and deliveries, and "CONNECTION_FORCED" says more in the
// outage log than "consumer cancelled".
func connectionFirst(connClosed <-chan *amqp.Error, fallback error) error {
	select {
	case e, ok := <-connClosed:
		if ok && e != nil {
			return fmt.Errorf("connection closed: %w", e)
		}
	default:
	}
	return fallback
}

// closeReason turns a close notification (nil for a clean close) into an error.
func closeReason(e *amqp.Error) error {
	if e == nil {
		return amqp.ErrClosed
	}
	return e
}

// handleDelivery acks a valid prompt and then notifies; a body that is not a
// valid envelope is nacked without requeue, because redelivering it would
// only fail again. A PackDeleted whose handling fails is nacked with requeue
// after packDeletedRetryPause, so a persistent failure costs one attempt per
// pause rather than a redelivery loop. An ack or nack failure means the
// channel is gone.
func (b *amqpPrompts) handleDelivery(ctx context.Context, d amqp.Delivery, notify func(prompt)) error {
	e, err := decodeEnvelope(d.Body)
	var p prompt
	if err == nil {
		p, err = promptFromEnvelope(e)
	}
	if err != nil {
		if nackErr := d.Nack(false, false); nackErr != nil {
			return fmt.Errorf("nack invalid message: %w", nackErr)
		}
		log := b.logger()
		log.Debug("invalid broker message dropped", "routing_key", d.RoutingKey, "bytes", len(d.Body), "err", err)
		if ok, suppressed := b.invalidLog.admit(time.Now(), brokerInvalidLogGap); ok {
			log.Warn("invalid broker messages dropped", "routing_key", d.RoutingKey, "err", err, "suppressed", suppressed)
		}
		return nil
	}
	if p.MessageType == msgTypePackDeleted && b.OnPackDeleted != nil {
		pd, _ := e.packDeleted() // valid: promptFromEnvelope checked it
		if herr := b.OnPackDeleted(ctx, pd); herr != nil {
			b.logger().Warn("PackDeleted not finished; requeued", "pack", pd.PackRef, "err", herr, "redelivered", d.Redelivered)
			t := time.NewTimer(packDeletedRetryPause)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			if err := d.Nack(false, true); err != nil {
				return fmt.Errorf("nack PackDeleted for requeue: %w", err)
			}
			return nil
		}
	}
	if err := d.Ack(false); err != nil {
		return fmt.Errorf("ack message: %w", err)
	}
	notify(p)
	return nil
}

// openLifecycleConsumer declares the server-named, exclusive, auto-delete,
// non-durable queue, binds it to attune.events with the lifecycle keys and
// starts an exclusive manual-ack consumer with prefetch 10, as the reference's
// create_ephemeral_topic_consumer does. Each session gets a fresh queue.
func openLifecycleConsumer(conn *amqp.Connection) (*amqp.Channel, string, <-chan amqp.Delivery, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, "", nil, fmt.Errorf("open channel: %w", err)
	}
	fail := func(err error) (*amqp.Channel, string, <-chan amqp.Delivery, error) {
		_ = ch.Close()
		return nil, "", nil, err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fail(fmt.Errorf("declare queue: %w", err))
	}
	for _, key := range lifecycleRoutingKeys {
		if err := ch.QueueBind(q.Name, key, exchangeEvents, false, nil); err != nil {
			return fail(fmt.Errorf("bind %s to %s: %w", key, exchangeEvents, err))
		}
	}
	if err := ch.Qos(lifecyclePrefetch, 0, false); err != nil {
		return fail(fmt.Errorf("set prefetch: %w", err))
	}
	deliveries, err := ch.Consume(q.Name, lifecycleConsumerTag, false, true, false, false, nil)
	if err != nil {
		return fail(fmt.Errorf("consume %s: %w", q.Name, err))
	}
	return ch, q.Name, deliveries, nil
}

// dialBroker connects with ctx bounding the TCP dial and the handshake, so a
// cancelled agent never waits out a 30 s connect timeout.
func dialBroker(ctx context.Context, rawURL string) (*amqp.Connection, error) {
	if _, err := amqp.ParseURI(rawURL); err != nil {
		return nil, errBrokerURL
	}
	var (
		dialer net.Dialer
		stop   = func() bool { return false }
	)
	cfg := amqp.Config{
		Heartbeat:  brokerHeartbeat,
		Locale:     "en_US",
		Properties: amqp.Table{"connection_name": "attune-sensor-agent"},
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if err := c.SetDeadline(time.Now().Add(brokerDialTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			stop = context.AfterFunc(ctx, func() { c.Close() })
			return c, nil
		},
	}
	conn, err := amqp.DialConfig(rawURL, cfg)
	stop()
	return conn, err
}

func (b *amqpPrompts) setConn(c *amqp.Connection) {
	b.mu.Lock()
	b.conn = c
	b.mu.Unlock()
}

func (b *amqpPrompts) liveConn() *amqp.Connection {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil || b.conn.IsClosed() {
		return nil
	}
	return b.conn
}

func (b *amqpPrompts) logger() *slog.Logger {
	if b.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Log
}

func (b *amqpPrompts) random() float64 {
	if b.jitter != nil {
		return b.jitter()
	}
	return rand.Float64()
}

// brokerRetryDelay is the wait before reconnect attempt n (1-based): the
// window doubles from base (default 2 s) up to max (default 30 s), and the
// wait is drawn from its upper half, so attempt 1 waits 1–2 s and no wait
// exceeds max while jitter still spreads reconnecting agents at the cap.
func brokerRetryDelay(attempt int, base, maxDelay time.Duration, r float64) time.Duration {
	if base <= 0 {
		base = brokerRetryBase
	}
	if maxDelay <= 0 {
		maxDelay = brokerRetryMax
	}
	window := base
	for i := 1; i < attempt && window < maxDelay; i++ {
		window *= 2
	}
	window = min(window, maxDelay)
	r = min(max(r, 0), 1)
	return window/2 + time.Duration(r*float64(window/2))
}

// brokerLogLimiter lets one warn line through per gap and counts the rest, so
// a flood of junk messages cannot flood the log.
type brokerLogLimiter struct {
	last       time.Time
	suppressed int
}

// admit reports whether a warn line may be logged now and how many were
// suppressed since the last one.
func (l *brokerLogLimiter) admit(now time.Time, gap time.Duration) (bool, int) {
	if !l.last.IsZero() && now.Sub(l.last) < gap {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
