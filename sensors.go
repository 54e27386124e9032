package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgSensorSource reads from PostgreSQL the sensors that should run on this
// worker (CONTRACT §5). One pass costs the same few statements whatever the
// number of sensors: on the newest generation the worker's liveness, then the
// sensors with their runtime, pack, release and workload, then the triggers
// and rules of those sensors, then the versions of their runtimes.
type pgSensorSource struct {
	pool   *pgxpool.Pool
	schema schemaInfo
	log    *slog.Logger // nil: skipped sensors are not logged
	// identity is this worker's id and process worker_instance, needed on the
	// newest generation to tell its own leases from other workers'.
	identity func() (workerID int64, instance string)

	// skipped remembers, per sensor id, why a live sensor is not for this
	// worker, so that reason is logged once rather than every pass. Only the
	// reconcile loop calls desiredSensors, so it needs no lock.
	skipped map[int64]string
	notLive string // why the worker itself is not live, logged once
}

// pgxQuerier is what loading sensors needs: the pool for a pass, a
// transaction for the re-checks of acquire and renewal.
type pgxQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// desiredSensors returns, in ref order, every sensor that should run on a
// worker with placement w. On the newest generation a worker that is not
// live (cordoned, inactive, stale heartbeat) runs nothing, and sensors whose
// lease another worker holds are left out.
func (s *pgSensorSource) desiredSensors(ctx context.Context, w workerPlacement) ([]sensorSpec, error) {
	var id int64
	var instance string
	if s.schema.leases() {
		id, instance = s.identity()
		why, err := workerNotLive(ctx, s.pool, id)
		if err != nil {
			return nil, err
		}
		if why != s.notLive && s.log != nil {
			if why != "" {
				s.log.Info("worker not live: running no sensors", "reason", why)
			} else if s.notLive != "" {
				s.log.Info("worker live again")
			}
		}
		s.notLive = why
		if why != "" {
			return nil, nil
		}
	}
	specs, skipped, err := loadSensors(ctx, s.pool, s.schema, w, id, instance, nil)
	if err != nil {
		return nil, err
	}
	for _, sk := range skipped {
		s.noteSkipped(sk.spec, sk.reason)
	}
	seen := make(map[int64]bool, len(skipped))
	for _, sk := range skipped {
		seen[sk.spec.ID] = true
	}
	for sid := range s.skipped {
		if !seen[sid] {
			delete(s.skipped, sid) // runs now, or is gone: log again if it comes back
		}
	}
	desired := specs[:0]
	for _, sp := range specs {
		if !sp.Workload.HeldElsewhere {
			desired = append(desired, sp)
		}
	}
	return desired, nil
}

// workerNotLive says why the worker row does not count as live for sensor
// work (CONTRACT §5: role sensor, not cordoned, active, heartbeat newer than
// 90 s by the database clock), or "" when it is live.
func workerNotLive(ctx context.Context, q pgxQuerier, id int64) (string, error) {
	var found, cordoned, active, fresh bool
	err := q.QueryRow(ctx, `SELECT TRUE, cordoned, status = 'active' AND worker_role = 'sensor',
	COALESCE(last_heartbeat > clock_timestamp() - make_interval(secs => $2), FALSE)
FROM worker WHERE id = $1`, id, float64(workerLiveCutoff/time.Second)).Scan(&found, &cordoned, &active, &fresh)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "worker row is gone", nil
	case err != nil:
		return "", fmt.Errorf("read worker liveness: %w", err)
	case cordoned:
		return "worker is cordoned", nil
	case !active:
		return "worker is not an active sensor worker", nil
	case !fresh:
		return "worker heartbeat is older than 90 s", nil
	}
	return "", nil
}

// skippedSensor is a live sensor that is not for this worker, and why.
type skippedSensor struct {
	spec   sensorSpec
	reason string
}

// loadSensors runs the pass's queries on q and splits the result into
// eligible sensors (ref order, rules and versions attached) and skipped ones.
// ids, when not nil, restricts it to those sensors (lease re-checks).
func loadSensors(ctx context.Context, q pgxQuerier, si schemaInfo, w workerPlacement, workerID int64, instance string, ids []int64) ([]sensorSpec, []skippedSensor, error) {
	sq := buildSensorQueries(si, ids != nil)
	var args []any
	if sq.leases {
		args = append(args, workerID, instance)
	}
	if ids != nil {
		args = append(args, ids)
	}
	rows, err := q.Query(ctx, sq.sensors, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("query sensors: %w", err)
	}
	var specs []sensorSpec
	for rows.Next() {
		var sp sensorSpec
		var cfg, execCfg, sSel, sTol, sAff, pSel, pTol, pAff []byte
		var releaseID, pinnedID int64
		var pinnedDigest string
		var hasRule bool
		if err := rows.Scan(&sp.ID, &sp.Ref, &sp.PackRef, &sp.Label, &sp.Entrypoint, &cfg, &sp.Updated,
			&sp.RuntimeVersionConstraint, &sp.RuntimeID, &sp.RuntimeRef, &sp.RuntimeName, &sp.RuntimeAliases,
			&execCfg, &sp.PackActiveReleaseDigest, &releaseID, &sSel, &sTol, &sAff, &pSel, &pTol, &pAff,
			&hasRule, &sp.Workload.ID, &pinnedID, &pinnedDigest, &sp.Workload.HeldElsewhere); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("read sensor row: %w", err)
		}
		sp.Config = nullableJSON(cfg)
		sp.ExecutionConfig = nullableJSON(execCfg)
		sp.Placements = []placementRule{parseModelPlacement("pack "+sp.PackRef, pSel, pTol, pAff),
			parseModelPlacement("sensor "+sp.Ref, sSel, sTol, sAff)}
		if sq.leases {
			if releaseID != 0 {
				sp.Release = &packRelease{ID: releaseID, Digest: sp.PackActiveReleaseDigest}
			}
			if pinnedID != 0 {
				sp.Workload.Pinned = &packRelease{ID: pinnedID, Digest: pinnedDigest}
			}
			sp.TransportDemand = hasTransportDemand(sp.Config)
			if !hasRule && !sp.TransportDemand {
				continue // only a config key named adapters, none enabled: no demand
			}
		}
		specs = append(specs, sp)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("query sensors: %w", err)
	}
	if len(specs) == 0 {
		return nil, nil, nil
	}
	if err := attachRules(ctx, q, sq.rules, specs); err != nil {
		return nil, nil, err
	}
	if err := attachVersions(ctx, q, sq.versions, specs); err != nil {
		return nil, nil, err
	}
	eligible := specs[:0:0]
	var skipped []skippedSensor
	for _, sp := range specs {
		if why := ineligibleReason(sp, w, sq.leases); why != "" {
			skipped = append(skipped, skippedSensor{spec: sp, reason: why})
			continue
		}
		eligible = append(eligible, sp)
	}
	return eligible, skipped, nil
}

// attachRules fills Rules and TriggerRefs of every spec with one query.
func attachRules(ctx context.Context, q pgxQuerier, sql string, specs []sensorSpec) error {
	ids := make([]int64, len(specs))
	index := make(map[int64]int, len(specs))
	for i, sp := range specs {
		ids[i] = sp.ID
		index[sp.ID] = i
	}
	rows, err := q.Query(ctx, sql, ids)
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
		var params, sel, tol, aff []byte
		if err := rows.Scan(&sensorID, &triggerRef, &triggerLive, &ruleID, &ruleRef, &params, &sel, &tol, &aff); err != nil {
			return fmt.Errorf("read rule row: %w", err)
		}
		sp := &specs[index[sensorID]]
		if !slices.Contains(sp.TriggerRefs, triggerRef) {
			sp.TriggerRefs = append(sp.TriggerRefs, triggerRef)
		}
		if triggerLive && ruleID != nil {
			sp.Rules = append(sp.Rules, sensorRule{ID: *ruleID, Ref: *ruleRef, TriggerRef: triggerRef, Params: nullableJSON(params)})
			p, err := parseRulePlacement("rule "+*ruleRef, sel, tol, aff)
			if err != nil && sp.PlacementError == "" {
				sp.PlacementError = fmt.Sprintf("rule %s sensor-worker placement: %v", *ruleRef, err)
			}
			sp.Placements = append(sp.Placements, p)
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
func attachVersions(ctx context.Context, q pgxQuerier, sql string, specs []sensorSpec) error {
	var ids []int64
	for _, sp := range specs {
		if !slices.Contains(ids, sp.RuntimeID) {
			ids = append(ids, sp.RuntimeID)
		}
	}
	rows, err := q.Query(ctx, sql, ids)
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

// nullableJSON maps SQL NULL (and JSON null) to nil so callers see one form of "absent".
func nullableJSON(b []byte) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return json.RawMessage(b)
}
