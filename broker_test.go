package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestBrokerRetryDelay(t *testing.T) {
	const s = time.Second
	cases := []struct {
		name    string
		attempt int
		r       float64
		want    time.Duration
	}{
		{name: "first attempt, no jitter", attempt: 1, r: 0, want: 1 * s},
		{name: "first attempt, full jitter", attempt: 1, r: 0.999999, want: 2*s - time.Microsecond*2},
		{name: "first attempt, half jitter", attempt: 1, r: 0.5, want: 1500 * time.Millisecond},
		{name: "second attempt", attempt: 2, r: 0, want: 2 * s},
		{name: "third attempt", attempt: 3, r: 0.5, want: 6 * s},
		{name: "fourth attempt", attempt: 4, r: 0, want: 8 * s},
		{name: "fifth attempt reaches the cap window", attempt: 5, r: 0, want: 15 * s},
		{name: "fifth attempt, full jitter stays under cap", attempt: 5, r: 1, want: 30 * s},
		{name: "attempt 1000 is capped", attempt: 1000, r: 0.5, want: 22500 * time.Millisecond},
		{name: "out-of-range jitter is clamped", attempt: 1, r: 7, want: 2 * s},
		{name: "negative jitter is clamped", attempt: 1, r: -1, want: 1 * s},
		{name: "attempt 0 behaves as 1", attempt: 0, r: 0, want: 1 * s},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := brokerRetryDelay(tc.attempt, 0, 0, tc.r)
			if got.Round(time.Millisecond) != tc.want.Round(time.Millisecond) {
				t.Errorf("brokerRetryDelay(%d, r=%v) = %v, want %v", tc.attempt, tc.r, got, tc.want)
			}
		})
	}
	t.Run("custom base and cap", func(t *testing.T) {
		for attempt, want := range map[int]time.Duration{1: 10 * time.Millisecond, 2: 20 * time.Millisecond, 3: 25 * time.Millisecond} {
			if got := brokerRetryDelay(attempt, 20*time.Millisecond, 50*time.Millisecond, 0); got != want {
				t.Errorf("attempt %d: %v, want %v", attempt, got, want)
			}
		}
	})
}

func TestBrokerLogLimiter(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		at             time.Duration
		wantOK         bool
		wantSuppressed int
	}{
		{at: 0, wantOK: true},
		{at: time.Second, wantOK: false},
		{at: 30 * time.Second, wantOK: false},
		{at: 59 * time.Second, wantOK: false},
		{at: 60 * time.Second, wantOK: true, wantSuppressed: 3},
		{at: 61 * time.Second, wantOK: false},
		{at: 10 * time.Minute, wantOK: true, wantSuppressed: 1},
		{at: 20 * time.Minute, wantOK: true, wantSuppressed: 0},
	}
	var l brokerLogLimiter
	for i, st := range steps {
		ok, n := l.admit(t0.Add(st.at), time.Minute)
		if ok != st.wantOK || n != st.wantSuppressed {
			t.Errorf("step %d (+%v): admit = %v, %d; want %v, %d", i, st.at, ok, n, st.wantOK, st.wantSuppressed)
		}
	}
}

func TestAMQPPromptsRejectsBadURL(t *testing.T) {
	b := &amqpPrompts{URL: "amqp://user:hunter2@[::1"}
	err := b.run(t.Context(), func(prompt) {})
	if !errors.Is(err, ErrConfig) || !errors.Is(err, errBrokerURL) {
		t.Fatalf("run with an unparsable URL: %v, want errBrokerURL and ErrConfig", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

// TestAMQPPromptsBrokerDown starts the agent against a port where nothing
// listens: one warn line when the outage starts, quiet retries, and a prompt
// return on cancel.
func TestAMQPPromptsBrokerDown(t *testing.T) {
	rp := startPrompts(t, "amqp://guest:hunter2@"+closedTestAddr(t)+"/", func(b *amqpPrompts) {
		b.retryBase = 20 * time.Millisecond
		b.retryMax = 40 * time.Millisecond
	})
	eventually(t, 10*time.Second, "three failed connection attempts", func() bool {
		return rp.logs.count("broker reconnect failed") >= 3
	})
	rp.stop(t)
	if n := rp.logs.count("broker unavailable"); n != 1 {
		t.Errorf("%d 'broker unavailable' lines, want exactly 1\n%s", n, rp.logs)
	}
	if strings.Contains(rp.logs.String(), "hunter2") || strings.Contains(rp.logs.String(), "guest") {
		t.Errorf("logs leak the credentials:\n%s", rp.logs)
	}
}

// TestAMQPPromptsTopology proves every object is declared with exactly the
// reference's flags (an active redeclaration with the same flags succeeds,
// one with different flags is refused), that a pre-existing mismatching
// exchange only warns while everything after it is still declared, and that
// the consumer still works.
func TestAMQPPromptsTopology(t *testing.T) {
	amqpURL := newTestVhost(t)
	// Another deployment got attune.metadata wrong; the agent must live with it.
	pre := testBrokerChannel(t, amqpURL)
	if err := pre.ExchangeDeclare(exchangeMetadata, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		t.Fatalf("pre-declare mismatching exchange: %v", err)
	}
	rp := startPrompts(t, amqpURL, nil)
	rp.waitReady(t, 1)

	matches := func(what string, declare func(ch *amqp.Channel) error) {
		t.Helper()
		if err := declare(testBrokerChannel(t, amqpURL)); err != nil {
			t.Errorf("%s: redeclaration with the reference's flags refused: %v", what, err)
		}
	}
	refused := func(what string, declare func(ch *amqp.Channel) error) {
		t.Helper()
		var amqpErr *amqp.Error
		if err := declare(testBrokerChannel(t, amqpURL)); !errors.As(err, &amqpErr) || amqpErr.Code != amqp.PreconditionFailed {
			t.Errorf("%s: want PRECONDITION_FAILED, got %v", what, err)
		}
	}
	exchanges := []struct{ name, kind string }{
		{exchangeEvents, amqp.ExchangeTopic}, {exchangeExecutions, amqp.ExchangeTopic},
		{exchangeNotifications, amqp.ExchangeFanout}, {exchangeDLX, amqp.ExchangeDirect},
	}
	for _, x := range exchanges {
		matches("exchange "+x.name, func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(x.name, x.kind, true, false, false, false, nil)
		})
		refused("exchange "+x.name+" as non-durable", func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(x.name, x.kind, false, false, false, false, nil)
		})
		refused("exchange "+x.name+" as auto-delete", func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(x.name, x.kind, true, true, false, false, nil)
		})
	}
	// The agent did not replace the operator's fanout attune.metadata ...
	refused("exchange attune.metadata as topic", func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(exchangeMetadata, amqp.ExchangeTopic, true, false, false, false, nil)
	})
	// ... and said so once, naming it.
	warns := rp.logs.find("broker declaration failed")
	if len(warns) != 1 || warns[0]["object"] != "exchange "+exchangeMetadata {
		t.Errorf("want exactly one declaration warning, for attune.metadata; got %v", warns)
	}
	matches("queue "+queueDLX, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(queueDLX, true, false, false, false, nil)
		return err
	})
	refused("queue "+queueDLX+" with a DLX argument", func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(queueDLX, true, false, false, false, amqp.Table{"x-dead-letter-exchange": "x"})
		return err
	})
	matches("queue "+queueEvents, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(queueEvents, true, false, false, false, amqp.Table{"x-dead-letter-exchange": exchangeDLX})
		return err
	})
	refused("queue "+queueEvents+" without its DLX argument", func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(queueEvents, true, false, false, false, nil)
		return err
	})

	// Bindings, proven by routing: any attune.events key reaches
	// attune.events.queue (bound with #). attune.dlx is a direct exchange, so
	// its # binding is a literal key (as in the reference): a message
	// dead-lettered with routing key "#" reaches attune.dlx.queue, which
	// proves the queue's x-dead-letter-exchange and the DLX binding at once.
	pub := testBrokerChannel(t, amqpURL)
	testPublish(t, pub, exchangeEvents, "execution.something.else", []byte(`probe`))
	if got := testGet(t, pub, queueEvents); string(got.Body) != "probe" {
		t.Fatalf("attune.events.queue did not receive an arbitrary attune.events key: %q", got.Body)
	} else if err := got.Ack(false); err != nil {
		t.Fatal(err)
	}
	testPublish(t, pub, exchangeEvents, "#", []byte(`doomed`))
	got := testGet(t, pub, queueEvents)
	if string(got.Body) != "doomed" {
		t.Fatalf("attune.events.queue: got %q, want the second probe", got.Body)
	}
	if err := got.Nack(false, false); err != nil {
		t.Fatal(err)
	}
	if dead := testGet(t, pub, queueDLX); string(dead.Body) != "doomed" {
		t.Fatalf("rejected message did not dead-letter into attune.dlx.queue: %q", dead.Body)
	}

	// The lifecycle queue and consumer have the reference's shape.
	queues := testBrokerCtlJSON(t, "list_queues", "-p", testVhostName(t, amqpURL), "name", "durable", "auto_delete", "exclusive", "arguments")
	var lifecycle map[string]any
	for _, q := range queues {
		if strings.HasPrefix(q["name"].(string), "amq.gen-") {
			lifecycle = q
		}
	}
	if lifecycle == nil || lifecycle["durable"] != false || lifecycle["auto_delete"] != true || lifecycle["exclusive"] != true {
		t.Errorf("lifecycle queue: got %v, want a server-named non-durable auto-delete exclusive queue (all: %v)", lifecycle, queues)
	}
	consumers := testBrokerCtlJSON(t, "list_consumers", "-p", testVhostName(t, amqpURL), "queue_name", "consumer_tag", "ack_required", "prefetch_count")
	if len(consumers) != 1 || consumers[0]["consumer_tag"] != lifecycleConsumerTag ||
		consumers[0]["ack_required"] != true || consumers[0]["prefetch_count"] != float64(lifecyclePrefetch) {
		t.Errorf("consumers: %v, want one %s with manual acks and prefetch %d", consumers, lifecycleConsumerTag, lifecyclePrefetch)
	}

	// The mismatch did not stop the consumer.
	testPublish(t, pub, exchangeEvents, "rule.enabled", testEnvelopeJSON("RuleEnabled", `{"rule_id":1,"rule_ref":"a.b","trigger_ref":"core.timer"}`))
	if p := rp.rec.wait(t, 1); p[0] != (prompt{MessageType: "RuleEnabled"}) {
		t.Errorf("prompt %+v, want RuleEnabled", p[0])
	}
}

// TestAMQPPromptsLifecycleKeys proves each of the seven routing keys is bound
// and delivered, PackDeleted carries its pack_ref, and other keys are not
// bound: they are published first on the same channel, so had they been
// routed they would have arrived before the seven.
func TestAMQPPromptsLifecycleKeys(t *testing.T) {
	amqpURL := newTestVhost(t)
	rp := startPrompts(t, amqpURL, nil)
	rp.waitReady(t, 1)
	pub := testBrokerChannel(t, amqpURL)
	valid := testEnvelopeJSON("RuleEnabled", `{}`)
	for _, key := range []string{"rule.updated", "event.created", "rule", "rule.enabled.extra", "metadata.action.changed", "pack.test.requested"} {
		testPublish(t, pub, exchangeEvents, key, valid)
	}
	// A lifecycle key on the wrong exchange must not reach the agent either.
	testPublish(t, pub, exchangeExecutions, "rule.enabled", valid)
	want := []prompt{
		{MessageType: "RuleCreated"}, {MessageType: "RuleEnabled"}, {MessageType: "RuleDisabled"},
		{MessageType: "RuleDeleted"}, {MessageType: "PackRegistered"},
		{MessageType: "PackDeleted", PackRef: "slack"}, {MessageType: "TriggerChanged"},
	}
	for i, key := range lifecycleRoutingKeys {
		payload := `{}`
		if want[i].MessageType == "PackDeleted" {
			payload = `{"pack_id":3,"pack_ref":"slack"}`
		}
		testPublish(t, pub, exchangeEvents, key, testEnvelopeJSON(want[i].MessageType, payload))
	}
	got := rp.rec.wait(t, len(want))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("prompts:\n got %v\nwant %v", got, want)
	}
}

// TestAMQPPromptsRejectsInvalid publishes junk of every kind, then a valid
// sentinel: only the sentinel reaches notify, the junk is nacked without
// requeue (never redelivered, the queue ends empty), the consumer survives,
// and the junk costs one warn line, not one per message.
func TestAMQPPromptsRejectsInvalid(t *testing.T) {
	amqpURL := newTestVhost(t)
	rp := startPrompts(t, amqpURL, nil)
	rp.waitReady(t, 1)
	pub := testBrokerChannel(t, amqpURL)
	random := make([]byte, 512)
	rand.Read(random)
	huge := bytes.Repeat([]byte("x"), 10<<20)
	junk := map[string][]byte{
		"random bytes":        random,
		"non-envelope json":   []byte(`{"hello":"world"}`),
		"missing timestamp":   []byte(`{"message_type":"RuleEnabled","payload":{}}`),
		"missing payload":     []byte(`{"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z"}`),
		"unknown type":        testEnvelopeJSON("RuleRenamed", `{}`),
		"pack deleted no ref": testEnvelopeJSON("PackDeleted", `{"pack_id":1}`),
		"ten megabytes":       huge,
		"empty":               {},
	}
	for _, body := range junk {
		testPublish(t, pub, exchangeEvents, "rule.enabled", body)
	}
	testPublish(t, pub, exchangeEvents, "rule.created", testEnvelopeJSON("RuleCreated", `{}`))
	if got := rp.rec.wait(t, 1); got[0].MessageType != "RuleCreated" {
		t.Fatalf("first prompt %+v, want the RuleCreated sentinel", got[0])
	}
	// Were anything requeued, it would be back in the queue or in flight.
	for _, q := range testBrokerCtlJSON(t, "list_queues", "-p", testVhostName(t, amqpURL), "name", "messages", "messages_unacknowledged") {
		if strings.HasPrefix(q["name"].(string), "amq.gen-") && (q["messages"] != float64(0) || q["messages_unacknowledged"] != float64(0)) {
			t.Errorf("lifecycle queue not empty after the junk: %v", q)
		}
	}
	if n := rp.logs.count("invalid broker message dropped"); n != len(junk) {
		t.Errorf("%d junk deliveries seen, want %d (each exactly once, never redelivered)", n, len(junk))
	}
	if n := rp.logs.count("invalid broker messages dropped"); n != 1 {
		t.Errorf("%d warn lines for %d junk messages, want 1", n, len(junk))
	}
	// Still alive.
	testPublish(t, pub, exchangeEvents, "rule.deleted", testEnvelopeJSON("RuleDeleted", `{}`))
	if got := rp.rec.wait(t, 2); got[1].MessageType != "RuleDeleted" || len(got) != 2 {
		t.Fatalf("prompts after junk: %+v", got)
	}
}

// TestAMQPPromptsBurst consumes 10 000 prompts: every one is acked (the queue
// drains) and reaches notify. Coalescing is the caller's business.
func TestAMQPPromptsBurst(t *testing.T) {
	const n = 10000
	amqpURL := newTestVhost(t)
	rp := startPrompts(t, amqpURL, nil)
	rp.waitReady(t, 1)
	pub := testBrokerChannel(t, amqpURL)
	body := testEnvelopeJSON("RuleEnabled", `{"rule_id":1,"rule_ref":"a.b","trigger_ref":"core.timer"}`)
	start := time.Now()
	confirms := make([]*amqp.DeferredConfirmation, 0, n)
	for range n {
		dc, err := pub.PublishWithDeferredConfirm(exchangeEvents, "rule.enabled", false, false, amqp.Publishing{Body: body})
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		confirms = append(confirms, dc)
	}
	for _, dc := range confirms {
		if ok, err := dc.WaitContext(t.Context()); !ok || err != nil {
			t.Fatalf("publish not confirmed: %v", err)
		}
	}
	published := time.Since(start)
	rp.rec.waitTimeout(t, n, 120*time.Second)
	t.Logf("10000 prompts: published+confirmed in %v, all notified after %v (%.0f/s)",
		published.Round(time.Millisecond), time.Since(start), n/time.Since(start).Seconds())
	if rp.logs.count("invalid broker message dropped") != 0 {
		t.Errorf("valid burst produced invalid-message logs")
	}
}

// TestAMQPPromptsReconnect closes the agent's connection from the broker
// side: the run loop reconnects, declares a fresh queue, and a prompt
// published afterwards arrives, with exactly one line at each end of the
// outage. The topology is declared again on the new session, and a mismatch
// that persists across sessions is warned about once, not per session.
func TestAMQPPromptsReconnect(t *testing.T) {
	amqpURL := newTestVhost(t)
	if err := testBrokerChannel(t, amqpURL).ExchangeDeclare(exchangeMetadata, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		t.Fatalf("pre-declare mismatching exchange: %v", err)
	}
	rp := startPrompts(t, amqpURL, nil)
	rp.waitReady(t, 1)
	testBrokerCtl(t, "close_all_connections", "-p", testVhostName(t, amqpURL), "--limit", "100", "test forces a reconnect")
	pub := testBrokerChannel(t, amqpURL) // opened after the close, so it survives
	deadline := time.Now().Add(15 * time.Second)
	for rp.rec.count() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no prompt within 15 s of the broker closing the connection\n%s", rp.logs)
		}
		// The new queue exists only once the agent is back; until then prompts go nowhere.
		testPublish(t, pub, exchangeEvents, "rule.enabled", testEnvelopeJSON("RuleEnabled", `{}`))
		time.Sleep(100 * time.Millisecond)
	}
	down, up := rp.logs.find("broker unavailable"), rp.logs.find("broker available")
	if len(down) != 1 || len(up) != 1 {
		t.Fatalf("want exactly one outage-start and one outage-end line, got %d and %d\n%s", len(down), len(up), rp.logs)
	}
	if n, m := rp.logs.count("broker declaration failed"), rp.logs.count("broker declaration still failing"); n != 1 || m != 1 {
		t.Errorf("persistent mismatch: %d warn and %d debug lines, want 1 and 1 (declared on both sessions, warned once)", n, m)
	}
	if _, ok := up[0]["outage"]; !ok {
		t.Errorf("outage-end line lacks the outage duration: %v", up[0])
	}
	if !strings.Contains(fmt.Sprint(down[0]["err"]), "CONNECTION_FORCED") {
		t.Errorf("outage-start line does not say why: %v", down[0])
	}
	if strings.Contains(rp.logs.String(), "guest@") {
		t.Errorf("logs leak credentials:\n%s", rp.logs)
	}
}

// TestAMQPPromptsCancel: cancelling ctx returns nil promptly and leaves no
// connection behind on the broker.
func TestAMQPPromptsCancel(t *testing.T) {
	amqpURL := newTestVhost(t)
	rp := startPrompts(t, amqpURL, nil)
	rp.waitReady(t, 1)
	vhost := testVhostName(t, amqpURL)
	conns := func() []map[string]any { return testVhostConnections(t, vhost) }
	// The broker lists a connection until it has processed its close; on a
	// loaded machine that lags, so both counts are awaited, not sampled.
	eventually(t, 10*time.Second, "exactly one connection while running", func() bool { return len(conns()) == 1 })
	start := time.Now()
	rp.stop(t)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("run took %v to return after cancel", took)
	}
	eventually(t, 10*time.Second, "no connection left after cancel", func() bool { return len(conns()) == 0 })
}
