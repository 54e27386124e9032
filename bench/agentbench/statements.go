package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Ways of counting the agent's statements.
const (
	// methodStatements counts every statement by its text, exactly
	// (pg_stat_statements, which needs shared_preload_libraries).
	methodStatements = "pg_stat_statements"
	// methodDatabase falls back to the database's transaction counter
	// (pg_stat_database; every autocommit statement is one transaction),
	// with passes estimated from the 2 s period.
	methodDatabase = "pg_stat_database"
)

// statementCounter reads, from the server's statistics, what one agent's
// database received during an idle window.
type statementCounter struct {
	admin  *pgx.Conn
	method string
	xact0  int64
}

// newStatementCounter connects to the admin database and picks the method:
// pg_stat_statements when the server preloads it (the extension is then
// created in the admin database, which is the private server's own), else
// pg_stat_database. A shared server that does not preload it is left as is.
func newStatementCounter(ctx context.Context, adminURL string) (*statementCounter, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	c := &statementCounter{admin: conn, method: methodDatabase}
	var preload string
	if err := conn.QueryRow(ctx, "SHOW shared_preload_libraries").Scan(&preload); err == nil &&
		strings.Contains(preload, "pg_stat_statements") {
		if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err == nil {
			c.method = methodStatements
		}
	}
	return c, nil
}

func (c *statementCounter) close() { c.admin.Close(context.Background()) }

// reset starts a window for database db.
func (c *statementCounter) reset(ctx context.Context, db string) error {
	if c.method == methodStatements {
		if _, err := c.admin.Exec(ctx, `SELECT pg_stat_statements_reset(0, d.oid, 0) FROM pg_database d WHERE d.datname = $1`, db); err != nil {
			return fmt.Errorf("reset pg_stat_statements: %w", err)
		}
	}
	return c.admin.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1`, db).Scan(&c.xact0)
}

// windowCounts is what the database saw in one window.
type windowCounts struct {
	passes        int64 // reconcile passes (calls of the sensors query)
	reconcile     int64 // statements other than the heartbeat's
	reconcileRows int64 // rows those returned or touched
	heartbeats    int64 // UPDATE worker statements
	others        int64 // statements that are neither the three reconcile queries nor the heartbeat
	xacts         int64 // transactions (pg_stat_database; may lag up to 10 s)
	listing       string
}

// read returns the counts since reset.
func (c *statementCounter) read(ctx context.Context, db string, elapsed time.Duration) (windowCounts, error) {
	var w windowCounts
	var x1 int64
	if err := c.admin.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1`, db).Scan(&x1); err != nil {
		return w, fmt.Errorf("read pg_stat_database: %w", err)
	}
	w.xacts = x1 - c.xact0
	if c.method != methodStatements {
		// Estimates: one pass every 2 s, one heartbeat every 30 s.
		w.passes = int64(elapsed / (2 * time.Second))
		w.heartbeats = int64(elapsed / (30 * time.Second))
		w.reconcile = w.xacts - w.heartbeats
		w.listing = "pg_stat_statements not preloaded: counts estimated from pg_stat_database\n"
		return w, nil
	}
	rows, err := c.admin.Query(ctx, `SELECT s.calls, s.rows, s.query FROM pg_stat_statements s
JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 ORDER BY s.calls DESC, s.query`, db)
	if err != nil {
		return w, fmt.Errorf("read pg_stat_statements: %w", err)
	}
	defer rows.Close()
	var b strings.Builder
	b.WriteString("calls\trows\tkind\tquery\n")
	for rows.Next() {
		var calls, nrows int64
		var query string
		if err := rows.Scan(&calls, &nrows, &query); err != nil {
			return w, err
		}
		kind := classifyAgentStatement(query)
		switch kind {
		case "heartbeat":
			w.heartbeats += calls
		default:
			w.reconcile += calls
			w.reconcileRows += nrows
			if kind == "other" {
				w.others += calls
			}
		}
		if kind == "reconcile-sensors" {
			w.passes += calls
		}
		fmt.Fprintf(&b, "%d\t%d\t%s\t%s\n", calls, nrows, kind, oneLine(query, 140))
	}
	w.listing = b.String()
	return w, rows.Err()
}

// classifyAgentStatement names an agent statement by its text: the three
// reconcile queries of sensors.go, the heartbeat's UPDATE worker, or other.
func classifyAgentStatement(q string) string {
	s := strings.Join(strings.Fields(q), " ")
	switch {
	case strings.Contains(s, "FROM sensor s JOIN runtime rt"):
		return "reconcile-sensors"
	case strings.Contains(s, "FROM trigger t LEFT JOIN rule r"):
		return "reconcile-rules"
	case strings.Contains(s, "FROM runtime_version"):
		return "reconcile-versions"
	case strings.HasPrefix(s, "UPDATE worker"):
		return "heartbeat"
	}
	return "other"
}

// oneLine collapses whitespace and cuts s to at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
