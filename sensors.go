package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// workerPlacement is what a sensor row is matched against: the runtimes this
// worker advertises (normalised, `native` included) and its labels.
type workerPlacement struct {
	Runtimes []string
	Labels   map[string]string
}

// pgSensorSource reads from PostgreSQL the sensors that should run on this
// worker (CONTRACT §5). One pass costs three queries whatever the number of
// sensors: sensors with their runtime and pack, then the triggers and rules of
// those sensors, then the versions of their runtimes.
type pgSensorSource struct {
	pool   *pgxpool.Pool
	schema schemaInfo
	log    *slog.Logger // nil: skipped sensors are not logged

	// skipped remembers, per sensor id, why a live sensor is not for this
	// worker, so that reason is logged once rather than every pass. Only the
	// reconcile loop calls desiredSensors, so it needs no lock.
	skipped map[int64]string
}

// sensorQueries holds the SQL chosen once for the schema generation found at start-up.
type sensorQueries struct {
	sensors, rules, versions string
}

// buildSensorQueries picks the enabled/active predicates and the optional
// columns (release digest, worker selectors) the schema actually has.
func buildSensorQueries(si schemaInfo) sensorQueries {
	enabled := func(alias string, effective bool) string {
		if effective {
			return alias + ".effective_enabled"
		}
		return alias + ".enabled"
	}
	active := func(alias string, has bool) string {
		if has {
			return " AND " + alias + ".retired_at IS NULL"
		}
		return ""
	}
	digest := "''::text"
	releaseJoin := ""
	if si.PackActiveRelease && si.PackRelease {
		digest = "COALESCE(pr.digest, '')"
		releaseJoin = " LEFT JOIN pack_release pr ON pr.id = p.active_release"
	}
	sensorSel, packSel := "'{}'::jsonb", "'{}'::jsonb"
	if si.SensorWorkerSelector {
		sensorSel = "COALESCE(s.worker_selector, '{}'::jsonb)"
	}
	if si.PackWorkerSelector {
		packSel = "COALESCE(p.worker_selector, '{}'::jsonb)"
	}
	ruleLive := enabled("r", si.RuleEffectiveEnabled) + active("r", si.RuleRetiredAt)
	triggerLive := enabled("t", si.TriggerEffectiveEnabled) + active("t", si.TriggerRetiredAt)
	var q sensorQueries
	q.sensors = `SELECT s.id, s.ref, s.pack_ref, COALESCE(s.label, ''), s.entrypoint, s.config, s.updated,
	COALESCE(s.runtime_version_constraint, ''), rt.id, rt.ref, rt.name, COALESCE(rt.aliases, '{}'),
	rt.execution_config, ` + digest + `, ` + sensorSel + `, ` + packSel + `
FROM sensor s
JOIN runtime rt ON rt.id = s.runtime
LEFT JOIN pack p ON p.id = s.pack` + releaseJoin + `
WHERE ` + enabled("s", si.SensorEffectiveEnabled) + active("s", si.SensorRetiredAt) + `
  AND EXISTS (SELECT 1 FROM trigger t JOIN rule r ON r.trigger = t.id
              WHERE t.sensor = s.id AND ` + triggerLive + ` AND ` + ruleLive + `)
ORDER BY s.id`
	q.rules = `SELECT t.sensor, t.ref, (` + triggerLive + `), r.id, r.ref, r.trigger_params
FROM trigger t
LEFT JOIN rule r ON r.trigger = t.id AND ` + ruleLive + `
WHERE t.sensor = ANY($1)` + active("t", si.TriggerRetiredAt) + `
ORDER BY t.sensor, t.ref, r.id`
	// runtime.retired_at and runtime_version.retired_at come with the same
	// reference migration (component retirement); like the reference's
	// runtime_version lookups, retired versions and versions of a retired
	// runtime are never chosen for new work.
	versionsLive := ""
	if si.RuntimeRetiredAt {
		versionsLive = ` AND rv.retired_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM runtime r WHERE r.id = rv.runtime AND r.retired_at IS NOT NULL)`
	}
	q.versions = `SELECT rv.runtime, rv.version, rv.execution_config, rv.is_default, rv.available
FROM runtime_version rv WHERE rv.runtime = ANY($1)` + versionsLive + `
ORDER BY rv.runtime, rv.id`
	return q
}

// desiredSensors returns, sorted by id, every sensor that should run on a
// worker with placement w.
func (s *pgSensorSource) desiredSensors(ctx context.Context, w workerPlacement) ([]sensorSpec, error) {
	q := buildSensorQueries(s.schema)
	rows, err := s.pool.Query(ctx, q.sensors)
	if err != nil {
		return nil, fmt.Errorf("query sensors: %w", err)
	}
	var specs []sensorSpec
	skipped := map[int64]string{}
	for rows.Next() {
		var sp sensorSpec
		var cfg, execCfg, sensorSel, packSel []byte
		if err := rows.Scan(&sp.ID, &sp.Ref, &sp.PackRef, &sp.Label, &sp.Entrypoint, &cfg, &sp.Updated,
			&sp.RuntimeVersionConstraint, &sp.RuntimeID, &sp.RuntimeRef, &sp.RuntimeName, &sp.RuntimeAliases,
			&execCfg, &sp.PackActiveReleaseDigest, &sensorSel, &packSel); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read sensor row: %w", err)
		}
		switch {
		case !runtimeSupported(sp.RuntimeName, sp.RuntimeAliases, w.Runtimes):
			skipped[sp.ID] = fmt.Sprintf("runtime %s (%s) is not one this worker runs %v", sp.RuntimeRef, sp.RuntimeName, w.Runtimes)
		case !selectorMatches(sensorSel, w.Labels):
			skipped[sp.ID] = "sensor worker_selector does not match this worker's labels"
		case !selectorMatches(packSel, w.Labels):
			skipped[sp.ID] = "pack worker_selector does not match this worker's labels"
		}
		if _, skip := skipped[sp.ID]; skip {
			s.noteSkipped(sp, skipped[sp.ID])
			continue
		}
		sp.Config = nullableJSON(cfg)
		sp.ExecutionConfig = nullableJSON(execCfg)
		specs = append(specs, sp)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query sensors: %w", err)
	}
	for id := range s.skipped {
		if _, still := skipped[id]; !still {
			delete(s.skipped, id) // runs now, or is gone: log again if it comes back
		}
	}
	if len(specs) == 0 {
		return nil, nil
	}
	if err := s.attachRules(ctx, q.rules, specs); err != nil {
		return nil, err
	}
	if err := s.attachVersions(ctx, q.versions, specs); err != nil {
		return nil, err
	}
	return specs, nil
}

// attachRules fills Rules and TriggerRefs of every spec with one query.
func (s *pgSensorSource) attachRules(ctx context.Context, sql string, specs []sensorSpec) error {
	ids := make([]int64, len(specs))
	index := make(map[int64]int, len(specs))
	for i, sp := range specs {
		ids[i] = sp.ID
		index[sp.ID] = i
	}
	rows, err := s.pool.Query(ctx, sql, ids)
	if err != nil {
		return fmt.Errorf("query rules: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sensorID int64
		var triggerRef string
		var triggerLive bool
		var ruleID *int64
		var ruleRef *string
		var params []byte
		if err := rows.Scan(&sensorID, &triggerRef, &triggerLive, &ruleID, &ruleRef, &params); err != nil {
			return fmt.Errorf("read rule row: %w", err)
		}
		sp := &specs[index[sensorID]]
		if !slices.Contains(sp.TriggerRefs, triggerRef) {
			sp.TriggerRefs = append(sp.TriggerRefs, triggerRef)
		}
		if triggerLive && ruleID != nil {
			sp.Rules = append(sp.Rules, sensorRule{ID: *ruleID, Ref: *ruleRef, TriggerRef: triggerRef, Params: nullableJSON(params)})
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query rules: %w", err)
	}
	for i := range specs {
		slices.Sort(specs[i].TriggerRefs)
		slices.SortFunc(specs[i].Rules, func(a, b sensorRule) int { return int(a.ID - b.ID) })
	}
	return nil
}

// attachVersions fills RuntimeVersions of every spec with one query.
func (s *pgSensorSource) attachVersions(ctx context.Context, sql string, specs []sensorSpec) error {
	var ids []int64
	for _, sp := range specs {
		if !slices.Contains(ids, sp.RuntimeID) {
			ids = append(ids, sp.RuntimeID)
		}
	}
	rows, err := s.pool.Query(ctx, sql, ids)
	if err != nil {
		return fmt.Errorf("query runtime versions: %w", err)
	}
	defer rows.Close()
	byRuntime := map[int64][]runtimeVersionRow{}
	for rows.Next() {
		var rid int64
		var v runtimeVersionRow
		var execCfg []byte
		if err := rows.Scan(&rid, &v.Version, &execCfg, &v.IsDefault, &v.Available); err != nil {
			return fmt.Errorf("read runtime version row: %w", err)
		}
		v.ExecutionConfig = nullableJSON(execCfg)
		byRuntime[rid] = append(byRuntime[rid], v)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query runtime versions: %w", err)
	}
	for i := range specs {
		specs[i].RuntimeVersions = byRuntime[specs[i].RuntimeID]
	}
	return nil
}

// noteSkipped logs, once per sensor and reason, that a sensor which should
// run somewhere will not run here: without it an operator whose sensor never
// starts has nothing to go on.
func (s *pgSensorSource) noteSkipped(sp sensorSpec, reason string) {
	if s.skipped == nil {
		s.skipped = map[int64]string{}
	}
	if s.skipped[sp.ID] == reason {
		return
	}
	s.skipped[sp.ID] = reason
	if s.log != nil {
		s.log.Info("sensor not run on this worker", "sensor", sp.Ref, "reason", reason)
	}
}

// runtimeSupported reports whether a sensor's runtime (by name or any alias,
// alias-normalised) is among the runtimes this worker advertises.
func runtimeSupported(name string, aliases, workerRuntimes []string) bool {
	for _, n := range append([]string{name}, aliases...) {
		if n = normalizeRuntimeName(n); n != "" && slices.Contains(workerRuntimes, n) {
			return true
		}
	}
	return false
}

// selectorMatches reports whether every key of a worker_selector JSON object
// equals the worker label of the same name. An empty, null or non-object
// selector matches every worker; non-string values compare by their JSON text.
func selectorMatches(raw []byte, labels map[string]string) bool {
	if len(raw) == 0 {
		return true
	}
	var sel map[string]json.RawMessage
	if err := json.Unmarshal(raw, &sel); err != nil {
		return true
	}
	for k, v := range sel {
		var want string
		if err := json.Unmarshal(v, &want); err != nil {
			want = strings.TrimSpace(string(v))
		}
		if got, ok := labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

// nullableJSON maps SQL NULL (and JSON null) to nil so callers see one form of "absent".
func nullableJSON(b []byte) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return json.RawMessage(b)
}
