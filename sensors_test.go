package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// testPlacement is the worker the desired-set tests read for: python, node
// and native (no shell), labels zone=a and gpu=true.
var testPlacement = workerPlacement{Runtimes: []string{"python", "node", "native"},
	Versions: map[string][]string{"python": {"3.11.4"}},
	Labels:   map[string]string{"zone": "a", "gpu": "true"}}

// sensorSourceFixture is one test database with a sensor source whose pool
// counts the queries it runs.
type sensorSourceFixture struct {
	db      *seedDB
	src     *pgSensorSource
	queries *sensorQueryCounter
	packID  int64
	rt      map[string]int64 // runtime name → id
	// workerID is the live worker row a current-generation pass reads.
	workerID int64
}

// release gives pack packID (ref) an active release (current generation).
func (f *sensorSourceFixture) release(packID int64, ref string) int64 {
	digest := fmt.Sprintf("%064x", packID)
	id := f.db.id(`INSERT INTO pack_release (pack, pack_ref, version, digest, content_path, archive_size, manifest)
VALUES ($1, $2, '1.0.0', $3, 'x', 0, '{}') RETURNING id`, packID, ref, digest)
	f.db.exec(`UPDATE pack SET active_release = $1 WHERE id = $2`, id, packID)
	return id
}

func newSensorSourceFixture(t *testing.T, gen string) *sensorSourceFixture {
	t.Helper()
	dbURL := newTestDB(t, gen)
	f := &sensorSourceFixture{db: newSeedDB(t, dbURL), queries: &sensorQueryCounter{}, rt: map[string]int64{}}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = "attune, public"
	cfg.ConnConfig.Tracer = f.queries
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	si, err := detectSchema(t.Context(), pool)
	if err != nil {
		t.Fatalf("detect schema: %v", err)
	}
	if si.generation() != gen {
		t.Fatalf("fixture %s detected as %s", gen, si.generation())
	}
	f.src = &pgSensorSource{pool: pool, schema: si}
	f.packID = f.db.pack("pk")
	if gen == "current" {
		// Leases: the pass reads this worker's liveness and needs a release to pin.
		f.workerID = f.db.id(`INSERT INTO worker (name, worker_type, worker_role, status, capabilities, last_heartbeat)
VALUES ('sensor-fixture', 'local', 'sensor', 'active', '{}', now()) RETURNING id`)
		instance := newUUIDv4()
		f.src.identity = func() (int64, string) { return f.workerID, instance }
		f.release(f.packID, "pk")
	}
	for _, rt := range []struct{ ref, name, aliases string }{
		{"core.python", "Python", "{python3}"},
		{"core.nodejs", "Node.js", "{}"},      // name normalised to node
		{"core.js", "JavaScript", "{nodejs}"}, // supported through an alias
		{"core.shell", "Shell", "{bash}"},     // not on this worker
		{"core.native", "Native", "{}"},
	} {
		f.rt[rt.name] = f.db.runtime(rt.ref, rt.name, `{"interpreter": {"binary": "x"}}`)
		f.db.exec(`UPDATE runtime SET aliases = $1::text[] WHERE id = $2`, rt.aliases, f.rt[rt.name])
	}
	return f
}

// seededSensor is the rows behind one sensor seeded by sensorWithRule.
type seededSensor struct{ sensor, trigger, rule int64 }

// sensorWithRule seeds pk.<name> on runtime rt with trigger pk.<name>_t and
// enabled rule pk.<name>_r.
func (f *sensorSourceFixture) sensorWithRule(name, rt string) seededSensor {
	var s seededSensor
	s.sensor = f.db.sensor(f.packID, "pk", "pk."+name, name+".py", f.rt[rt], "")
	s.trigger = f.db.trigger(f.packID, "pk", "pk."+name+"_t", s.sensor)
	s.rule = f.db.rule(f.packID, "pk", "pk."+name+"_r", s.trigger, `{"k": "`+name+`"}`, true)
	return s
}

// desired runs one pass and returns it with the number of queries it took.
func (f *sensorSourceFixture) desired(t *testing.T) ([]sensorSpec, int64) {
	t.Helper()
	f.queries.n.Store(0)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	specs, err := f.src.desiredSensors(ctx, testPlacement)
	if err != nil {
		t.Fatalf("desiredSensors: %v", err)
	}
	return specs, f.queries.n.Load()
}

// TestDesiredSensorsEligibility seeds one sensor per case on each schema
// generation and checks that one pass returns exactly the eligible ones.
func TestDesiredSensorsEligibility(t *testing.T) {
	type fixture = sensorSourceFixture
	cases := []struct {
		name        string
		currentOnly bool
		rt          string
		setup       func(f *fixture, s seededSensor)
		want        bool
	}{
		{"enabled", false, "Python", nil, true},
		{"sensor_disabled", false, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE sensor SET enabled = false WHERE id = $1`, s.sensor)
		}, false},
		{"rule_disabled", false, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE rule SET enabled = false WHERE id = $1`, s.rule)
		}, false},
		{"trigger_disabled", false, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE trigger SET enabled = false WHERE id = $1`, s.trigger)
		}, false},
		{"trigger_without_rule", false, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`DELETE FROM rule WHERE id = $1`, s.rule)
		}, false},
		{"rule_on_second_trigger", false, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE rule SET enabled = false WHERE id = $1`, s.rule)
			t2 := f.db.trigger(f.packID, "pk", "pk.rule_on_second_trigger_t2", s.sensor)
			f.db.rule(f.packID, "pk", "pk.rule_on_second_trigger_r2", t2, `{}`, true)
		}, true},
		{"runtime_unsupported", false, "Shell", nil, false},
		{"runtime_name_normalised", false, "Node.js", nil, true},
		{"runtime_alias", false, "JavaScript", nil, true},
		{"native", false, "Native", nil, true},
		{"sensor_override_off", true, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE sensor SET enabled_override = false WHERE id = $1`, s.sensor)
		}, false},
		{"sensor_override_on", true, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE sensor SET enabled = false, enabled_override = true WHERE id = $1`, s.sensor)
		}, true},
		{"trigger_override_off", true, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE trigger SET enabled_override = false WHERE id = $1`, s.trigger)
		}, false},
		{"rule_override_off", true, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE rule SET enabled_override = false WHERE id = $1`, s.rule)
		}, false},
		{"sensor_retired", true, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE sensor SET retired_at = now() WHERE id = $1`, s.sensor)
		}, false},
		{"trigger_retired", true, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE trigger SET retired_at = now() WHERE id = $1`, s.trigger)
		}, false},
		{"rule_retired", true, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE rule SET retired_at = now() WHERE id = $1`, s.rule)
		}, false},
		{"selector_matches", true, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE sensor SET worker_selector = '{"zone": "a", "gpu": true}' WHERE id = $1`, s.sensor)
		}, true},
		{"selector_other_zone", true, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE sensor SET worker_selector = '{"zone": "b"}' WHERE id = $1`, s.sensor)
		}, false},
		{"selector_unknown_label", true, "Python", func(f *fixture, s seededSensor) {
			f.db.exec(`UPDATE sensor SET worker_selector = '{"arch": "arm64"}' WHERE id = $1`, s.sensor)
		}, false},
	}
	for _, gen := range []string{"legacy", "current"} {
		t.Run(gen, func(t *testing.T) {
			f := newSensorSourceFixture(t, gen)
			var want []string
			for _, tc := range cases {
				if tc.currentOnly && gen != "current" {
					continue
				}
				s := f.sensorWithRule(tc.name, tc.rt)
				if tc.setup != nil {
					tc.setup(f, s)
				}
				if tc.want {
					want = append(want, "pk."+tc.name)
				}
			}
			if gen == "current" { // placement by the pack's selector
				sel := f.db.pack("pksel")
				other := f.db.pack("pkother")
				f.db.exec(`UPDATE pack SET worker_selector = '{"zone": "a"}' WHERE id = $1`, sel)
				f.db.exec(`UPDATE pack SET worker_selector = '{"zone": "b"}' WHERE id = $1`, other)
				for ref, pack := range map[string]int64{"pksel": sel, "pkother": other} {
					f.release(pack, ref)
					id := f.db.sensor(pack, ref, ref+".s", "s.py", f.rt["Python"], "")
					tr := f.db.trigger(pack, ref, ref+".t", id)
					f.db.rule(pack, ref, ref+".r", tr, `{}`, true)
				}
				want = append(want, "pksel.s")
				// Leases: no release to pin, a live lease of another worker,
				// transport demand without a rule, a disabled adapter.
				norel := f.db.pack("pknorel")
				id := f.db.sensor(norel, "pknorel", "pknorel.s", "s.py", f.rt["Python"], "")
				tr := f.db.trigger(norel, "pknorel", "pknorel.t", id)
				f.db.rule(norel, "pknorel", "pknorel.r", tr, `{}`, true)
				held := f.sensorWithRule("held_elsewhere", "Python")
				otherWorker := f.db.id(`INSERT INTO worker (name, worker_type, worker_role, status, capabilities, last_heartbeat)
VALUES ('sensor-other', 'local', 'sensor', 'active', '{}', now()) RETURNING id`)
				wl := f.db.id(`INSERT INTO sensor_workload (sensor, workload_key) VALUES ($1, 'default') RETURNING id`, held.sensor)
				f.db.exec(`INSERT INTO sensor_workload_assignment (workload, worker, worker_instance, generation, lease_expires_at, assigned_at, renewed_at)
VALUES ($1, $2, gen_random_uuid(), 1, now() + interval '1 minute', now(), now())`, wl, otherWorker)
				f.db.sensor(f.packID, "pk", "pk.transport", "t.py", f.rt["Python"], `{"inquiry_callback_adapters": {"slack.x": {"enabled": true}}}`)
				f.db.sensor(f.packID, "pk", "pk.transport_off", "t.py", f.rt["Python"], `{"inquiry_callback_adapters": {"slack.x": {"enabled": false}}}`)
				want = append(want, "pk.transport")
			}
			specs, _ := f.desired(t)
			var got []string
			for _, sp := range specs {
				got = append(got, sp.Ref)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("desired sensors:\n got %v\nwant %v", got, want)
			}
			if !slices.IsSortedFunc(specs, func(a, b sensorSpec) int { return strings.Compare(a.Ref, b.Ref) }) {
				t.Error("desired sensors not in ref order")
			}
			if gen == "current" { // a cordoned worker runs nothing
				f.db.exec(`UPDATE worker SET cordoned = true WHERE id = $1`, f.workerID)
				if specs, _ := f.desired(t); len(specs) != 0 {
					t.Errorf("cordoned worker: %d desired sensors, want none", len(specs))
				}
			}
		})
	}
}

// TestDesiredSensorsFields checks everything a pass fills in for one
// sensor: row fields, rules of enabled triggers only, all trigger refs,
// runtime versions and (current generation) the active release digest.
func TestDesiredSensorsFields(t *testing.T) {
	for _, gen := range []string{"legacy", "current"} {
		t.Run(gen, func(t *testing.T) {
			f := newSensorSourceFixture(t, gen)
			s := f.sensorWithRule("full", "Python")
			f.db.exec(`UPDATE sensor SET config = '{"a": 1}', runtime_version_constraint = '>=3.10' WHERE id = $1`, s.sensor)
			r2 := f.db.rule(f.packID, "pk", "pk.full_r2", s.trigger, `{"k": "two"}`, true)
			f.db.rule(f.packID, "pk", "pk.full_off", s.trigger, `{}`, false)
			off := f.db.trigger(f.packID, "pk", "pk.full_a_off", s.sensor) // disabled trigger: listed, its rule not served
			f.db.exec(`UPDATE trigger SET enabled = false WHERE id = $1`, off)
			f.db.rule(f.packID, "pk", "pk.full_on_off_trigger", off, `{}`, true)
			f.db.exec(`INSERT INTO runtime_version (runtime, runtime_ref, version, execution_config, is_default, available)
				VALUES ($1, 'core.python', '3.11', '{"interpreter": {"binary": "python3.11"}}', true, true),
				       ($1, 'core.python', '3.12', '{}', false, false)`, f.rt["Python"])
			digest := ""
			if gen == "current" {
				f.db.exec(`INSERT INTO runtime_version (runtime, runtime_ref, version, is_default, available, retired_at)
					VALUES ($1, 'core.python', '3.13', false, true, now())`, f.rt["Python"]) // retired: never chosen
				// A retired runtime still runs its sensors on its own config, but offers no versions.
				f.db.exec(`UPDATE runtime SET retired_at = now() WHERE id = $1`, f.rt["Native"])
				f.db.exec(`INSERT INTO runtime_version (runtime, runtime_ref, version, is_default, available)
					VALUES ($1, 'core.native', '1', true, true)`, f.rt["Native"])
				f.sensorWithRule("on_retired_runtime", "Native")
				digest = fmt.Sprintf("%064x", f.packID) // the fixture's release
			}

			specs, _ := f.desired(t)
			if len(specs) != 1 { // a retired runtime takes no new work (leases re-check it at acquire)
				t.Fatalf("desired %d sensors, want 1: %+v", len(specs), specs)
			}
			sp := specs[0]
			if sp.ID != s.sensor || sp.Ref != "pk.full" || sp.PackRef != "pk" || sp.Label != "pk.full" || sp.Entrypoint != "full.py" ||
				string(sp.Config) != `{"a": 1}` || sp.RuntimeVersionConstraint != ">=3.10" || sp.Updated.IsZero() {
				t.Errorf("sensor row fields: %+v", sp)
			}
			if sp.RuntimeID != f.rt["Python"] || sp.RuntimeRef != "core.python" || sp.RuntimeName != "Python" ||
				!slices.Equal(sp.RuntimeAliases, []string{"python3"}) || string(sp.ExecutionConfig) != `{"interpreter": {"binary": "x"}}` {
				t.Errorf("runtime fields: %+v", sp)
			}
			wantRules := []sensorRule{
				{ID: s.rule, Ref: "pk.full_r", TriggerRef: "pk.full_t", Params: json.RawMessage(`{"k": "full"}`)},
				{ID: r2, Ref: "pk.full_r2", TriggerRef: "pk.full_t", Params: json.RawMessage(`{"k": "two"}`)},
			}
			if !slices.EqualFunc(sp.Rules, wantRules, func(a, b sensorRule) bool {
				return a.ID == b.ID && a.Ref == b.Ref && a.TriggerRef == b.TriggerRef && string(a.Params) == string(b.Params)
			}) {
				t.Errorf("Rules:\n got %+v\nwant %+v", sp.Rules, wantRules)
			}
			if !slices.Equal(sp.TriggerRefs, []string{"pk.full_a_off", "pk.full_t"}) {
				t.Errorf("TriggerRefs = %v, want both triggers sorted", sp.TriggerRefs)
			}
			if len(sp.RuntimeVersions) != 2 || sp.RuntimeVersions[0].Version != "3.11" || !sp.RuntimeVersions[0].IsDefault ||
				!sp.RuntimeVersions[0].Available || sp.RuntimeVersions[1].Available ||
				string(sp.RuntimeVersions[0].ExecutionConfig) != `{"interpreter": {"binary": "python3.11"}}` {
				t.Errorf("RuntimeVersions = %+v", sp.RuntimeVersions)
			}
			if sp.PackActiveReleaseDigest != digest {
				t.Errorf("PackActiveReleaseDigest = %q, want %q", sp.PackActiveReleaseDigest, digest)
			}
		})
	}
}

// TestDesiredSensorsQueryCount: a pass costs the same three queries for one
// sensor as for fifty (no per-sensor query), and one when none is eligible.
func TestDesiredSensorsQueryCount(t *testing.T) {
	for _, gen := range []string{"legacy", "current"} {
		t.Run(gen, func(t *testing.T) {
			f := newSensorSourceFixture(t, gen)
			base := map[string]int64{"legacy": 0, "current": 1}[gen] // current: the worker's liveness
			if _, n := f.desired(t); n != 1+base {
				t.Errorf("empty database: %d queries, want %d", n, 1+base)
			}
			f.sensorWithRule("s0", "Python")
			specs, n1 := f.desired(t)
			for i := 1; i < 50; i++ {
				f.sensorWithRule(fmt.Sprintf("s%d", i), []string{"Python", "Node.js", "Native"}[i%3])
			}
			specs50, n50 := f.desired(t)
			if len(specs) != 1 || len(specs50) != 50 {
				t.Fatalf("desired %d then %d sensors, want 1 then 50", len(specs), len(specs50))
			}
			if n1 != 3+base || n50 != 3+base {
				t.Errorf("queries per pass: %d for 1 sensor, %d for 50; want %d and %d", n1, n50, 3+base, 3+base)
			}
			for _, sp := range specs50 {
				if len(sp.Rules) != 1 || len(sp.TriggerRefs) != 1 {
					t.Errorf("%s: rules %v, triggers %v", sp.Ref, sp.Rules, sp.TriggerRefs)
				}
			}
		})
	}
}

// TestRuntimeSupported is the runtime decision: the runtime's name or any
// alias, alias-normalised, among the worker's runtimes.
func TestRuntimeSupported(t *testing.T) {
	worker := []string{"node", "python", "native"}
	cases := []struct {
		name    string
		rtName  string
		aliases []string
		want    bool
	}{
		{"canonical name", "python", nil, true},
		{"name with capitals", "Python", nil, true},
		{"name is an alias", "Node.js", nil, true},
		{"name nodejs", "nodejs", nil, true},
		{"name unknown, alias known", "JavaScript", []string{"nodejs"}, true},
		{"alias with spaces and capitals", "Interp", []string{" Python3 "}, true},
		{"native", "Native", nil, true},
		{"builtin is native", "builtin", nil, true},
		{"not on this worker", "Shell", []string{"bash", "sh"}, false},
		{"empty", "", []string{""}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := runtimeSupported(tc.rtName, tc.aliases, worker); got != tc.want {
				t.Errorf("runtimeSupported(%q, %q): got %v, want %v", tc.rtName, tc.aliases, got, tc.want)
			}
		})
	}
}

// sensorQueryCounter is a pgx QueryTracer that counts the queries a pool runs.
type sensorQueryCounter struct{ n atomic.Int64 }

func (c *sensorQueryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *sensorQueryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
