package main

// lease_test.go proves the lease statements of lease.go against real
// PostgreSQL on the current fixture: lifecycle and generations, every
// refusal, a foreign (Rust-written) lease respected until it expires, the
// re-pin on a sensor change, and renewal cost constant in the lease count.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// leaseFixture is a current-generation database with a pack release, one
// python runtime and helpers to add leased-ready sensors and workers.
type leaseFixture struct {
	t       *testing.T
	db      *seedDB
	pool    *pgxpool.Pool // the agent side's pool (counts queries)
	queries *sensorQueryCounter
	schema  schemaInfo
	packID  int64
	rtID    int64
	release packRelease
}

func newLeaseFixture(t *testing.T) *leaseFixture {
	t.Helper()
	dbURL := newTestDB(t, "current")
	f := &leaseFixture{t: t, db: newSeedDB(t, dbURL), queries: &sensorQueryCounter{}}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = "attune, public"
	cfg.ConnConfig.Tracer = f.queries
	if f.pool, err = pgxpool.NewWithConfig(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.pool.Close)
	if f.schema, err = detectSchema(t.Context(), f.pool); err != nil || !f.schema.leases() {
		t.Fatalf("current fixture without lease tables (%v): %+v", err, f.schema)
	}
	f.packID = f.db.pack("lp")
	f.rtID = f.db.runtime("core.python", "Python", `{"interpreter": {"binary": "python3"}}`)
	f.release = f.publish("1.0.0", "aa")
	return f
}

// publish inserts a release row (digest from a fill byte) and activates it.
func (f *leaseFixture) publish(version, fill string) packRelease {
	digest := ""
	for len(digest) < 64 {
		digest += fill
	}
	id := f.db.id(`INSERT INTO pack_release (pack, pack_ref, version, digest, content_path, archive_size, manifest)
VALUES ($1, 'lp', $2, $3, 'x', 0, '{}'::jsonb) RETURNING id`, f.packID, version, digest)
	f.db.exec(`UPDATE pack SET active_release = $1 WHERE id = $2`, id, f.packID)
	return packRelease{ID: id, Digest: digest}
}

// sensor adds lp.<name> with an enabled trigger and rule.
func (f *leaseFixture) sensor(name string) sensorSpec {
	id := f.db.sensor(f.packID, "lp", "lp."+name, name+".py", f.rtID, "")
	trig := f.db.trigger(f.packID, "lp", "lp."+name+"_trigger", id)
	f.db.rule(f.packID, "lp", "lp."+name+"_rule", trig, `{}`, true)
	return sensorSpec{ID: id, Ref: "lp." + name, PackRef: "lp"}
}

// worker registers a live sensor worker with max_concurrent_sensors = max
// and returns the lease side of one agent process on it.
func (f *leaseFixture) worker(name string, max int) *pgLeases {
	caps := fmt.Sprintf(`{"max_concurrent_sensors": %d, "runtimes": ["python", "native"]}`, max)
	id := f.db.id(`INSERT INTO worker (name, worker_type, worker_role, status, capabilities, last_heartbeat)
VALUES ($1, 'local', 'sensor', 'active', $2::jsonb, now()) RETURNING id`, name, caps)
	instance := newUUIDv4()
	return &pgLeases{pool: f.pool, schema: f.schema, timing: defaultLeaseTiming(),
		placement: workerPlacement{Runtimes: []string{"python", "native"}},
		identity:  func() (int64, string) { return id, instance }}
}

// assignment reads one sensor's assignment row.
func (f *leaseFixture) assignment(sensorID int64) (worker *int64, gen int64, leftSec float64) {
	f.t.Helper()
	err := f.db.pool.QueryRow(f.t.Context(), `SELECT a.worker, a.generation,
	COALESCE(EXTRACT(EPOCH FROM a.lease_expires_at - clock_timestamp()), 0)::float8
FROM sensor_workload_assignment a JOIN sensor_workload w ON w.id = a.workload WHERE w.sensor = $1`, sensorID).Scan(&worker, &gen, &leftSec)
	if err != nil {
		f.t.Fatalf("read assignment of sensor %d: %v", sensorID, err)
	}
	return worker, gen, leftSec
}

// checkOwnerColumns fails when any assignment row has its five owner
// columns neither all set nor all NULL.
func (f *leaseFixture) checkOwnerColumns() {
	f.t.Helper()
	checkAssignmentRows(f.t, f.db, false)
}

func TestLeaseLifecycle(t *testing.T) {
	requireServices(t)
	f := newLeaseFixture(t)
	sp := f.sensor("one")
	w := f.worker("sensor-a", 10)
	ctx := t.Context()

	got, err := w.acquire(ctx, sp)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	wid, inst := w.identity()
	if got.fence.Generation != 1 || got.fence.WorkerID != wid || got.fence.WorkerInstance != inst {
		t.Errorf("fence %+v, want generation 1 of worker %d instance %s", got.fence, wid, inst)
	}
	if got.spec.Fence == nil || *got.spec.Fence != got.fence {
		t.Errorf("launch spec fence %+v, want %+v", got.spec.Fence, got.fence)
	}
	if got.spec.Release == nil || *got.spec.Release != f.release || got.spec.Entrypoint != "one.py" {
		t.Errorf("launch spec from snapshot: release %+v entrypoint %q, want %+v one.py", got.spec.Release, got.spec.Entrypoint, f.release)
	}
	owner, gen, left := f.assignment(sp.ID)
	if owner == nil || *owner != wid || gen != 1 || left < 890 || left > 901 {
		t.Errorf("after acquire: owner %v gen %d lease %.0f s, want %d, 1, ~900 s", owner, gen, left, wid)
	}
	kept, err := w.renew(ctx, []renewal{{sensorID: sp.ID, fence: got.fence}})
	if err != nil || !kept[got.fence.WorkloadID] {
		t.Fatalf("renew: kept %v, %v", kept, err)
	}
	if _, _, left = f.assignment(sp.ID); left < 110 || left > 121 {
		t.Errorf("after renew: lease %.0f s, want ~120 s", left)
	}
	if err := w.release(ctx, got.fence); err != nil {
		t.Fatal(err)
	}
	if owner, gen, _ = f.assignment(sp.ID); owner != nil || gen != 1 {
		t.Errorf("after release: owner %v gen %d, want NULL and the generation kept", owner, gen)
	}
	f.checkOwnerColumns()
	// A released fence renews nothing; the next start has a higher generation.
	if kept, err = w.renew(ctx, []renewal{{sensorID: sp.ID, fence: got.fence}}); err != nil || len(kept) != 0 {
		t.Errorf("renew of a released lease kept %v (%v)", kept, err)
	}
	again, err := w.acquire(ctx, sp)
	if err != nil || again.fence.Generation != 2 {
		t.Fatalf("second acquire: %+v, %v; want generation 2", again.fence, err)
	}
	// An old fence can release nothing.
	if err := w.release(ctx, got.fence); err != nil {
		t.Fatal(err)
	}
	if owner, _, _ = f.assignment(sp.ID); owner == nil {
		t.Error("a stale fence released the current lease")
	}
	f.checkOwnerColumns()
}

func TestLeaseAcquireRefusals(t *testing.T) {
	requireServices(t)
	f := newLeaseFixture(t)
	ctx := t.Context()
	a, b := f.worker("sensor-a", 1), f.worker("sensor-b", 10)
	one, two := f.sensor("one"), f.sensor("two")

	if _, err := a.acquire(ctx, one); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	if _, err := b.acquire(ctx, one); !errors.Is(err, ErrLeaseHeld) {
		t.Errorf("second worker: %v, want ErrLeaseHeld", err)
	}
	if _, err := a.acquire(ctx, two); !errors.Is(err, ErrLeaseCapacity) {
		t.Errorf("worker at max_concurrent_sensors 1: %v, want ErrLeaseCapacity", err)
	}
	// The same process re-acquiring its own lease is not over capacity.
	if _, err := a.acquire(ctx, one); err != nil {
		t.Errorf("re-acquire own lease: %v", err)
	}
	bid, _ := b.identity()
	f.db.exec(`UPDATE worker SET cordoned = true WHERE id = $1`, bid)
	if _, err := b.acquire(ctx, two); !errors.Is(err, ErrLeaseIneligible) {
		t.Errorf("cordoned worker: %v, want ErrLeaseIneligible", err)
	}
	f.db.exec(`UPDATE worker SET cordoned = false, last_heartbeat = now() - interval '91 seconds' WHERE id = $1`, bid)
	if _, err := b.acquire(ctx, two); !errors.Is(err, ErrLeaseIneligible) {
		t.Errorf("stale heartbeat: %v, want ErrLeaseIneligible", err)
	}
	f.db.exec(`UPDATE worker SET last_heartbeat = now() WHERE id = $1`, bid)
	f.db.exec(`UPDATE sensor SET enabled_override = false WHERE id = $1`, two.ID)
	if _, err := b.acquire(ctx, two); !errors.Is(err, ErrLeaseIneligible) {
		t.Errorf("disabled sensor: %v, want ErrLeaseIneligible", err)
	}
	f.db.exec(`UPDATE sensor SET enabled_override = NULL WHERE id = $1`, two.ID)
	f.db.exec(`UPDATE rule SET enabled = false WHERE ref = 'lp.two_rule'`)
	if _, err := b.acquire(ctx, two); !errors.Is(err, ErrLeaseIneligible) {
		t.Errorf("sensor without an active rule: %v, want ErrLeaseIneligible", err)
	}
	f.db.exec(`UPDATE rule SET enabled = true WHERE ref = 'lp.two_rule'`)
	f.db.exec(`UPDATE runtime SET retired_at = now() WHERE id = $1`, f.rtID)
	if _, err := b.acquire(ctx, two); !errors.Is(err, ErrLeaseIneligible) {
		t.Errorf("retired runtime: %v, want ErrLeaseIneligible", err)
	}
	f.db.exec(`UPDATE runtime SET retired_at = NULL WHERE id = $1`, f.rtID)
	f.db.exec(`UPDATE pack SET active_release = NULL WHERE id = $1`, f.packID)
	if _, err := b.acquire(ctx, two); !errors.Is(err, ErrLeaseIneligible) && !errors.Is(err, ErrNoActiveRelease) {
		t.Errorf("no active release: %v, want a refusal", err)
	}
	f.db.exec(`UPDATE pack SET active_release = $1 WHERE id = $2`, f.release.ID, f.packID)
	if _, err := b.acquire(ctx, two); err != nil {
		t.Errorf("after every refusal was lifted: %v", err)
	}
	f.checkOwnerColumns()
}

// TestLeaseForeignExpiredIsTaken: a lease written as a Rust agent would is
// respected while it lasts and taken once it expired.
func TestLeaseForeignExpiredIsTaken(t *testing.T) {
	requireServices(t)
	f := newLeaseFixture(t)
	ctx := t.Context()
	sp := f.sensor("one")
	rust := f.db.id(`INSERT INTO worker (name, worker_type, worker_role, status, capabilities, last_heartbeat)
VALUES ('sensor-rust', 'local', 'sensor', 'active', '{"runtimes": ["python"]}', now()) RETURNING id`)
	w := f.worker("sensor-go", 10)
	wl := f.db.id(`INSERT INTO sensor_workload (sensor, workload_key, pack_release, pack_release_digest, executable_snapshot)
SELECT s.id, 'default', pr.id, pr.digest, `+snapshotSQL+` FROM sensor s JOIN pack p ON p.id = s.pack
JOIN pack_release pr ON pr.id = p.active_release JOIN runtime r ON r.id = s.runtime WHERE s.id = $1 RETURNING id`, sp.ID)
	f.db.exec(`INSERT INTO sensor_workload_assignment (workload, worker, worker_instance, generation, lease_expires_at, assigned_at, renewed_at)
VALUES ($1, $2, gen_random_uuid(), 7, now() + interval '1 hour', now() - interval '1 hour', now())`, wl, rust)
	if _, err := w.acquire(ctx, sp); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("live foreign lease: %v, want ErrLeaseHeld", err)
	}
	if owner, gen, _ := f.assignment(sp.ID); owner == nil || *owner != rust || gen != 7 {
		t.Fatalf("foreign lease changed by a refused acquire: owner %v gen %d", owner, gen)
	}
	f.db.exec(`UPDATE sensor_workload_assignment SET lease_expires_at = now() - interval '1 second' WHERE workload = $1`, wl)
	got, err := w.acquire(ctx, sp)
	if err != nil {
		t.Fatalf("expired foreign lease: %v", err)
	}
	if got.fence.Generation != 8 {
		t.Errorf("generation %d after taking over generation 7, want 8", got.fence.Generation)
	}
	var fresh bool
	f.db.pool.QueryRow(ctx, `SELECT assigned_at > now() - interval '1 minute' FROM sensor_workload_assignment WHERE workload = $1`, wl).Scan(&fresh)
	if !fresh {
		t.Error("assigned_at kept from the foreign owner")
	}
	f.checkOwnerColumns()
}

// TestLeaseRepin: a changed sensor row or a new active release re-pins the
// workload at the next acquire; a held lease is never re-pinned under its owner.
func TestLeaseRepin(t *testing.T) {
	requireServices(t)
	f := newLeaseFixture(t)
	ctx := t.Context()
	sp := f.sensor("one")
	w := f.worker("sensor-a", 10)
	got, err := w.acquire(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	w.release(ctx, got.fence)
	f.db.exec(`UPDATE sensor SET entrypoint = 'two.py' WHERE id = $1`, sp.ID)
	if got, err = w.acquire(ctx, sp); err != nil || got.spec.Entrypoint != "two.py" {
		t.Fatalf("after a sensor change: entrypoint %q (%v), want two.py", got.spec.Entrypoint, err)
	}
	w.release(ctx, got.fence)
	next := f.publish("2.0.0", "bb")
	if got, err = w.acquire(ctx, sp); err != nil || got.spec.Release == nil || *got.spec.Release != next {
		t.Fatalf("after a new active release: %+v (%v), want %+v", got.spec.Release, err, next)
	}
	var pinned int64
	f.db.pool.QueryRow(ctx, `SELECT pack_release FROM sensor_workload WHERE sensor = $1`, sp.ID).Scan(&pinned)
	if pinned != next.ID {
		t.Errorf("workload pins release %d, want %d", pinned, next.ID)
	}
}

// TestLeaseRenewalStatementsConstant: one renewal tick costs the same
// number of statements for 1, 10 and 60 held leases.
func TestLeaseRenewalStatementsConstant(t *testing.T) {
	requireServices(t)
	f := newLeaseFixture(t)
	ctx := t.Context()
	w := f.worker("sensor-a", 100)
	var held []renewal
	counts := map[int]int64{}
	for i := 1; i <= 60; i++ {
		sp := f.sensor(fmt.Sprintf("s%02d", i))
		got, err := w.acquire(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, renewal{sensorID: sp.ID, fence: got.fence})
		if i == 1 || i == 10 || i == 60 {
			before := f.queries.n.Load()
			kept, err := w.renew(ctx, held)
			if err != nil || len(kept) != i {
				t.Fatalf("renew %d: kept %d, %v", i, len(kept), err)
			}
			counts[i] = f.queries.n.Load() - before
		}
	}
	if counts[1] != counts[10] || counts[10] != counts[60] {
		t.Errorf("statements per renewal tick grow with the lease count: %v", counts)
	}
	t.Logf("statements per renewal tick: %v", counts)
}

// fakeLeaseStore is a hand-written leaseStore whose renewals fail on demand.
type fakeLeaseStore struct {
	fail chan bool
	ok   bool
}

func (s *fakeLeaseStore) renew(ctx context.Context, held []renewal) (map[int64]bool, error) {
	select {
	case v := <-s.fail:
		s.ok = !v
	default:
	}
	if !s.ok {
		return nil, errors.New("database unreachable")
	}
	kept := map[int64]bool{}
	for _, h := range held {
		kept[h.fence.WorkloadID] = true
	}
	return kept, nil
}

// TestLeaseRenewerSelfFences: while renewals fail, a lease is fenced off
// before it could lapse by the agent's own clock; while they work it is not.
func TestLeaseRenewerSelfFences(t *testing.T) {
	timing := leaseTiming{Start: 4 * time.Second, Renewal: 2 * time.Second, RenewEvery: 500 * time.Millisecond, StartWithin: 3 * time.Second}
	store := &fakeLeaseStore{fail: make(chan bool, 1), ok: true}
	r := newLeaseRenewer(store, timing, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.run(ctx)
	h := &heldLease{sensorID: 1, ref: "p.s", fence: workloadFence{WorkloadID: 9}, lost: make(chan struct{}),
		sentAt: time.Now(), length: timing.Start}
	r.add(h)
	r.shorten()
	select {
	case <-h.Lost():
		t.Fatalf("lease lost while renewals work: %s", h.reason)
	case <-time.After(3 * timing.Renewal):
	}
	start := time.Now()
	store.fail <- true
	select {
	case <-h.Lost():
	case <-time.After(10 * timing.Renewal):
		t.Fatal("lease not fenced off while renewals failed")
	}
	if took := time.Since(start); took > timing.Renewal+timing.RenewEvery {
		t.Errorf("fenced off %v after renewals began failing; the lease could have lapsed after %v", took, timing.Renewal)
	}
	if r.count() != 0 {
		t.Errorf("renewer still holds %d leases", r.count())
	}
}
