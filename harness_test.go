package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// seedDB inserts Attune rows the way the API would, for end-to-end tests.
type seedDB struct {
	t    testing.TB
	pool *pgxpool.Pool
}

// newSeedDB opens a pool on a test database (search_path attune).
func newSeedDB(t testing.TB, dbURL string) *seedDB {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatalf("parse test database URL: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = "attune, public"
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open seed pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return &seedDB{t: t, pool: pool}
}

func (d *seedDB) id(sql string, args ...any) int64 {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var id int64
	if err := d.pool.QueryRow(ctx, sql, args...).Scan(&id); err != nil {
		d.t.Fatalf("seed %q: %v", strings.Fields(sql)[2], err)
	}
	return id
}

// exec runs a statement and fails the test on error.
func (d *seedDB) exec(sql string, args ...any) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.pool.Exec(ctx, sql, args...); err != nil {
		d.t.Fatalf("exec %q: %v", sql, err)
	}
}

func (d *seedDB) pack(ref string) int64 {
	return d.id(`INSERT INTO pack (ref, label, version) VALUES ($1, $1, '1.0.0') RETURNING id`, ref)
}

func (d *seedDB) runtime(ref, name, execConfig string) int64 {
	return d.id(`INSERT INTO runtime (ref, name, distributions, execution_config)
		VALUES ($1, $2, '{}', $3::jsonb) RETURNING id`, ref, name, execConfig)
}

func (d *seedDB) sensor(packID int64, packRef, ref, entrypoint string, runtimeID int64, config string) int64 {
	var cfg any
	if config != "" {
		cfg = config
	}
	return d.id(`INSERT INTO sensor (ref, pack, pack_ref, label, entrypoint, runtime, runtime_ref, enabled, config)
		SELECT $1, $2, $3, $1, $4, r.id, r.ref, true, $6::jsonb FROM runtime r WHERE r.id = $5 RETURNING id`,
		ref, packID, packRef, entrypoint, runtimeID, cfg)
}

func (d *seedDB) trigger(packID int64, packRef, ref string, sensorID int64) int64 {
	return d.id(`INSERT INTO trigger (ref, pack, pack_ref, label, enabled, sensor, sensor_ref)
		SELECT $1, $2, $3, $1, true, s.id, s.ref FROM sensor s WHERE s.id = $4 RETURNING id`,
		ref, packID, packRef, sensorID)
}

func (d *seedDB) rule(packID int64, packRef, ref string, triggerID int64, params string, enabled bool) int64 {
	return d.id(`INSERT INTO rule (ref, pack, pack_ref, label, action_ref, trigger, trigger_ref, trigger_params, enabled)
		SELECT $1, $2, $3, $1, 'core.noop', t.id, t.ref, $5::jsonb, $6 FROM trigger t WHERE t.id = $4 RETURNING id`,
		ref, packID, packRef, triggerID, params, enabled)
}

// syncBuffer is a goroutine-safe log sink for a child process.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// agentProc is the real agent binary running under a test. The agent logs
// on stdout (as the reference) and reports fatal errors on stderr; stdout
// and stderr here are one buffer holding both, in order, so a test reads
// the whole story in one place (TestAgentLogsOnStdout checks the split).
type agentProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	code   int
}

// startAgent runs the built agent with exactly env (plus PATH and HOME) and
// stops it (SIGTERM, then SIGKILL after 45 s) if still running when the test ends.
func startAgent(t testing.TB, env []string, args ...string) *agentProc {
	t.Helper()
	return runAgentCmd(t, exec.Command(buildAgent(t), args...), env, func(a *agentProc) {
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(45 * time.Second):
			a.cmd.Process.Kill()
			<-a.done
		}
	})
}

// runAgentCmd starts cmd (the agent, or a wrapper around it) with exactly env
// plus PATH and HOME, records its exit, and at the end of the test calls
// leftover on it when it is still running, then shows its log on failure.
func runAgentCmd(t testing.TB, cmd *exec.Cmd, env []string, leftover func(*agentProc)) *agentProc {
	t.Helper()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	out := &syncBuffer{}
	a := &agentProc{t: t, cmd: cmd, stdout: out, stderr: out, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = a.stdout, a.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		cmd.Wait()
		a.code = cmd.ProcessState.ExitCode()
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			leftover(a)
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", a.stderr.String())
		}
	})
	return a
}

// waitLog waits until the agent's stderr contains substr.
func (a *agentProc) waitLog(substr string, timeout time.Duration) {
	a.t.Helper()
	if !waitUntil(timeout, func() bool { return strings.Contains(a.stderr.String(), substr) }) {
		a.t.Fatalf("agent log never showed %q within %s; stderr:\n%s", substr, timeout, a.stderr.String())
	}
}

// stop sends sig and waits for the exit; it returns the exit code.
func (a *agentProc) stop(sig syscall.Signal, timeout time.Duration) int {
	a.t.Helper()
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
		return a.code
	case <-time.After(timeout):
		a.t.Fatalf("agent did not exit within %s of %v; stderr:\n%s", timeout, sig, a.stderr.String())
		return -1
	}
}

// waitUntil polls cond every 20 ms until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// agentEnv is the environment of an agent under test: its database, broker,
// API and directories, plus extra NAME=value pairs (the first of two
// assignments of one name wins, so extra cannot override these).
func agentEnv(dbURL, amqpURL, apiURL, dir string, extra ...string) []string {
	return append([]string{
		"ATTUNE__DATABASE__URL=" + dbURL,
		"ATTUNE__MESSAGE_QUEUE__URL=" + amqpURL,
		"ATTUNE_MQ_URL=" + amqpURL,
		"ATTUNE_API_URL=" + apiURL,
		"ATTUNE__SECURITY__JWT_SECRET=" + fakeAPISecret,
		"ATTUNE__SENSOR__HEARTBEAT_INTERVAL=1",
		"ATTUNE__SENSOR__SHUTDOWN_TIMEOUT=15",
		"ATTUNE_PACKS_BASE_DIR=" + dir + "/packs",
		"ATTUNE__RUNTIME_ENVS_DIR=" + dir + "/runtime_envs",
		"ATTUNE__ARTIFACTS_DIR=" + dir + "/artifacts",
		"ATTUNE_SENSOR_STATUS_FILE=" + dir + "/status.json",
		"ATTUNE__LOG__FORMAT=json",
		"ATTUNE_CONFIG=" + dir + "/none.yaml",
	}, extra...)
}
