package main

// sensorQueries holds the SQL of one reconcile pass, chosen once for the
// schema generation found at start-up (CONTRACT §4, §5): which columns mean
// "enabled" and "active", and which optional columns exist (release pin,
// placement, workload lease state). Every pass costs the same few statements
// whatever the number of sensors.
type sensorQueries struct {
	sensors, rules, versions string
	// leases: the sensors query takes $1 = this worker's id and $2 = this
	// process's worker_instance, to tell leases held elsewhere.
	leases bool
	// onlyIDs: the sensors query has one more argument, an id array, that
	// restricts it (acquire and renewal re-check eligibility of given sensors).
	onlyIDs bool
}

// sensorColumns is the order desiredSensors scans a sensor row in.
const sensorColumns = `s.id, s.ref, s.pack_ref, COALESCE(s.label, ''), s.entrypoint, s.config, s.updated,
	COALESCE(s.runtime_version_constraint, ''), rt.id, rt.ref, rt.name, COALESCE(rt.aliases, '{}'),
	rt.execution_config`

// buildSensorQueries writes the pass's SQL for schema si. onlyIDs adds an
// "s.id = ANY(...)" restriction for re-checks inside lease transactions.
func buildSensorQueries(si schemaInfo, onlyIDs bool) sensorQueries {
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
	q := sensorQueries{leases: si.leases(), onlyIDs: onlyIDs}
	digest, releaseID := "''::text", "0::bigint"
	joins := ""
	if si.PackActiveRelease && si.PackRelease {
		digest, releaseID = "COALESCE(pr.digest, '')", "COALESCE(pr.id, 0)"
		joins += " LEFT JOIN pack_release pr ON pr.id = p.active_release"
	}
	jsonOr := func(has bool, col, empty string) string {
		if has {
			return "COALESCE(" + col + ", '" + empty + "'::jsonb)"
		}
		return "'" + empty + "'::jsonb"
	}
	placement := jsonOr(si.SensorWorkerSelector, "s.worker_selector", "{}") + ", " +
		jsonOr(si.SensorPlacement, "s.worker_tolerations", "[]") + ", " +
		jsonOr(si.SensorPlacement, "s.worker_affinity", "{}") + ", " +
		jsonOr(si.PackWorkerSelector, "p.worker_selector", "{}") + ", " +
		jsonOr(si.PackPlacement, "p.worker_tolerations", "[]") + ", " +
		jsonOr(si.PackPlacement, "p.worker_affinity", "{}")
	ruleLive := enabled("r", si.RuleEffectiveEnabled) + active("r", si.RuleRetiredAt)
	triggerLive := enabled("t", si.TriggerEffectiveEnabled) + active("t", si.TriggerRetiredAt)
	hasRule := `EXISTS (SELECT 1 FROM trigger t JOIN rule r ON r.trigger = t.id
              WHERE t.sensor = s.id AND ` + triggerLive + ` AND ` + ruleLive + `)`
	workload := "0::bigint, 0::bigint, ''::text, FALSE"
	demand := " AND " + hasRule
	next := 1
	if q.leases {
		// Transport demand counts on the newest generation (CONTRACT §5);
		// the adapters are checked in Go, the SQL only keeps candidates.
		demand = " AND (" + hasRule + ` OR (jsonb_typeof(s.config) = 'object' AND s.config ? 'inquiry_callback_adapters'))`
		joins += ` LEFT JOIN sensor_workload sw ON sw.sensor = s.id AND sw.workload_key = 'default'
LEFT JOIN sensor_workload_assignment a ON a.workload = sw.id`
		workload = `COALESCE(sw.id, 0), COALESCE(sw.pack_release, 0), COALESCE(sw.pack_release_digest, ''),
	COALESCE(a.worker IS NOT NULL AND a.lease_expires_at > clock_timestamp()
		AND NOT (a.worker = $1 AND a.worker_instance = $2::uuid), FALSE)`
		next = 3
	}
	runtimeLive := ""
	if si.RuntimeRetiredAt {
		runtimeLive = " AND rt.retired_at IS NULL" // a retired runtime takes no new work
	}
	only := ""
	if onlyIDs {
		only = " AND s.id = ANY($" + itoa(next) + "::bigint[])"
	}
	q.sensors = `SELECT ` + sensorColumns + `, ` + digest + `, ` + releaseID + `, ` + placement + `,
	` + hasRule + `, ` + workload + `
FROM sensor s
JOIN runtime rt ON rt.id = s.runtime
LEFT JOIN pack p ON p.id = s.pack` + joins + `
WHERE ` + enabled("s", si.SensorEffectiveEnabled) + active("s", si.SensorRetiredAt) + runtimeLive + demand + only + `
ORDER BY s.ref`
	rulePlacement := "'{}'::jsonb, '[]'::jsonb, '{}'::jsonb"
	if si.RuleSensorPlacement {
		rulePlacement = "r.sensor_worker_selector, r.sensor_worker_tolerations, r.sensor_worker_affinity"
	}
	q.rules = `SELECT t.sensor, t.ref, (` + triggerLive + `), r.id, r.ref, r.trigger_params, ` + rulePlacement + `
FROM trigger t
LEFT JOIN rule r ON r.trigger = t.id AND ` + ruleLive + `
WHERE t.sensor = ANY($1)` + active("t", si.TriggerRetiredAt) + `
ORDER BY t.sensor, t.ref, r.id`
	// runtime.retired_at and runtime_version.retired_at come with the same
	// reference migration (component retirement); like the reference's
	// runtime_version lookups, retired versions are never chosen for new work.
	versionsLive := ""
	if si.RuntimeRetiredAt {
		versionsLive = " AND rv.retired_at IS NULL"
	}
	q.versions = `SELECT rv.runtime, rv.version, rv.execution_config, rv.is_default, rv.available
FROM runtime_version rv WHERE rv.runtime = ANY($1)` + versionsLive + `
ORDER BY rv.runtime, rv.id`
	return q
}

func itoa(n int) string { return string(rune('0' + n)) }
