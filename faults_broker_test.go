package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestAgentSurvivesBrokerOutage cuts RabbitMQ (through a proxy) under a
// running agent and keeps it away for several reconnect attempts: the agent
// logs one line at each end, retries with growing gaps and no cap, keeps its
// sensors running, still applies database changes through the 2 s loop
// meanwhile, and after the broker is back has a fresh lifecycle queue with
// every binding and serves prompts again.
func TestAgentSurvivesBrokerOutage(t *testing.T) {
	t.Parallel()
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	proxy, viaProxy := newFaultProxyFor(t, s.amqpURL)
	s.nativeSensor("sleeper", faultSleeperScript)
	_, lateRule := s.sensorWithRule("late", "sleeper.sh", "Native", "", false)
	a := s.startVia(s.dbURL, viaProxy, "ATTUNE__LOG__LEVEL=debug")
	a.waitLog("broker connected", 30*time.Second)
	pid := s.waitSensorRunning(a, "testpack.sleeper", 30*time.Second)
	vhost := testVhostName(t, s.amqpURL)

	mark := markAgentLog(a)
	cutAt := time.Now()
	proxy.cut()
	mark.waitSince(t, 10*time.Second, "broker unavailable")

	// A change announced by no prompt at all: the periodic pass applies it.
	s.db.exec(`UPDATE rule SET enabled = true WHERE id = $1`, lateRule)
	s.waitSensorRunning(a, "testpack.late", 10*time.Second)

	// Hold the outage over two failed attempts, then let the broker back.
	if !waitUntil(30*time.Second, func() bool { return len(proxy.acceptedSince(cutAt)) >= 2 }) {
		t.Fatalf("only %d reconnect attempts within 30 s of the cut", len(proxy.acceptedSince(cutAt)))
	}
	s.requireSameLeaders(t, map[string]int{"testpack.sleeper": pid}, "during the broker outage")
	restored := time.Now()
	proxy.restore()
	mark.waitSince(t, 40*time.Second, "broker available")
	t.Logf("broker session ready %v after the broker came back", time.Since(restored).Round(time.Millisecond))
	attempts := proxy.acceptedSince(cutAt) // the failed ones and the one that worked
	gaps := make([]time.Duration, 0, len(attempts))
	prev := cutAt
	for _, at := range attempts {
		gaps = append(gaps, at.Sub(prev).Round(10*time.Millisecond))
		prev = at
	}
	t.Logf("connection attempts after the cut, gap before each: %v", gaps)
	for i, g := range gaps {
		if g < 900*time.Millisecond {
			t.Errorf("attempt %d came %v after the previous one: no backoff", i+1, g)
		}
	}
	if len(gaps) < 3 || gaps[len(gaps)-1] <= gaps[0] {
		t.Errorf("backoff does not grow: gaps %v", gaps)
	}
	log := mark.since()
	if n := faultLogCount(log, "broker unavailable"); n != 1 {
		t.Errorf("%d 'broker unavailable' lines for one outage, want 1", n)
	}
	if n := faultLogCount(log, "broker available"); n != 1 {
		t.Errorf("%d 'broker available' lines for one outage, want 1", n)
	}
	if n := faultLogCount(log, "reconcile pass", "cause", "interval"); n < 2 {
		t.Errorf("only %d periodic passes during the outage", n)
	}
	s.requireSameLeaders(t, map[string]int{"testpack.sleeper": pid}, "after the broker outage")

	// The topology of the new session: one lifecycle queue, all its keys.
	var lifecycle []string
	for _, q := range testBrokerCtlJSON(t, "list_queues", "-p", vhost, "name", "exclusive") {
		if name, _ := q["name"].(string); strings.HasPrefix(name, "amq.gen-") {
			lifecycle = append(lifecycle, name)
		}
	}
	if len(lifecycle) != 1 {
		t.Fatalf("lifecycle queues after the outage: %v, want exactly one", lifecycle)
	}
	var keys []string
	for _, b := range testBrokerCtlJSON(t, "list_bindings", "-p", vhost, "source_name", "destination_name", "routing_key") {
		if b["source_name"] == exchangeEvents && b["destination_name"] == lifecycle[0] {
			keys = append(keys, fmt.Sprint(b["routing_key"]))
		}
	}
	if len(keys) != len(lifecycleRoutingKeys) {
		t.Errorf("bindings of %s after the outage: %v, want %v", lifecycle[0], keys, lifecycleRoutingKeys)
	}

	// A prompt after the outage makes a pass at once.
	s.nativeSensor("after", faultSleeperScript)
	promptMark := markAgentLog(a)
	s.publish("rule.created", "RuleCreated", map[string]any{"rule_id": 1, "rule_ref": "testpack.after_rule",
		"trigger_ref": "testpack.after_trigger", "action_ref": "core.noop", "enabled": true})
	promptMark.waitSince(t, 10*time.Second, "reconcile pass", "cause", "prompt")
	s.waitSensorRunning(a, "testpack.after", 10*time.Second)
	if code := a.stop(syscall.SIGTERM, 40*time.Second); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
}

// TestAgentBrokenBrokerInput publishes junk to the lifecycle keys, a 10 MB
// valid envelope, and a burst of 10 000 valid prompts to a running agent. A
// vhost policy dead-letters what the agent rejects into a test queue, so
// the test sees ack and nack apart: every junk message is nacked without
// requeue (and so dead-lettered), every valid one acked; the queue drains;
// one warn line covers all the junk; the burst costs a few reconcile passes,
// not 10 000; and the agent and its sensor carry on.
func TestAgentBrokenBrokerInput(t *testing.T) {
	t.Parallel()
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	vhost := testVhostName(t, s.amqpURL)
	conn, ch := faultBrokerChannel(t, s.amqpURL)
	defer conn.Close()
	if err := ch.ExchangeDeclare("faults.dlx", amqp.ExchangeFanout, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("faults.dead", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("faults.dead", "", "faults.dlx", false, nil); err != nil {
		t.Fatal(err)
	}
	testBrokerCtl(t, "set_policy", "-p", vhost, "--apply-to", "queues", "faults-dlx", `^amq\.gen-`,
		`{"dead-letter-exchange":"faults.dlx"}`)

	s.nativeSensor("sleeper", faultSleeperScript)
	a := s.start("ATTUNE__LOG__LEVEL=debug")
	a.waitLog("broker connected", 30*time.Second)
	pid := s.waitSensorRunning(a, "testpack.sleeper", 30*time.Second)
	mark := markAgentLog(a)

	random := make([]byte, 4096)
	rand.Read(random)
	bigJunk := make([]byte, 10<<20)
	rand.Read(bigJunk)
	envelope := func(messageType string, drop string, payload any) []byte {
		m := map[string]any{"message_id": "6f1c1f0e-8a53-4c52-9c55-0d8f6f2b1a01", "message_type": messageType,
			"timestamp": time.Now().UTC().Format(time.RFC3339), "payload": payload}
		delete(m, drop)
		b, _ := json.Marshal(m)
		return b
	}
	rulePayload := map[string]any{"rule_id": 1, "rule_ref": "x.y", "trigger_ref": "x.t"}
	junk := map[string][]byte{
		"random bytes":         random,
		"JSON object":          []byte(`{"foo": 1}`),
		"JSON array":           []byte(`[1, 2, 3]`),
		"JSON string":          []byte(`"RuleCreated"`),
		"JSON null":            []byte(`null`),
		"missing timestamp":    envelope("RuleEnabled", "timestamp", rulePayload),
		"missing payload":      envelope("RuleEnabled", "payload", nil),
		"unknown message_type": envelope("RuleExploded", "", rulePayload),
		"10 MB of junk":        bigJunk,
		// Valid, but over the agent's 1 MiB envelope cap (maxEnvelopeBytes).
		"10 MB valid envelope": envelope("RuleCreated", "", map[string]any{"rule_id": 2, "rule_ref": "x.big",
			"trigger_ref": "x.t", "action_ref": "core.noop", "enabled": true,
			"trigger_params": map[string]any{"blob": strings.Repeat("a", 10<<20)}}),
	}
	publish := func(key string, body []byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := ch.PublishWithContext(ctx, exchangeEvents, key, false, false,
			amqp.Publishing{ContentType: "application/json", Body: body}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	for _, body := range junk {
		publish("rule.created", body)
	}
	// Valid and just under the cap: acked like any prompt.
	publish("rule.created", envelope("RuleCreated", "", map[string]any{"rule_id": 3, "rule_ref": "x.near",
		"trigger_ref": "x.t", "action_ref": "core.noop", "enabled": true,
		"trigger_params": map[string]any{"blob": strings.Repeat("a", maxEnvelopeBytes-4096)}}))
	const burst = 10000
	started := time.Now()
	valid := envelope("RuleEnabled", "", rulePayload)
	for range burst {
		publish("rule.enabled", valid)
	}
	faultWaitConfirms(t, ch)

	// Drained: nothing ready or unacknowledged in the agent's queue.
	if !waitUntil(60*time.Second, func() bool {
		for _, q := range testBrokerCtlJSON(t, "list_queues", "-p", vhost, "name", "messages") {
			if name, _ := q["name"].(string); strings.HasPrefix(name, "amq.gen-") {
				return fmt.Sprint(q["messages"]) == "0"
			}
		}
		return false
	}) {
		t.Fatal("the agent's lifecycle queue never drained")
	}
	drained := time.Since(started)
	dead, err := ch.QueueDeclarePassive("faults.dead", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dead.Messages != len(junk) {
		t.Errorf("%d message(s) dead-lettered (nacked), want exactly the %d junk ones", dead.Messages, len(junk))
	}
	log := mark.since()
	passes := faultLogCount(log, "reconcile pass", "cause", "prompt")
	t.Logf("burst of %d prompts (+%d rejected, one of 1 MiB accepted) drained in %v with %d prompt passes; agent VmHWM %d kB",
		burst, len(junk), drained.Round(time.Millisecond), passes, procStatusKB(t, a.cmd.Process.Pid, "VmHWM"))
	if passes < 1 || passes > 100 {
		t.Errorf("%d reconcile passes for a burst of %d prompts, want a few (1..100)", passes, burst)
	}
	if n := faultLogCount(log, "invalid broker messages dropped"); n != 1 {
		t.Errorf("%d warn lines about invalid messages, want 1 (rate-limited)", n)
	}
	select {
	case <-a.done:
		t.Fatalf("agent exited (%d) on broken broker input", a.code)
	default:
	}
	s.requireSameLeaders(t, map[string]int{"testpack.sleeper": pid}, "after the broker input")
	if code := a.stop(syscall.SIGTERM, 40*time.Second); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
	if bytes.Contains([]byte(a.stderr.String()), bigJunk[:64]) {
		t.Error("message bodies reached the agent log")
	}
}

// faultBrokerChannel opens a publishing channel with confirms on amqpURL.
func faultBrokerChannel(t *testing.T, amqpURL string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dial broker: %v", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm mode: %v", err)
	}
	return conn, ch
}

// faultWaitConfirms waits until the broker has confirmed everything published on ch.
func faultWaitConfirms(t *testing.T, ch *amqp.Channel) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// A final publish with a deferred confirmation: confirms arrive in order.
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "faults.dead.none", false, false, amqp.Publishing{Body: []byte("x")})
	if err != nil {
		t.Fatalf("publish marker: %v", err)
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("broker did not confirm the burst: ok=%v err=%v", ok, err)
	}
}

// TestAgentStopsWithBrokerStalled: RabbitMQ stops answering without closing
// anything (no RST, no FIN) and SIGTERM arrives: cancelling the consumer
// and closing the channel wait for replies that never come, yet the agent
// exits 0 within a bound, with its sensors stopped.
func TestAgentStopsWithBrokerStalled(t *testing.T) {
	t.Parallel()
	s := newTestStack(t, "legacy")
	t.Cleanup(s.killLeftovers)
	proxy, viaProxy := newFaultProxyFor(t, s.amqpURL)
	s.nativeSensor("sleeper", faultSleeperScript)
	a := s.startVia(s.dbURL, viaProxy)
	a.waitLog("broker connected", 30*time.Second)
	s.waitSensorRunning(a, "testpack.sleeper", 30*time.Second)
	proxy.stall()
	start := time.Now()
	code := a.stop(syscall.SIGTERM, 60*time.Second)
	took := time.Since(start)
	t.Logf("stalled broker: agent exited %d after %v", code, took.Round(time.Millisecond))
	if code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
	if took > 10*time.Second {
		t.Errorf("shutdown took %v with the broker stalled, want under 10 s", took)
	}
	if status, _, _ := s.workerRow(); status != "inactive" {
		t.Errorf("worker row %s after shutdown, want inactive", status)
	}
	if left := s.sensorPIDs(""); len(left) > 0 {
		t.Errorf("sensor processes outlived the agent: %v", left)
	}
}
