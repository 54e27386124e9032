package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// stackConfig is where a benchmark stack's services and inputs are.
type stackConfig struct {
	AgentBin  string   // the agent built by `make build`
	SensorBin string   // bench/benchsensor, installed as the mark and crash sensors
	Schema    string   // testdata/schema/current.sql
	AdminDB   string   // PostgreSQL URL to create databases on
	AMQP      string   // broker URL; a fresh vhost replaces its path
	CtlCmd    []string // rabbitmqctl (ATTUNE_TEST_RABBITMQCTL)
}

// benchStack is one isolated Attune around the agents of one benchmark: a
// fresh vhost, databases created on demand, the fake API, and a work
// directory holding the pack `benchpack` whose sensors leave marks.
type benchStack struct {
	cfg   stackConfig
	dir   string
	packs string
	marks string
	api   *benchAPI
	dbs   []string
	rel   benchRelease // the bench pack's release, active in every database

	// The vhost is created in the background from the start (rabbitmqctl
	// takes about a second per call), and useBroker waits for it.
	vhostDone chan struct{}
	vhost     string
	vhostURL  string
	vhostErr  error
}

// newBenchStack builds the work directory, the pack and the fake API, and
// starts creating the vhost (useBroker returns it); databases come from
// newDatabase.
func newBenchStack(cfg stackConfig) (*benchStack, error) {
	dir, err := os.MkdirTemp("", "attune-agentbench-")
	if err != nil {
		return nil, err
	}
	s := &benchStack{cfg: cfg, dir: dir, packs: filepath.Join(dir, "packs"), vhostDone: make(chan struct{})}
	s.marks = filepath.Join(s.packs, "benchpack", "marks")
	sensors := filepath.Join(s.packs, "benchpack", "sensors")
	if err := os.MkdirAll(sensors, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.marks, 0o755); err != nil {
		return nil, err
	}
	for _, role := range []string{"mark", "crash"} {
		if err := copyExecutable(cfg.SensorBin, filepath.Join(sensors, role)); err != nil {
			return nil, err
		}
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return nil, fmt.Errorf("sleep(1) is required for the idle sensors: %w", err)
	}
	// One process per sensor: the shell writes the mark with a builtin
	// redirection (no fork) and then becomes sleep. `trap '' TERM` is
	// inherited across exec, so the stubborn sensor's sleep ignores SIGTERM.
	scripts := map[string]string{
		"idle":     "#!/bin/sh\n: > \"${0%/*}/../marks/$ATTUNE_SENSOR_REF.up\"\nexec " + sleep + " 1000000\n",
		"stubborn": "#!/bin/sh\ntrap '' TERM\n: > \"${0%/*}/../marks/$ATTUNE_SENSOR_REF.up\"\nexec " + sleep + " 1000000\n",
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(sensors, name), []byte(body), 0o755); err != nil {
			return nil, err
		}
	}
	if s.rel, err = publishBenchRelease(s.packs); err != nil {
		return nil, fmt.Errorf("publish the bench pack release: %w", err)
	}
	if s.api, err = startBenchAPI(""); err != nil {
		return nil, fmt.Errorf("fake API: %w", err)
	}
	go func() {
		defer close(s.vhostDone)
		s.vhostErr = s.createVhost(context.Background())
	}()
	return s, nil
}

// copyExecutable copies src to dst with mode 0755 (the pack must hold the
// file itself: the agent refuses symlinks that leave the pack).
func copyExecutable(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	return os.WriteFile(dst, b, 0o755)
}

// marker identifies this stack's sensor processes (markedProcs).
func (s *benchStack) marker() string { return "ATTUNE_API_URL=" + s.api.url }

// ctl runs rabbitmqctl with args.
func (s *benchStack) ctl(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	argv := append(append([]string{}, s.cfg.CtlCmd[1:]...), args...)
	out, err := exec.CommandContext(ctx, s.cfg.CtlCmd[0], argv...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", strings.Join(s.cfg.CtlCmd, " "), strings.Join(args, " "), err, out)
	}
	return nil
}

// useBroker waits for the stack's vhost and returns its AMQP URL.
func (s *benchStack) useBroker(ctx context.Context) (string, error) {
	select {
	case <-s.vhostDone:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return s.vhostURL, s.vhostErr
}

// createVhost adds a fresh vhost and grants the broker URL's user on it.
func (s *benchStack) createVhost(ctx context.Context) error {
	u, err := url.Parse(s.cfg.AMQP)
	if err != nil {
		return fmt.Errorf("broker URL: %w", err)
	}
	vhost := "attune-bench-" + benchRandomHex(6)
	if err := s.ctl(ctx, "add_vhost", vhost); err != nil {
		return err
	}
	s.vhost = vhost
	if err := s.ctl(ctx, "set_permissions", "-p", vhost, u.User.Username(), ".*", ".*", ".*"); err != nil {
		return err
	}
	u.Path, u.RawPath = "/"+vhost, "/"+url.PathEscape(vhost)
	s.vhostURL = u.String()
	return nil
}

// deadBrokerURL is an AMQP URL on a loopback port nobody listens on (the
// port was free a moment ago), for an agent that must run without a broker.
func deadBrokerURL() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return "amqp://guest:guest@127.0.0.1:" + strconv.Itoa(port) + "/", nil
}

// newDatabase creates a database on the admin server, loads the schema and
// seeds the pack and the native runtime; it returns the database's name and
// URL.
func (s *benchStack) newDatabase(ctx context.Context) (name, dbURL string, err error) {
	schema, err := os.ReadFile(s.cfg.Schema)
	if err != nil {
		return "", "", fmt.Errorf("read schema: %w", err)
	}
	admin, err := pgx.Connect(ctx, s.cfg.AdminDB)
	if err != nil {
		return "", "", fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer admin.Close(ctx)
	name = "attune_bench_" + benchRandomHex(6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", "", fmt.Errorf("create database: %w", err)
	}
	s.dbs = append(s.dbs, name)
	u, err := url.Parse(s.cfg.AdminDB)
	if err != nil {
		return "", "", fmt.Errorf("database URL: %w", err)
	}
	u.Path = "/" + name
	dbURL = u.String()
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return "", "", fmt.Errorf("connect to %s: %w", name, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, string(schema)); err != nil {
		return "", "", fmt.Errorf("load schema: %w", err)
	}
	_, err = c.Exec(ctx, `SET search_path TO attune, public;
INSERT INTO pack (ref, label, version) VALUES ('benchpack', 'benchpack', '1.0.0');
INSERT INTO runtime (ref, name, distributions, execution_config)
VALUES ('core.native', 'Native', '{}', '{"interpreter": {"binary": ""}}')`)
	if err != nil {
		return "", "", fmt.Errorf("seed pack and runtime: %w", err)
	}
	if err := s.rel.insert(ctx, c); err != nil {
		return "", "", err
	}
	return name, dbURL, nil
}

// seededSensor is one sensor row with its trigger and rule.
type seededSensor struct {
	ID     int64
	Ref    string
	RuleID int64
}

// seedSensors inserts n native sensors benchpack.<prefix>NNNN running
// entrypoint, each with one trigger and one rule (enabled or not), in one
// statement; they come back in order.
func seedSensors(ctx context.Context, dbURL, prefix, entrypoint string, n int, ruleEnabled bool) ([]seededSensor, error) {
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `WITH
s AS (INSERT INTO attune.sensor (ref, pack, pack_ref, label, entrypoint, runtime, runtime_ref, enabled)
      SELECT 'benchpack.' || $1 || lpad(g::text, 4, '0'), p.id, 'benchpack', 'bench sensor', $2, r.id, r.ref, true
      FROM generate_series(1, $3::int) g, attune.pack p, attune.runtime r
      WHERE p.ref = 'benchpack' AND r.ref = 'core.native'
      RETURNING id, ref, pack),
t AS (INSERT INTO attune.trigger (ref, pack, pack_ref, label, enabled, sensor, sensor_ref)
      SELECT s.ref || '_trigger', s.pack, 'benchpack', 'bench trigger', true, s.id, s.ref FROM s
      RETURNING id, ref, pack, sensor),
r AS (INSERT INTO attune.rule (ref, pack, pack_ref, label, action_ref, trigger, trigger_ref, trigger_params, enabled)
      SELECT replace(t.ref, '_trigger', '_rule'), t.pack, 'benchpack', 'bench rule', 'core.noop', t.id, t.ref, '{}', $4 FROM t
      RETURNING id, trigger)
SELECT s.id, s.ref, r.id FROM s JOIN t ON t.sensor = s.id JOIN r ON r.trigger = t.id ORDER BY s.ref`,
		prefix, entrypoint, n, ruleEnabled)
	if err != nil {
		return nil, fmt.Errorf("seed sensors: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (seededSensor, error) {
		var s seededSensor
		return s, r.Scan(&s.ID, &s.Ref, &s.RuleID)
	})
	if err != nil {
		return nil, fmt.Errorf("seed sensors: %w", err)
	}
	if len(out) != n {
		return nil, fmt.Errorf("seed sensors: %d rows, want %d", len(out), n)
	}
	return out, nil
}

// agentOptions are the per-run settings of an agent.
type agentOptions struct {
	DBURL      string
	MQURL      string
	WorkerName string
	MaxSensors int
	Extra      []string
}

// agentEnv is the complete environment of an agent: its database, broker,
// the fake API and the stack's directories; heartbeat, grace and timeouts
// stay at their production defaults.
func (s *benchStack) agentEnv(o agentOptions) []string {
	home := filepath.Join(s.dir, "home")
	os.MkdirAll(home, 0o755)
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8",
		"ATTUNE__DATABASE__URL=" + o.DBURL,
		"ATTUNE__MESSAGE_QUEUE__URL=" + o.MQURL,
		"ATTUNE_MQ_URL=" + o.MQURL,
		"ATTUNE_API_URL=" + s.api.url,
		"ATTUNE__SECURITY__JWT_SECRET=agentbench-secret",
		"ATTUNE_PACKS_BASE_DIR=" + s.packs,
		"ATTUNE__RUNTIME_ENVS_DIR=" + filepath.Join(s.dir, "runtime_envs"),
		"ATTUNE__ARTIFACTS_DIR=" + filepath.Join(s.dir, "artifacts"),
		"ATTUNE_SENSOR_STATUS_FILE=" + filepath.Join(s.dir, "status.json"),
		"ATTUNE__LOG__FORMAT=json",
		"ATTUNE_CONFIG=" + filepath.Join(s.dir, "none.yaml"),
		"ATTUNE__SENSOR__WORKER_NAME=" + o.WorkerName,
		"ATTUNE__SENSOR__MAX_CONCURRENT_SENSORS=" + strconv.Itoa(max(o.MaxSensors, 10)),
	}
	return append(env, o.Extra...)
}

// clearMarks empties the marks directory between runs.
func (s *benchStack) clearMarks() error {
	if err := os.RemoveAll(s.marks); err != nil {
		return err
	}
	return os.MkdirAll(s.marks, 0o755)
}

// countMarks counts the files in marks/ ending in suffix.
func (s *benchStack) countMarks(suffix string) int {
	ents, _ := os.ReadDir(s.marks)
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			n++
		}
	}
	return n
}

// readMark reads the number in marks/<name>; ok is false while it is absent.
func (s *benchStack) readMark(name string) (int64, bool) {
	b, err := os.ReadFile(filepath.Join(s.marks, name))
	if err != nil || len(b) == 0 || b[len(b)-1] != '\n' {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v, err == nil
}

// killLeftovers SIGKILLs every process of this stack's sensors still alive
// and returns how many there were.
func (s *benchStack) killLeftovers() int {
	pids := markedProcs(s.marker())
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return len(pids)
}

// close removes everything the stack created.
func (s *benchStack) close() {
	s.killLeftovers()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if len(s.dbs) > 0 {
		if admin, err := pgx.Connect(ctx, s.cfg.AdminDB); err == nil {
			for _, name := range s.dbs {
				admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			}
			admin.Close(ctx)
		}
	}
	<-s.vhostDone
	if s.vhost != "" {
		s.ctl(ctx, "delete_vhost", s.vhost)
	}
	if s.api != nil {
		s.api.close()
	}
	os.RemoveAll(s.dir)
}
