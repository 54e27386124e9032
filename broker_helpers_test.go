package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Helpers of the broker tests: a running consumer, a prompt recorder, a log
// capture and thin rabbitmqctl/channel wrappers.

// runningPrompts is one amqpPrompts.run under test.
type runningPrompts struct {
	b      *amqpPrompts
	rec    *promptRecorder
	logs   *testLogBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startPrompts runs amqpPrompts against amqpURL with debug logs captured;
// the test's cleanup stops it and checks that it returned nil.
func startPrompts(t *testing.T, amqpURL string, tune func(*amqpPrompts)) *runningPrompts {
	t.Helper()
	logs := &testLogBuffer{}
	rp := &runningPrompts{
		b:    &amqpPrompts{URL: amqpURL, Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))},
		rec:  &promptRecorder{},
		logs: logs,
		done: make(chan error, 1),
	}
	if tune != nil {
		tune(rp.b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp.cancel = cancel
	go func() { rp.done <- rp.b.run(ctx, rp.rec.notify) }()
	t.Cleanup(func() { rp.stop(t) })
	return rp
}

// stop cancels the run and requires a nil return within 10 s.
func (rp *runningPrompts) stop(t *testing.T) {
	rp.once.Do(func() {
		rp.cancel()
		select {
		case err := <-rp.done:
			if err != nil {
				t.Errorf("run returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("run did not return within 10 s of cancel")
		}
	})
}

// waitReady waits until n sessions have reached the consuming state.
func (rp *runningPrompts) waitReady(t *testing.T, n int) {
	t.Helper()
	eventually(t, 30*time.Second, "consumer ready", func() bool {
		return rp.logs.count("broker connected")+rp.logs.count("broker available") >= n
	})
}

// promptRecorder is the notify callback under test: it records and never blocks.
type promptRecorder struct {
	mu  sync.Mutex
	got []prompt
}

func (r *promptRecorder) notify(p prompt) {
	r.mu.Lock()
	r.got = append(r.got, p)
	r.mu.Unlock()
}

func (r *promptRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (r *promptRecorder) wait(t *testing.T, n int) []prompt {
	t.Helper()
	return r.waitTimeout(t, n, 15*time.Second)
}

// waitTimeout waits for at least n prompts and returns a copy of them all.
func (r *promptRecorder) waitTimeout(t *testing.T, n int, timeout time.Duration) []prompt {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%d prompts", n), func() bool { return r.count() >= n })
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]prompt(nil), r.got...)
}

// testLogBuffer collects JSON log lines from several goroutines.
type testLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *testLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// find returns the records whose msg is exactly msg.
func (l *testLogBuffer) find(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func (l *testLogBuffer) count(msg string) int { return len(l.find(msg)) }

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testBrokerChannel opens a connection and a confirm-mode channel of the
// test's own, closed at cleanup.
func testBrokerChannel(t *testing.T, amqpURL string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("test connection: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("test channel: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("test channel confirms: %v", err)
	}
	return ch
}

// testPublish publishes body and waits for the broker's confirm.
func testPublish(t *testing.T, ch *amqp.Channel, exchange, key string, body []byte) {
	t.Helper()
	dc, err := ch.PublishWithDeferredConfirm(exchange, key, false, false, amqp.Publishing{Body: body})
	if err != nil {
		t.Fatalf("publish %s/%s: %v", exchange, key, err)
	}
	if ok, err := dc.WaitContext(t.Context()); !ok || err != nil {
		t.Fatalf("publish %s/%s not confirmed: %v", exchange, key, err)
	}
}

// testGet fetches one message from queue, polling briefly since routing is asynchronous.
func testGet(t *testing.T, ch *amqp.Channel, queue string) amqp.Delivery {
	t.Helper()
	var d amqp.Delivery
	eventually(t, 5*time.Second, "a message in "+queue, func() bool {
		var ok bool
		var err error
		d, ok, err = ch.Get(queue, false)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		return ok
	})
	return d
}

// testVhostName is the vhost an AMQP URL points at.
func testVhostName(t *testing.T, amqpURL string) string {
	t.Helper()
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// testBrokerCtl runs rabbitmqctl (or ATTUNE_TEST_RABBITMQCTL) and returns its output.
func testBrokerCtl(t *testing.T, args ...string) []byte {
	t.Helper()
	ctl := strings.Fields(os.Getenv("ATTUNE_TEST_RABBITMQCTL"))
	if len(ctl) == 0 {
		ctl = []string{"rabbitmqctl"}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctl[0], append(append(append([]string{}, ctl[1:]...), "-q"), args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// testVhostConnections lists the broker's connections to vhost, and only
// those. `rabbitmqctl list_connections` takes no vhost filter (a -p is
// ignored: it lists every connection on the node), so the vhost column is
// asked for and filtered here; a broker shared with other clients, as a
// user's Attune stack is, must not change what a test counts.
func testVhostConnections(t *testing.T, vhost string) []map[string]any {
	t.Helper()
	var own []map[string]any
	for _, c := range testBrokerCtlJSON(t, "list_connections", "vhost", "name") {
		if c["vhost"] == vhost {
			own = append(own, c)
		}
	}
	return own
}

// testBrokerCtlJSON runs a rabbitmqctl list command with the JSON formatter.
func testBrokerCtlJSON(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	out := testBrokerCtl(t, append(args, "--formatter", "json")...)
	var rows []map[string]any
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("rabbitmqctl %s: parse %q: %v", strings.Join(args, " "), out, err)
	}
	return rows
}
