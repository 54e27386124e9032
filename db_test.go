package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaGenerations are the fixtures every database test runs on.
var schemaGenerations = []string{"legacy", "current"}

// openTestPool opens the agent's own pool on a fresh database of generation gen.
func openTestPool(t *testing.T, gen string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	pool, err := openPool(ctx, DatabaseConfig{
		URL:            newTestDB(t, gen),
		MaxConnections: 50,
		MinConnections: 5,
		ConnectTimeout: 10 * time.Second,
		IdleTimeout:    600 * time.Second,
		Schema:         "attune",
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("openPool: %v", err)
	}
	t.Cleanup(pool.Close) // registered after newTestDB's drop, so it runs first
	return pool
}

func TestOpenPoolSessionSettings(t *testing.T) {
	for _, gen := range schemaGenerations {
		t.Run(gen, func(t *testing.T) {
			pool := openTestPool(t, gen)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if got := pool.Config().MaxConns; got != dbMaxPoolConns {
				t.Errorf("MaxConns: want %d (capped), got %d", dbMaxPoolConns, got)
			}
			for _, tc := range []struct{ setting, want string }{
				{"search_path", "attune, public"},
				{"application_name", "attune:attune"},
				{"statement_timeout", "30s"},
			} {
				var got string
				if err := pool.QueryRow(ctx, "SHOW "+tc.setting).Scan(&got); err != nil {
					t.Fatalf("SHOW %s: %v", tc.setting, err)
				}
				if got != tc.want {
					t.Errorf("%s: want %q, got %q", tc.setting, tc.want, got)
				}
			}
			var app string
			if err := pool.QueryRow(ctx, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&app); err != nil {
				t.Fatalf("pg_stat_activity: %v", err)
			}
			if app != "attune:attune" {
				t.Errorf("pg_stat_activity.application_name: want attune:attune, got %q", app)
			}
			// Unqualified names resolve in the attune schema.
			var n int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM worker").Scan(&n); err != nil {
				t.Errorf("unqualified worker table: %v", err)
			}
		})
	}
}

func TestOpenPoolUnreachableDatabase(t *testing.T) {
	var logs heartbeatLogBuffer
	const password = "s3cr3t-pw"
	closed := closedTestAddr(t)
	cfg := DatabaseConfig{
		URL:            "postgres://agent:" + password + "@" + closed + "/attune?sslmode=disable&password=" + password,
		MaxConnections: 5,
		ConnectTimeout: 1500 * time.Millisecond,
		Schema:         "attune",
	}
	start := time.Now()
	pool, err := openPool(t.Context(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	elapsed := time.Since(start)
	if err == nil {
		pool.Close()
		t.Fatalf("openPool succeeded against %s, where nothing listens", closed)
	}
	if !errors.Is(err, ErrDatabaseUnavailable) {
		t.Errorf("error does not wrap ErrDatabaseUnavailable: %v", err)
	}
	if elapsed < 1400*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("gave up after %v, want about the 1.5 s connect timeout", elapsed)
	}
	if strings.Contains(err.Error(), password) || strings.Contains(logs.String(), password) {
		t.Errorf("password leaked:\nerror: %v\nlogs: %s", err, logs.String())
	}
	if !strings.Contains(err.Error(), "postgres://"+closed+"/attune") {
		t.Errorf("error does not name the redacted URL: %v", err)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "retrying") {
		t.Errorf("want exactly one retry line, got %d lines:\n%s", n, logs.String())
	}
	t.Logf("measured: gave up after %v; error: %v", elapsed.Round(10*time.Millisecond), err)
}

func TestOpenPoolStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := openPool(ctx, DatabaseConfig{URL: "postgres://" + closedTestAddr(t) + "/attune", ConnectTimeout: time.Minute}, slog.New(slog.DiscardHandler))
	if err == nil || errors.Is(err, ErrDatabaseUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want the context's error, got %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("kept retrying %v after ctx ended", elapsed)
	}
}

func TestOpenPoolRejectsBadURLWithoutEchoingIt(t *testing.T) {
	_, err := openPool(t.Context(), DatabaseConfig{URL: "postgres://u:p%zzsecret@h:notaport/db"}, slog.New(slog.DiscardHandler))
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("want ErrConfig, got %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error echoes the password: %v", err)
	}
}

func TestRedactDatabaseURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgresql://postgres:postgres@localhost:5432/attune", "postgresql://localhost:5432/attune"},
		{"postgres://u:p@db/attune?sslmode=disable&password=x", "postgres://db/attune"},
		{"postgres://db/attune#frag", "postgres://db/attune"},
		{"postgres://u:p@h1:5432,h2:5433/attune", "postgres://h1:5432,h2:5433/attune"},
		{"postgres://u:pa@ss/w?rd@h/attune", "postgres://h/attune"},
		{"postgres://u:pa?ss@h/attune", "postgres://h/attune"},
		{"POSTGRES://u:p@h/attune", "POSTGRES://h/attune"},
		{"host=db port=5432 user=u password=secret dbname=attune", "host=db port=5432 dbname=attune"},
		{"password='se cret' host=db", "host=db"},
		{"user=u password=secret", "(connection string)"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := redactDatabaseURL(tc.in); got != tc.want {
				t.Errorf("redactDatabaseURL(%q): want %q, got %q", tc.in, tc.want, got)
			}
		})
	}
}

func TestDetectSchema(t *testing.T) {
	want := map[string]schemaInfo{
		"legacy": {Schema: "attune"},
		"current": {Schema: "attune",
			SensorEffectiveEnabled: true, TriggerEffectiveEnabled: true, RuleEffectiveEnabled: true,
			SensorRetiredAt: true, TriggerRetiredAt: true, RuleRetiredAt: true, RuntimeRetiredAt: true,
			PackActiveRelease: true, PackWorkerSelector: true, SensorWorkerSelector: true,
			PackPlacement: true, SensorPlacement: true, RuleSensorPlacement: true,
			SensorProcess: true, SensorWorkload: true, SensorWorkloadAssignment: true, PackRelease: true,
			LogStream: true, SensorLogRetention: true},
	}
	for _, gen := range schemaGenerations {
		t.Run(gen, func(t *testing.T) {
			pool := openTestPool(t, gen)
			got, err := detectSchema(t.Context(), pool)
			if err != nil {
				t.Fatalf("detectSchema: %v", err)
			}
			if got != want[gen] {
				t.Errorf("schema info:\n want %+v\n  got %+v", want[gen], got)
			}
			if got.generation() != gen {
				t.Errorf("generation: want %s, got %s", gen, got.generation())
			}
			wantEnabled := map[string]string{"legacy": "enabled", "current": "effective_enabled"}[gen]
			for _, table := range []string{"sensor", "trigger", "rule"} {
				if c := got.enabledColumn(table); c != wantEnabled {
					t.Errorf("enabledColumn(%s): want %s, got %s", table, wantEnabled, c)
				}
				if got.hasRetiredAt(table) != (gen == "current") {
					t.Errorf("hasRetiredAt(%s) = %v on %s", table, got.hasRetiredAt(table), gen)
				}
			}
		})
	}
}

func TestDetectSchemaWithoutWorkerTable(t *testing.T) {
	t.Run("worker table dropped", func(t *testing.T) {
		pool := openTestPool(t, "legacy")
		if _, err := pool.Exec(t.Context(), "DROP TABLE worker CASCADE"); err != nil {
			t.Fatal(err)
		}
		_, err := detectSchema(t.Context(), pool)
		if err == nil || err.Error() != "schema attune has no worker table: is this an Attune database?" {
			t.Errorf("want the not-an-Attune-database error, got %v", err)
		}
	})
	t.Run("configured schema absent", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		pool, err := openPool(ctx, DatabaseConfig{URL: newTestDB(t, "current"), ConnectTimeout: 10 * time.Second, Schema: "Elsewhere"},
			slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		_, err = detectSchema(ctx, pool)
		if err == nil || !strings.HasPrefix(err.Error(), "schema elsewhere has no worker table") {
			t.Errorf("want the not-an-Attune-database error naming schema elsewhere, got %v", err)
		}
	})
}

func TestFirstSearchPathSchema(t *testing.T) {
	for in, want := range map[string]string{
		"attune, public":          "attune",
		"Attune, public":          "attune",
		`"Mixed""Case", public`:   `Mixed"Case`,
		" attune_test_01 ,public": "attune_test_01",
		"":                        "",
	} {
		if got := firstSearchPathSchema(in); got != want {
			t.Errorf("firstSearchPathSchema(%q): want %q, got %q", in, want, got)
		}
	}
}
