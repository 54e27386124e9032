package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testHelpers maps a helper-mode name to a function that the re-executed test
// binary runs instead of the tests (tableflip's TestMain pattern): this is how
// the test binary plays a sensor. Files register modes in init().
var testHelpers = map[string]func() int{}

// helperEnv names the variable that selects a helper mode in a re-exec.
const helperEnv = "ATTUNE_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		f, ok := testHelpers[mode]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown test helper mode %q\n", mode)
			os.Exit(99)
		}
		os.Exit(f())
	}
	code := m.Run()
	if agentBuildDir != "" {
		os.RemoveAll(agentBuildDir)
	}
	os.Exit(code)
}

// requireServices fails the test (never skips silently) unless the operator
// explicitly opted out of service-backed tests with ATTUNE_TEST_SKIP_SERVICES=1.
func requireServices(t testing.TB) {
	t.Helper()
	if os.Getenv("ATTUNE_TEST_SKIP_SERVICES") == "1" {
		t.Skip("ATTUNE_TEST_SKIP_SERVICES=1: service-backed test skipped on request")
	}
}

// testAdminDatabaseURL is the server the tests create their databases on.
func testAdminDatabaseURL() string {
	if u := os.Getenv("ATTUNE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// testAMQPURL is the broker the tests create their vhosts on.
func testAMQPURL() string {
	if u := os.Getenv("ATTUNE_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// closedTestAddr is a 127.0.0.1 address where nothing listens, chosen at run
// time: a port just bound and released, never a fixed one (port 1 or any
// other may be taken on a user's machine, and a test expecting "connection
// refused" would then talk to a stranger).
func closedTestAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a closed port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func randomSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newTestDB creates a fresh database loaded with testdata/schema/<generation>.sql
// ("legacy" or "current"), drops it when the test ends, and returns its URL.
func newTestDB(t testing.TB, generation string) string {
	t.Helper()
	requireServices(t)
	schema, err := os.ReadFile(filepath.Join("testdata", "schema", generation+".sql"))
	if err != nil {
		t.Fatalf("read schema fixture: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, testAdminDatabaseURL())
	if err != nil {
		t.Fatalf("PostgreSQL is required for this test and is not reachable at %s (set ATTUNE_TEST_DATABASE_URL, or run `make test`, which starts one): %v",
			redactTestURL(testAdminDatabaseURL()), err)
	}
	defer admin.Close(ctx)
	name := "attune_t_" + randomSuffix()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, testAdminDatabaseURL())
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(testAdminDatabaseURL())
	if err != nil {
		t.Fatalf("parse ATTUNE_TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	dbURL := u.String()
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to test database: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, string(schema)); err != nil {
		t.Fatalf("load schema fixture %s: %v", generation, err)
	}
	return dbURL
}

// newTestVhost creates a fresh RabbitMQ vhost for the test (with rabbitmqctl,
// or the command in ATTUNE_TEST_RABBITMQCTL), deletes it when the test ends,
// and returns the AMQP URL that points at it.
func newTestVhost(t testing.TB) string {
	t.Helper()
	requireServices(t)
	vhost := "attune-t-" + randomSuffix()
	ctl := strings.Fields(os.Getenv("ATTUNE_TEST_RABBITMQCTL"))
	if len(ctl) == 0 {
		ctl = []string{"rabbitmqctl"}
	}
	ctlRun := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, ctl[0], append(append([]string{}, ctl[1:]...), args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w: %s", strings.Join(ctl, " "), strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := ctlRun("add_vhost", vhost); err != nil {
		t.Fatalf("RabbitMQ is required for this test (rabbitmqctl must reach it; run `make test`, which starts one): %v", err)
	}
	t.Cleanup(func() {
		if err := ctlRun("delete_vhost", vhost); err != nil {
			t.Errorf("delete test vhost: %v", err)
		}
	})
	u, err := url.Parse(testAMQPURL())
	if err != nil {
		t.Fatalf("parse ATTUNE_TEST_AMQP_URL: %v", err)
	}
	user := u.User.Username()
	if err := ctlRun("set_permissions", "-p", vhost, user, ".*", ".*", ".*"); err != nil {
		t.Fatalf("grant %s on test vhost: %v", user, err)
	}
	u.Path = "/" + vhost
	u.RawPath = "/" + url.PathEscape(vhost)
	return u.String()
}

func redactTestURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable URL>"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

var (
	agentBuildOnce sync.Once
	agentBuildDir  string
	agentBinary    string
	agentBuildErr  error
)

// buildAgent builds the real agent binary once per test run, with the same
// flags as `make build`, and returns its path.
func buildAgent(t testing.TB) string {
	t.Helper()
	agentBuildOnce.Do(func() {
		agentBuildDir, agentBuildErr = os.MkdirTemp("", "attune-agent-build-")
		if agentBuildErr != nil {
			return
		}
		agentBinary = filepath.Join(agentBuildDir, "attune-sensor-agent")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=0.0.0-test", "-o", agentBinary, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentBuildErr = fmt.Errorf("go build: %w: %s", err, out)
		}
	})
	if agentBuildErr != nil {
		t.Fatalf("build agent: %v", agentBuildErr)
	}
	return agentBinary
}
