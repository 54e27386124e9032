package main

// foreignload_test.go owns the proof that the service-backed tests look only
// at what they created: it runs a representative set of them while a
// foreign load shares the same PostgreSQL, RabbitMQ and process table, the
// situation of a user who runs `make test` beside an Attune stack.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
)

// foreignLoadChecks are the tests re-run beside the load: each inspects the
// broker (connection, queue and consumer listings, closing connections),
// the process table (sensor processes by ref, the same refs the foreign
// agent runs) or database rows, or expects "connection refused".
var foreignLoadChecks = []string{
	"TestAMQPPromptsCancel",
	"TestAMQPPromptsTopology",
	"TestAMQPPromptsReconnect",
	"TestAMQPPromptsBrokerDown",
	"TestAgentFollowsRuleLifecycle",
	"TestAgentRunsSensorOfEachRuntime",
	"TestPgRegistryRows",
	"TestOpenPoolUnreachableDatabase",
}

// foreignAMQPConns is how many connections the foreign client holds on "/".
const foreignAMQPConns = 3

// TestSuitePassesBesideForeignLoad starts a foreign load (another agent on
// its own database and vhost running sensors of the same refs, a client
// holding connections on the default vhost, an unrelated database under a
// loop of writes), re-executes this test binary on foreignLoadChecks while
// it runs and requires every one to pass, then checks the load was alive
// throughout, untouched by the checks, and is gone afterwards.
func TestSuitePassesBesideForeignLoad(t *testing.T) {
	// The foreign agent: a full stack of its own, sensors running.
	fs := newTestStack(t, "current")
	t.Cleanup(fs.killLeftovers)
	fs.sensorWithRule("python_sensor", "python_sensor.py", "Python", "", true)
	fs.sensorWithRule("node_sensor", "node_sensor.js", "Node.js", "", true)
	fa := fs.start()
	fa.waitLog("Attune Sensor Agent is ready", 60*time.Second)
	foreignPIDs := map[string]int{
		"testpack.python_sensor": fs.waitSensorRunning(fa, "testpack.python_sensor", 30*time.Second),
		"testpack.node_sensor":   fs.waitSensorRunning(fa, "testpack.node_sensor", 30*time.Second),
	}

	conns := foreignAMQPClient(t, testAMQPURL(), foreignAMQPConns)
	writes := foreignBusyDatabase(t)

	// The load is visible exactly where a careless test would look.
	listed := 0
	for _, c := range testBrokerCtlJSON(t, "list_connections", "vhost", "name") {
		if c["vhost"] == "/" {
			listed++
		}
	}
	if listed < foreignAMQPConns {
		t.Fatalf("the broker lists %d connections on /, want at least the foreign client's %d", listed, foreignAMQPConns)
	}
	before := writes.Load()

	out, err := runForeignLoadChecks(t, foreignLoadChecks)
	if err != nil {
		t.Fatalf("checks beside the foreign load failed: %v\n%s", err, out)
	}
	for _, name := range foreignLoadChecks {
		if !regexp.MustCompile(`(?m)^--- PASS: ` + name + ` `).MatchString(out) {
			t.Errorf("%s did not pass beside the foreign load (skipped or not run):\n%s", name, out)
		}
	}

	// The load ran throughout and the checks left it alone.
	if after := writes.Load(); after <= before {
		t.Errorf("the busy database made no writes while the checks ran (%d before, %d after)", before, after)
	}
	for i, c := range conns {
		if c.IsClosed() {
			t.Errorf("foreign AMQP connection %d on / was closed during the checks", i)
		}
	}
	for ref, pid := range foreignPIDs {
		if now := fs.sensorPIDs(ref); len(now) == 0 || now[0] != pid {
			t.Errorf("foreign sensor %s: pid %d before the checks, %v after: a check touched another agent's process", ref, pid, now)
		}
	}
	select {
	case <-fa.done:
		t.Errorf("the foreign agent exited during the checks (code %d)", fa.code)
	default:
	}

	// Everything foreign is removed: the agent and its sensors now, the
	// connections, writer, databases and vhosts by their cleanups.
	if code := fa.stop(syscall.SIGTERM, 45*time.Second); code != 0 {
		t.Errorf("foreign agent exit code %d, want 0", code)
	}
	fs.waitSensorGone(fa, "", 20*time.Second)
}

// runForeignLoadChecks re-executes this test binary on the named tests only
// and returns its verbose output.
func runForeignLoadChecks(t *testing.T, names []string) (string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find the test binary: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run", "^("+strings.Join(names, "|")+")$",
		"-test.count=1", "-test.v", "-test.timeout=14m")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, helperEnv+"=") && !strings.HasPrefix(kv, "ATTUNE_TEST_SKIP_SERVICES=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("measured: %d checks beside the foreign load in %v", len(names), time.Since(start).Round(time.Second))
	return out.String(), err
}

// foreignAMQPClient opens n connections, each with a channel, on amqpURL's
// vhost and keeps them open until the test ends.
func foreignAMQPClient(t *testing.T, amqpURL string, n int) []*amqp.Connection {
	t.Helper()
	var conns []*amqp.Connection
	for i := range n {
		c, err := amqp.DialConfig(amqpURL, amqp.Config{
			Properties: amqp.Table{"connection_name": fmt.Sprintf("foreign-load-%d", i)},
		})
		if err != nil {
			t.Fatalf("foreign AMQP client: dial %s: %v", redactTestURL(amqpURL), err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Channel(); err != nil {
			t.Fatalf("foreign AMQP client: channel: %v", err)
		}
		conns = append(conns, c)
	}
	return conns
}

// foreignBusyDatabase creates an unrelated database and keeps two writers
// inserting, updating and deleting in it until the test ends; it returns
// the count of committed writes. Writers pause a little between statements:
// the point is a live neighbour, not a saturated machine.
func foreignBusyDatabase(t *testing.T) *atomic.Int64 {
	t.Helper()
	dbURL := newTestDB(t, "legacy")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var writes atomic.Int64
	setup, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatalf("busy database: %v", err)
	}
	_, err = setup.Exec(t.Context(), `CREATE TABLE public.foreign_load (id bigserial PRIMARY KEY, v text NOT NULL)`)
	setup.Close(context.Background())
	if err != nil {
		t.Fatalf("busy database: create table: %v", err)
	}
	for w := range 2 {
		c, err := pgx.Connect(t.Context(), dbURL)
		if err != nil {
			t.Fatalf("busy database writer %d: %v", w, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close(context.Background())
			for ctx.Err() == nil {
				_, err := c.Exec(ctx, `WITH ins AS (INSERT INTO public.foreign_load (v) VALUES (md5(random()::text)) RETURNING id)
					UPDATE public.foreign_load SET v = v || 'x' WHERE id IN (SELECT id FROM ins)`)
				if err == nil {
					_, err = c.Exec(ctx, `DELETE FROM public.foreign_load WHERE id < (SELECT max(id) - 100 FROM public.foreign_load)`)
				}
				if err == nil {
					writes.Add(1)
				}
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
	}
	// Registered after newTestDB's cleanup, so it runs first: writers stop
	// before their database is dropped.
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &writes
}
