package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// registryTestCaps is a realistic capabilities object for the row tests.
func registryTestCaps(t *testing.T, c heartbeatCounters) []byte {
	t.Helper()
	b, err := json.Marshal(buildCapabilities(capabilityInput{
		Interpreters:         []Interpreter{{Name: "python", Path: "/usr/bin/python3", Version: "3.12.1"}},
		MaxConcurrentSensors: 10,
		AgentMode:            "true",
		AgentBinaryName:      "attune-sensor-agent",
		AgentBinaryVersion:   "0.0.0-test",
		SensorVersion:        "0.0.0-test",
		Counters:             c,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// workerRow is the part of a worker row the tests look at.
type workerRow struct {
	ID            int64
	Type, Role    string
	Status        string
	Host          *string
	Caps          map[string]any
	LastHeartbeat time.Time
	Updated       time.Time
}

func readWorkerRow(t *testing.T, pool *pgxpool.Pool, name string) (workerRow, bool) {
	t.Helper()
	var r workerRow
	var caps []byte
	err := pool.QueryRow(t.Context(),
		`SELECT id, worker_type::text, worker_role::text, status::text, host, capabilities::text, COALESCE(last_heartbeat, 'epoch'), updated
		 FROM worker WHERE name = $1`, name).
		Scan(&r.ID, &r.Type, &r.Role, &r.Status, &r.Host, &caps, &r.LastHeartbeat, &r.Updated)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return r, false
		}
		t.Fatalf("read worker %s: %v", name, err)
	}
	if caps == nil {
		return r, true // capabilities NULL (rows created by other services)
	}
	if err := json.Unmarshal(caps, &r.Caps); err != nil {
		t.Fatalf("capabilities of %s are not JSON: %v", name, err)
	}
	return r, true
}

func jsonObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPgRegistryRows(t *testing.T) {
	for _, gen := range schemaGenerations {
		t.Run(gen, func(t *testing.T) {
			pool := openTestPool(t, gen)
			reg := newPgRegistry(pool)
			ctx := t.Context()
			caps := registryTestCaps(t, heartbeatCounters{})

			id, err := reg.register(ctx, "sensor-a", "host-a", caps)
			if err != nil {
				t.Fatalf("register: %v", err)
			}
			row, ok := readWorkerRow(t, pool, "sensor-a")
			if !ok || row.ID != id {
				t.Fatalf("row not created with id %d: %+v", id, row)
			}
			if row.Type != "local" || row.Role != "sensor" || row.Status != "active" || row.Host == nil || *row.Host != "host-a" {
				t.Errorf("new row: want local/sensor/active@host-a, got %s/%s/%s@%v", row.Type, row.Role, row.Status, row.Host)
			}
			if !reflect.DeepEqual(row.Caps, jsonObject(t, caps)) {
				t.Errorf("capabilities:\n want %s\n  got %v", caps, row.Caps)
			}
			if time.Since(row.LastHeartbeat) > time.Minute {
				t.Errorf("last_heartbeat not set at registration: %v", row.LastHeartbeat)
			}

			// Heartbeat moves last_heartbeat.
			if _, err := pool.Exec(ctx, "UPDATE worker SET last_heartbeat = now() - interval '1 hour', status = 'error' WHERE id = $1", id); err != nil {
				t.Fatal(err)
			}
			if err := reg.beat(ctx, id); err != nil {
				t.Fatalf("beat: %v", err)
			}
			row, _ = readWorkerRow(t, pool, "sensor-a")
			if time.Since(row.LastHeartbeat) > time.Minute || row.Status != "active" {
				t.Errorf("after beat: last_heartbeat %v status %s", row.LastHeartbeat, row.Status)
			}

			// Capabilities rewrite.
			caps2 := registryTestCaps(t, heartbeatCounters{Monitored: 1, Running: 1, ActiveRules: 2})
			if err := reg.updateCapabilities(ctx, id, caps2); err != nil {
				t.Fatalf("updateCapabilities: %v", err)
			}
			row, _ = readWorkerRow(t, pool, "sensor-a")
			if !reflect.DeepEqual(row.Caps, jsonObject(t, caps2)) {
				t.Errorf("capabilities after update:\n want %s\n  got %v", caps2, row.Caps)
			}

			// Deregistration.
			if err := reg.deregister(ctx, id); err != nil {
				t.Fatalf("deregister: %v", err)
			}
			if row, _ = readWorkerRow(t, pool, "sensor-a"); row.Status != "inactive" {
				t.Errorf("after deregister: status %s, want inactive", row.Status)
			}

			// Re-registration reuses the row and reactivates it.
			again, err := reg.register(ctx, "sensor-a", "host-b", caps)
			if err != nil {
				t.Fatalf("register again: %v", err)
			}
			if again != id {
				t.Errorf("re-register: want id %d reused, got %d", id, again)
			}
			row, _ = readWorkerRow(t, pool, "sensor-a")
			if row.Status != "active" || *row.Host != "host-b" || !reflect.DeepEqual(row.Caps, jsonObject(t, caps)) {
				t.Errorf("after re-register: status %s host %v caps %v", row.Status, *row.Host, row.Caps)
			}
			var n int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM worker").Scan(&n); err != nil || n != 1 {
				t.Errorf("worker rows: want 1, got %d (%v)", n, err)
			}

			// Empty host is NULL, as the reference binds an absent host.
			if _, err := reg.register(ctx, "sensor-nohost", "", caps); err != nil {
				t.Fatal(err)
			}
			if row, _ := readWorkerRow(t, pool, "sensor-nohost"); row.Host != nil {
				t.Errorf("empty host stored as %q, want NULL", *row.Host)
			}

			// A purged row.
			if _, err := pool.Exec(ctx, "DELETE FROM worker WHERE id = $1", id); err != nil {
				t.Fatal(err)
			}
			if err := reg.beat(ctx, id); !errors.Is(err, ErrWorkerGone) {
				t.Errorf("beat on purged row: want ErrWorkerGone, got %v", err)
			}
			if err := reg.updateCapabilities(ctx, id, caps); !errors.Is(err, ErrWorkerGone) {
				t.Errorf("updateCapabilities on purged row: want ErrWorkerGone, got %v", err)
			}
			if err := reg.deregister(ctx, id); err != nil {
				t.Errorf("deregister on purged row: want nil, got %v", err)
			}
		})
	}
}

func TestPgRegistryRoleClash(t *testing.T) {
	roles := map[string][]string{"legacy": {"action", "hybrid"}, "current": {"action"}}
	for _, gen := range schemaGenerations {
		for _, role := range roles[gen] {
			t.Run(gen+"/"+role, func(t *testing.T) {
				pool := openTestPool(t, gen)
				var holder int64
				if err := pool.QueryRow(t.Context(),
					`INSERT INTO worker (name, worker_type, worker_role, status) VALUES ('shared-name', 'local', $1::text::worker_role_enum, 'active') RETURNING id`,
					role).Scan(&holder); err != nil {
					t.Fatal(err)
				}
				_, err := newPgRegistry(pool).register(t.Context(), "shared-name", "h", registryTestCaps(t, heartbeatCounters{}))
				if !errors.Is(err, ErrWorkerRoleClash) {
					t.Fatalf("want ErrWorkerRoleClash, got %v", err)
				}
				for _, part := range []string{`"shared-name"`, "role " + role, "sensor.worker_name"} {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("error %q does not mention %s", err, part)
					}
				}
				row, _ := readWorkerRow(t, pool, "shared-name")
				if row.Role != role || row.ID != holder {
					t.Errorf("the %s worker row was touched: %+v", role, row)
				}
			})
		}
	}
}

func TestPgRegistryConcurrentRegistration(t *testing.T) {
	pool := openTestPool(t, "current")
	reg := newPgRegistry(pool)
	caps := registryTestCaps(t, heartbeatCounters{})
	const agents = 8
	ids := make([]int64, agents)
	errs := make([]error, agents)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range agents {
		wg.Go(func() {
			<-start
			ids[i], errs[i] = reg.register(t.Context(), "sensor-race", "h", caps)
		})
	}
	close(start)
	wg.Wait()
	for i := range agents {
		if errs[i] != nil {
			t.Errorf("agent %d: %v", i, errs[i])
		} else if ids[i] != ids[0] {
			t.Errorf("agent %d got id %d, agent 0 got %d", i, ids[i], ids[0])
		}
	}
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM worker WHERE name = 'sensor-race'").Scan(&n); err != nil || n != 1 {
		t.Errorf("rows named sensor-race: want 1, got %d (%v)", n, err)
	}
}

// TestHeartbeaterOnDatabase runs the real loop against the real row:
// capabilities are rewritten only when a counter changes (a tampered
// capabilities value survives beats with unchanged counters), and a row
// deleted mid-run is created again under a new id.
func TestHeartbeaterOnDatabase(t *testing.T) {
	for _, gen := range schemaGenerations {
		t.Run(gen, func(t *testing.T) {
			pool := openTestPool(t, gen)
			reg := newPgRegistry(pool)
			in := capabilityInput{SensorVersion: "0.0.0-test", MaxConcurrentSensors: 10}
			caps, _ := json.Marshal(buildCapabilities(in))
			id, err := reg.register(t.Context(), "sensor-hb", "host-hb", caps)
			if err != nil {
				t.Fatal(err)
			}
			var counters atomic.Pointer[heartbeatCounters]
			counters.Store(&heartbeatCounters{})
			var beats heartbeatBeats
			var newIDs atomic.Int64
			h := newHeartbeater(reg, slog.New(slog.DiscardHandler), id, heartbeatOptions{
				Interval:     20 * time.Millisecond,
				WorkerName:   "sensor-hb",
				Host:         "host-hb",
				Capabilities: in,
				Counters:     func() heartbeatCounters { return *counters.Load() },
				OnBeat:       beats.record,
				OnRegistered: func(id int64) { newIDs.Store(id) },
			})
			if _, err := pool.Exec(t.Context(), `UPDATE worker SET capabilities = '{"tampered": true}', last_heartbeat = now() - interval '1 hour' WHERE id = $1`, id); err != nil {
				t.Fatal(err)
			}
			startHeartbeater(t, h)

			waitHeartbeatCond(t, "beats with unchanged counters", func() bool {
				row, _ := readWorkerRow(t, pool, "sensor-hb")
				return beats.count() >= 3 && time.Since(row.LastHeartbeat) < time.Minute
			})
			row, _ := readWorkerRow(t, pool, "sensor-hb")
			if row.Caps["tampered"] != true {
				t.Errorf("capabilities rewritten although no counter changed: %v", row.Caps)
			}

			counters.Store(&heartbeatCounters{Monitored: 4, Running: 3, ActiveRules: 6})
			waitHeartbeatCond(t, "capabilities with the new counters", func() bool {
				row, _ := readWorkerRow(t, pool, "sensor-hb")
				return row.Caps["active_rules"] == float64(6)
			})
			row, _ = readWorkerRow(t, pool, "sensor-hb")
			if row.Caps["sensor_processes_monitored"] != float64(4) || row.Caps["sensor_processes_running"] != float64(3) || row.Caps["tampered"] != nil {
				t.Errorf("capabilities after counter change: %v", row.Caps)
			}

			if _, err := pool.Exec(t.Context(), "DELETE FROM worker WHERE id = $1", id); err != nil {
				t.Fatal(err)
			}
			waitHeartbeatCond(t, "the row registered again", func() bool { return newIDs.Load() != 0 })
			row, ok := readWorkerRow(t, pool, "sensor-hb")
			if !ok || row.ID == id || row.ID != newIDs.Load() || h.workerID() != row.ID {
				t.Fatalf("re-registration: old id %d, row %+v, callback %d, heartbeater %d", id, row, newIDs.Load(), h.workerID())
			}
			if row.Status != "active" || row.Role != "sensor" || row.Caps["active_rules"] != float64(6) {
				t.Errorf("re-created row: %+v", row)
			}
		})
	}
}

// TestPgRegistryCallsAreBounded checks that a registry call on a stalled
// server returns instead of hanging: a held row lock makes the UPDATE wait,
// and the caller's deadline ends it.
func TestPgRegistryCallsAreBounded(t *testing.T) {
	pool := openTestPool(t, "legacy")
	reg := newPgRegistry(pool)
	id, err := reg.register(t.Context(), "sensor-locked", "h", registryTestCaps(t, heartbeatCounters{}))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), "SELECT 1 FROM worker WHERE id = $1 FOR UPDATE", id); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = reg.beat(ctx, id)
	if err == nil || errors.Is(err, ErrWorkerGone) {
		t.Errorf("beat on a locked row: want a timeout error, got %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("beat blocked %v past its deadline", elapsed)
	}
}
