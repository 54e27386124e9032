package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Benchmark item 7 (docs/benchmarks.md): what one heartbeat costs the
// database. bench/run.sh runs TestHeartbeatCost with
// ATTUNE_BENCH_HEARTBEAT_N (beats per scenario) and ATTUNE_BENCH_HEARTBEAT_OUT
// (where the numbers go); plain `go test` runs a few beats and still checks
// the statement counts.
const (
	heartbeatCostNEnv   = "ATTUNE_BENCH_HEARTBEAT_N"
	heartbeatCostOutEnv = "ATTUNE_BENCH_HEARTBEAT_OUT"
)

// heartbeatWireMeter counts what the agent's pool says to PostgreSQL:
// statements through pgx's QueryTracer, and bytes and client writes through
// a counting net.Conn. pg_stat_statements cannot do it here (it needs
// shared_preload_libraries) and counts no bytes; pg_stat_activity counts
// neither. Client writes are round trips: pgx flushes each request (for a
// cached statement Bind, Describe, Execute and Sync) in one write and then
// waits.
type heartbeatWireMeter struct {
	statements atomic.Int64
	sent       atomic.Int64
	received   atomic.Int64
	writes     atomic.Int64
	// idleNext makes the next connection acquire look idle for longer than
	// pgxpool's ping threshold (1 s), as every heartbeat's first acquire is
	// in production (interval 30 s), without the test sleeping.
	idleNext atomic.Bool
}

var _ pgx.QueryTracer = (*heartbeatWireMeter)(nil)

// TraceQueryStart counts one statement sent by Exec, Query or QueryRow.
func (m *heartbeatWireMeter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	m.statements.Add(1)
	return ctx
}

// TraceQueryEnd is required by pgx.QueryTracer; nothing to count.
func (m *heartbeatWireMeter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// dial opens a connection whose traffic the meter counts.
func (m *heartbeatWireMeter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &heartbeatCountingConn{Conn: c, m: m}, nil
}

// shouldPing keeps pgxpool's default rule and adds the simulated idle gap.
func (m *heartbeatWireMeter) shouldPing(_ context.Context, p pgxpool.ShouldPingParams) bool {
	return m.idleNext.Swap(false) || p.IdleDuration > time.Second
}

// heartbeatCostSample is what one beat cost.
type heartbeatCostSample struct {
	statements, roundTrips, sent, received int64
}

// reset zeroes the counters before a beat.
func (m *heartbeatWireMeter) reset() {
	m.statements.Store(0)
	m.sent.Store(0)
	m.received.Store(0)
	m.writes.Store(0)
}

// sample reads the counters after a beat.
func (m *heartbeatWireMeter) sample() heartbeatCostSample {
	return heartbeatCostSample{m.statements.Load(), m.writes.Load(), m.sent.Load(), m.received.Load()}
}

// heartbeatCountingConn is a net.Conn that adds its traffic to a meter.
type heartbeatCountingConn struct {
	net.Conn
	m *heartbeatWireMeter
}

func (c *heartbeatCountingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.m.received.Add(int64(n))
	return n, err
}

func (c *heartbeatCountingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.m.sent.Add(int64(n))
	c.m.writes.Add(1)
	return n, err
}

// openMeteredAgentPool opens a pool configured exactly as openPool configures
// the agent's (configureAgentPool), plus the meter's tracer, dialer and ping
// rule.
func openMeteredAgentPool(t *testing.T, dbURL string, m *heartbeatWireMeter) *pgxpool.Pool {
	t.Helper()
	pc, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	configureAgentPool(pc, DatabaseConfig{}, "attune")
	pc.ConnConfig.Tracer = m
	pc.ConnConfig.DialFunc = m.dial
	pc.ShouldPing = m.shouldPing
	pool, err := pgxpool.NewWithConfig(t.Context(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestHeartbeatCost drives the real heartbeater against the real registry on
// a fresh database and measures each beat: with the counters unchanged it
// must be one statement (the last_heartbeat UPDATE), with a counter changed
// two (capabilities, then last_heartbeat), as CONTRACT §4 says. Each scenario
// runs back to back (connection just used) and after an idle gap (the pool
// first pings the connection, which is what production pays every 30 s).
func TestHeartbeatCost(t *testing.T) {
	n := 5
	if v := os.Getenv(heartbeatCostNEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive integer", heartbeatCostNEnv, v)
		}
	}
	var meter heartbeatWireMeter
	pool := openMeteredAgentPool(t, newTestDB(t, "current"), &meter)
	reg := newPgRegistry(pool)
	in := heartbeatCostCapabilities()
	caps, err := json.Marshal(buildCapabilities(in))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	id, err := reg.register(ctx, "sensor-bench-heartbeat", "bench-host", caps)
	if err != nil {
		t.Fatal(err)
	}
	cur := in.Counters
	h := newHeartbeater(reg, slog.New(slog.DiscardHandler), id, heartbeatOptions{
		Interval:     time.Hour, // never ticks by itself: the test calls tick
		WorkerName:   "sensor-bench-heartbeat",
		Host:         "bench-host",
		Capabilities: in,
		Counters:     func() heartbeatCounters { return cur },
	})
	beat := func(change, idle bool) heartbeatCostSample {
		t.Helper()
		if change {
			cur.ActiveRules++
			cur.Running = cur.ActiveRules % 7
		}
		meter.reset()
		meter.idleNext.Store(idle)
		if err := h.tick(ctx); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		if h.workerID() != id {
			t.Fatalf("heartbeat registered a new row (%d, was %d): the measurement would include a registration", h.workerID(), id)
		}
		return meter.sample()
	}
	// Warm up: the first use of each statement on a connection prepares it
	// (one more round trip); steady state is what every later beat costs.
	beat(false, false)
	beat(true, false)

	scenarios := []struct {
		name           string
		change, idle   bool
		wantStatements int64
	}{
		{"unchanged", false, false, 1},
		{"changed", true, false, 2},
		{"unchanged_idle", false, true, 1},
		{"changed_idle", true, true, 2},
	}
	var report strings.Builder
	fmt.Fprintf(&report, "capabilities_json\tbytes\t%d\t%d\t%d\n", len(caps), len(caps), len(caps))
	for _, sc := range scenarios {
		samples := make([]heartbeatCostSample, n)
		for i := range samples {
			samples[i] = beat(sc.change, sc.idle)
			if got := samples[i].statements; got != sc.wantStatements {
				t.Errorf("%s beat %d: %d statements, want %d", sc.name, i, got, sc.wantStatements)
			}
			if samples[i].sent == 0 || samples[i].received == 0 {
				t.Errorf("%s beat %d: no traffic counted (%+v): the meter is not on the pool's connections", sc.name, i, samples[i])
			}
		}
		for _, metric := range []struct {
			name string
			get  func(heartbeatCostSample) int64
		}{
			{"statements", func(s heartbeatCostSample) int64 { return s.statements }},
			{"round_trips", func(s heartbeatCostSample) int64 { return s.roundTrips }},
			{"bytes_sent", func(s heartbeatCostSample) int64 { return s.sent }},
			{"bytes_received", func(s heartbeatCostSample) int64 { return s.received }},
		} {
			med, lo, hi := heartbeatCostSummary(samples, metric.get)
			fmt.Fprintf(&report, "%s\t%s\t%s\t%d\t%d\n", sc.name, metric.name, strconv.FormatFloat(med, 'f', -1, 64), lo, hi)
		}
	}
	t.Logf("heartbeat cost over %d beats per scenario (scenario, metric, median, min, max):\n%s", n, report.String())
	if path := os.Getenv(heartbeatCostOutEnv); path != "" {
		if err := os.WriteFile(path, []byte(report.String()), 0o644); err != nil {
			t.Fatalf("write %s: %v", heartbeatCostOutEnv, err)
		}
	}
}

// heartbeatCostCapabilities is a production-shaped capabilities input: the
// four interpreters of a typical image, the agent-mode keys, default limits.
func heartbeatCostCapabilities() capabilityInput {
	return capabilityInput{
		Interpreters: []Interpreter{
			{Name: "shell", Path: "/bin/bash", Version: "5.2.15"},
			{Name: "python", Path: "/usr/bin/python3", Version: "3.11.2"},
			{Name: "node", Path: "/usr/bin/node", Version: "18.19.0"},
			{Name: "perl", Path: "/usr/bin/perl", Version: "5.36.0"},
		},
		MaxConcurrentSensors: 10,
		AgentMode:            "true",
		AgentBinaryName:      "attune-sensor-agent",
		AgentBinaryVersion:   "1.0.0",
		SensorVersion:        "1.0.0",
		Counters:             heartbeatCounters{Monitored: 3, Running: 3, ActiveRules: 5},
	}
}

// heartbeatCostSummary returns the median (mean of the middle two for an
// even count), minimum and maximum of one metric over the samples.
func heartbeatCostSummary(samples []heartbeatCostSample, get func(heartbeatCostSample) int64) (float64, int64, int64) {
	v := make([]int64, len(samples))
	for i, s := range samples {
		v[i] = get(s)
	}
	slices.Sort(v)
	mid := len(v) / 2
	med := float64(v[mid])
	if len(v)%2 == 0 {
		med = float64(v[mid-1]+v[mid]) / 2
	}
	return med, v[0], v[len(v)-1]
}
