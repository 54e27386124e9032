package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrDatabaseUnavailable marks a database that did not answer within
// database.connect_timeout at start-up. The CLI maps it to a plain failure
// with one readable line instead of a stack of driver errors.
var ErrDatabaseUnavailable = errors.New("database unavailable")

// Pool and connection limits. The agent runs one heartbeat, one reconcile
// loop and a few row updates at a time, so it caps its own pool far below the
// shared database.max_connections (default 50, sized for the API server).
const (
	dbMaxPoolConns     = 4
	dbStatementTimeout = 30 * time.Second // server side: a runaway statement cannot pin a loop
	dbDialTimeout      = 10 * time.Second // per connection attempt
	dbRetryFirstDelay  = 200 * time.Millisecond
	dbRetryMaxDelay    = 5 * time.Second
	dbDefaultTimeout   = 30 * time.Second // database.connect_timeout default
	dbCloseTimeout     = 2 * time.Second  // at exit: how long closing the pool may take
)

// openPool builds the agent's connection pool and waits until the database
// answers. Every pooled connection gets search_path '<schema>, public',
// application_name 'attune:<schema>' (as the reference's pool does, so the
// agent's sessions look like any Attune service's) and a statement_timeout.
//
// A database that is not reachable yet (compose starts everything at once)
// is retried with jittered, capped backoff until cfg.ConnectTimeout elapses;
// then the error wraps ErrDatabaseUnavailable. One line is logged when the
// retrying starts, not one per attempt. The URL is never logged or returned
// with its password.
func openPool(ctx context.Context, cfg DatabaseConfig, log *slog.Logger) (*pgxpool.Pool, error) {
	redacted := redactDatabaseURL(cfg.URL)
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgx's parse error text redacts passwords only on a best-effort
		// basis (and may wrap a url.Error quoting the raw URL): never pass it on.
		return nil, fmt.Errorf("%w: database.url %s is not a valid PostgreSQL connection string", ErrConfig, redacted)
	}
	schema := cfg.Schema
	if schema == "" {
		schema = "attune"
	}
	configureAgentPool(pc, cfg, schema)

	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = dbDefaultTimeout
	}
	if pc.ConnConfig.ConnectTimeout <= 0 || pc.ConnConfig.ConnectTimeout > min(timeout, dbDialTimeout) {
		pc.ConnConfig.ConnectTimeout = min(timeout, dbDialTimeout)
	}

	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("create database pool for %s: %w", redacted, err)
	}
	if err := waitForDatabase(ctx, pool, timeout, redacted, log); err != nil {
		pool.Close()
		return nil, err
	}
	log.Info("database connected", "url", redacted, "schema", schema, "max_conns", pc.MaxConns)
	return pool, nil
}

// closePool closes pool, waiting at most timeout, and reports whether it
// finished. A connection that was aborted while the database was silent is
// closed by pgx in the background after a cancel request that may take 15 s
// to give up, and pgxpool's Close waits for it: at exit that only delays the
// shutdown, since the kernel closes the sockets anyway.
func closePool(pool *pgxpool.Pool, timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { pool.Close(); close(done) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// configureAgentPool applies the agent's small pool limits and the
// per-connection session settings to a parsed pool config.
func configureAgentPool(pc *pgxpool.Config, cfg DatabaseConfig, schema string) {
	maxConns := int32(dbMaxPoolConns)
	if cfg.MaxConnections > 0 && cfg.MaxConnections < dbMaxPoolConns {
		maxConns = int32(cfg.MaxConnections)
	}
	pc.MaxConns = maxConns
	pc.MinConns = 0
	if cfg.MinConnections > 0 {
		pc.MinConns = 1 // one warm connection; the heartbeat uses it every interval
	}
	if cfg.IdleTimeout > 0 {
		pc.MaxConnIdleTime = cfg.IdleTimeout
	}
	searchPath := schema + ", public"
	appName := "attune:" + schema
	stmtTimeout := fmt.Sprintf("%dms", dbStatementTimeout.Milliseconds())
	// Set after connecting with set_config, like the reference pool, rather
	// than as startup parameters: connection poolers such as PgBouncer reject
	// unknown startup parameters but pass plain statements through.
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx,
			"SELECT set_config('search_path', $1, false), set_config('application_name', $2, false), set_config('statement_timeout', $3, false)",
			searchPath, appName, stmtTimeout)
		if err != nil {
			return fmt.Errorf("set session parameters: %w", err)
		}
		return nil
	}
}

// waitForDatabase pings until the database answers, ctx ends, or timeout
// elapses.
func waitForDatabase(ctx context.Context, pool *pgxpool.Pool, timeout time.Duration, redacted string, log *slog.Logger) error {
	deadline := time.Now().Add(timeout)
	attemptCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	delay := dbRetryFirstDelay
	var lastErr error
	for attempt := 1; ; attempt++ {
		err := pool.Ping(attemptCtx)
		if err == nil {
			if attempt > 1 {
				log.Info("database reachable", "url", redacted, "attempt", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("connect to database %s: %w", redacted, ctx.Err())
		}
		lastErr = err
		if attempt == 1 {
			log.Warn("database not reachable yet, retrying", "url", redacted, "timeout", timeout.String(), "error", err.Error())
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			break
		}
		wait := min(jitterDatabaseDelay(delay), remaining)
		delay = min(delay*2, dbRetryMaxDelay)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("connect to database %s: %w", redacted, ctx.Err())
		case <-t.C:
		}
		if time.Until(deadline) <= 0 {
			break
		}
	}
	return fmt.Errorf("%w: %s did not answer within %s: %w", ErrDatabaseUnavailable, redacted, timeout, lastErr)
}

// jitterDatabaseDelay spreads d over [d/2, d) so that several agents started
// together do not hammer a recovering server in lock-step.
func jitterDatabaseDelay(d time.Duration) time.Duration {
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half)
}

// redactDatabaseURL returns a database URL that is safe to log: credentials,
// query (which may carry password=) and fragment are removed. It works on the
// text rather than with url.Parse so that multi-host URLs and passwords with
// unescaped '@', '/' or '?' are still handled; when in doubt it drops more.
// Keyword/value connection strings keep only host, hostaddr, port and dbname.
//
// TODO(registry): replace with the shared redactURL once it is merged.
func redactDatabaseURL(raw string) string {
	raw = strings.TrimSpace(raw)
	for _, scheme := range []string{"postgresql://", "postgres://"} {
		if len(raw) < len(scheme) || !strings.EqualFold(raw[:len(scheme)], scheme) {
			continue
		}
		rest := raw[len(scheme):]
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			rest = rest[i+1:]
		}
		if i := strings.IndexAny(rest, "?#"); i >= 0 {
			rest = rest[:i]
		}
		return raw[:len(scheme)] + rest
	}
	var kept []string
	for _, field := range strings.Fields(raw) {
		k, v, ok := strings.Cut(field, "=")
		if !ok || strings.ContainsAny(v, `'\`) {
			continue
		}
		switch strings.ToLower(k) {
		case "host", "hostaddr", "port", "dbname":
			kept = append(kept, k+"="+v)
		}
	}
	if len(kept) == 0 {
		return "(connection string)"
	}
	return strings.Join(kept, " ")
}

// schemaInfo records which optional parts of the Attune schema exist, read
// once from information_schema at start-up, so the agent can choose its
// queries for the legacy or the current generation (CONTRACT §4) instead of
// failing on a column that an older deployment does not have.
type schemaInfo struct {
	Schema string // the schema searched (first entry of search_path)

	// effective_enabled (generated COALESCE(enabled_override, enabled)).
	SensorEffectiveEnabled  bool
	TriggerEffectiveEnabled bool
	RuleEffectiveEnabled    bool

	// retired_at (NULL = active).
	SensorRetiredAt  bool
	TriggerRetiredAt bool
	RuleRetiredAt    bool
	RuntimeRetiredAt bool

	PackActiveRelease    bool // pack.active_release
	PackWorkerSelector   bool // pack.worker_selector
	SensorWorkerSelector bool // sensor.worker_selector
	// worker_tolerations / worker_affinity on pack and sensor, and the
	// rule.sensor_worker_* columns: the full placement set (CONTRACT §5).
	PackPlacement       bool
	SensorPlacement     bool
	RuleSensorPlacement bool

	// Optional tables.
	SensorProcess            bool
	SensorWorkload           bool
	SensorWorkloadAssignment bool
	PackRelease              bool
	// LogStream (log_stream table) marks the generation whose sensor output
	// goes to the API as segmented log streams (CONTRACT §13).
	LogStream          bool
	SensorLogRetention bool // sensor.log_retention_policy / log_retention_limit
}

// enabledColumn names the column that means "enabled" for sensor, trigger or
// rule: effective_enabled where it exists, else enabled.
func (s schemaInfo) enabledColumn(table string) string {
	has := map[string]bool{"sensor": s.SensorEffectiveEnabled, "trigger": s.TriggerEffectiveEnabled, "rule": s.RuleEffectiveEnabled}
	if has[table] {
		return "effective_enabled"
	}
	return "enabled"
}

// hasRetiredAt reports whether sensor, trigger, rule or runtime carries
// retired_at, i.e. whether "active" must add retired_at IS NULL.
func (s schemaInfo) hasRetiredAt(table string) bool {
	return map[string]bool{"sensor": s.SensorRetiredAt, "trigger": s.TriggerRetiredAt, "rule": s.RuleRetiredAt, "runtime": s.RuntimeRetiredAt}[table]
}

// leases reports whether sensors run under workload leases (CONTRACT §12):
// the lease tables and the release pin they need are all present.
func (s schemaInfo) leases() bool {
	return s.SensorWorkload && s.SensorWorkloadAssignment && s.PackRelease && s.PackActiveRelease
}

// generation names the schema generation for the start-up log line.
func (s schemaInfo) generation() string {
	if s.SensorEffectiveEnabled || s.RuleEffectiveEnabled || s.TriggerEffectiveEnabled {
		return "current"
	}
	return "legacy"
}

// detectSchema reads information_schema once and reports what exists in the
// schema the pool's search_path points at (openPool puts the configured
// schema first). A schema without a worker table is an error: the agent was
// pointed at the wrong database or schema.
func detectSchema(ctx context.Context, pool *pgxpool.Pool) (schemaInfo, error) {
	var searchPath string
	if err := pool.QueryRow(ctx, "SELECT current_setting('search_path')").Scan(&searchPath); err != nil {
		return schemaInfo{}, fmt.Errorf("read search_path: %w", err)
	}
	info := schemaInfo{Schema: firstSearchPathSchema(searchPath)}
	tables := []string{"worker", "pack", "runtime", "sensor", "trigger", "rule",
		"sensor_process", "sensor_workload", "sensor_workload_assignment", "pack_release", "log_stream"}
	rows, err := pool.Query(ctx,
		`SELECT table_name::text, column_name::text FROM information_schema.columns
		 WHERE table_schema = $1 AND table_name = ANY($2)`, info.Schema, tables)
	if err != nil {
		return schemaInfo{}, fmt.Errorf("read information_schema for schema %s: %w", info.Schema, err)
	}
	present := map[string]bool{}
	cols := map[string]bool{}
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			rows.Close()
			return schemaInfo{}, fmt.Errorf("read information_schema for schema %s: %w", info.Schema, err)
		}
		present[table] = true
		cols[table+"."+column] = true
	}
	if err := rows.Err(); err != nil {
		return schemaInfo{}, fmt.Errorf("read information_schema for schema %s: %w", info.Schema, err)
	}
	if !present["worker"] {
		return schemaInfo{}, fmt.Errorf("schema %s has no worker table: is this an Attune database?", info.Schema)
	}
	info.SensorEffectiveEnabled = cols["sensor.effective_enabled"]
	info.TriggerEffectiveEnabled = cols["trigger.effective_enabled"]
	info.RuleEffectiveEnabled = cols["rule.effective_enabled"]
	info.SensorRetiredAt = cols["sensor.retired_at"]
	info.TriggerRetiredAt = cols["trigger.retired_at"]
	info.RuleRetiredAt = cols["rule.retired_at"]
	info.RuntimeRetiredAt = cols["runtime.retired_at"]
	info.PackActiveRelease = cols["pack.active_release"]
	info.PackWorkerSelector = cols["pack.worker_selector"]
	info.SensorWorkerSelector = cols["sensor.worker_selector"]
	info.PackPlacement = cols["pack.worker_tolerations"] && cols["pack.worker_affinity"]
	info.SensorPlacement = cols["sensor.worker_tolerations"] && cols["sensor.worker_affinity"]
	info.RuleSensorPlacement = cols["rule.sensor_worker_selector"] && cols["rule.sensor_worker_tolerations"] &&
		cols["rule.sensor_worker_affinity"]
	info.SensorProcess = present["sensor_process"]
	info.SensorWorkload = present["sensor_workload"]
	info.SensorWorkloadAssignment = present["sensor_workload_assignment"]
	info.PackRelease = present["pack_release"]
	info.LogStream = present["log_stream"]
	info.SensorLogRetention = cols["sensor.log_retention_policy"] && cols["sensor.log_retention_limit"]
	return info, nil
}

// firstSearchPathSchema returns the first schema of a search_path setting as
// PostgreSQL resolves it: quoted names keep their case, bare names fold to
// lower case.
func firstSearchPathSchema(searchPath string) string {
	first, _, _ := strings.Cut(searchPath, ",")
	first = strings.TrimSpace(first)
	if len(first) >= 2 && first[0] == '"' && first[len(first)-1] == '"' {
		return strings.ReplaceAll(first[1:len(first)-1], `""`, `"`)
	}
	return strings.ToLower(first)
}
