package main

// workloadpin.go owns the sensor_workload row of a sensor (CONTRACT §12):
// the `default` workload that pins the pack's active release and an
// executable snapshot of the sensor, its runtime and runtime versions, in
// the reference's JSON shape, so a Rust agent can launch from a row this
// agent wrote and the other way round; and the launch spec built from it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// snapshotSQL builds the executable snapshot from the live rows s (sensor),
// r (runtime) and pr (pack_release), as the reference does.
const snapshotSQL = `jsonb_build_object(
	'release', jsonb_build_object('id', pr.id, 'digest', pr.digest, 'content_path', pr.content_path),
	'sensor', to_jsonb(s), 'runtime', to_jsonb(r),
	'runtime_versions', COALESCE((SELECT jsonb_agg(to_jsonb(rv) ORDER BY rv.version, rv.id)
		FROM runtime_version rv WHERE rv.runtime = r.id), '[]'::jsonb))`

// pinnedWorkload is a sensor's default workload row as acquire needs it.
type pinnedWorkload struct {
	id       int64
	snapshot json.RawMessage
	// stale: the pin no longer matches the live rows (the sensor row was
	// updated, or the pack's active release moved), so acquire re-pins it.
	stale bool
}

// ensureWorkload creates the default workload pinned to the pack's active
// release when it is missing (an existing row is never rewritten here) and
// reads it back. No active release means no row: ErrNoActiveRelease.
func ensureWorkload(ctx context.Context, tx pgx.Tx, sensorID int64) (pinnedWorkload, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO sensor_workload (sensor, workload_key, pack_release, pack_release_digest, executable_snapshot)
SELECT s.id, 'default', pr.id, pr.digest, `+snapshotSQL+`
FROM sensor s JOIN pack p ON p.id = s.pack JOIN pack_release pr ON pr.id = p.active_release
JOIN runtime r ON r.id = s.runtime WHERE s.id = $1
ON CONFLICT (sensor, workload_key) DO NOTHING`, sensorID); err != nil {
		return pinnedWorkload{}, fmt.Errorf("ensure workload: %w", err)
	}
	var w pinnedWorkload
	err := tx.QueryRow(ctx, `SELECT sw.id, sw.executable_snapshot,
	sw.executable_snapshot IS NULL OR sw.pack_release IS DISTINCT FROM p.active_release
	OR (sw.executable_snapshot->'sensor'->>'updated')::timestamptz IS DISTINCT FROM s.updated
FROM sensor_workload sw JOIN sensor s ON s.id = sw.sensor LEFT JOIN pack p ON p.id = s.pack
WHERE sw.sensor = $1 AND sw.workload_key = 'default'`, sensorID).Scan(&w.id, &w.snapshot, &w.stale)
	if errors.Is(err, pgx.ErrNoRows) {
		return pinnedWorkload{}, ErrNoActiveRelease
	}
	if err != nil {
		return pinnedWorkload{}, fmt.Errorf("read workload: %w", err)
	}
	return w, nil
}

// repinWorkload rewrites the workload's pin and snapshot from the live rows.
// Called only while this process may take the lease (free or its own).
func repinWorkload(ctx context.Context, tx pgx.Tx, workloadID int64) (pinnedWorkload, error) {
	w := pinnedWorkload{id: workloadID}
	err := tx.QueryRow(ctx, `UPDATE sensor_workload AS sw
SET pack_release = pr.id, pack_release_digest = pr.digest, executable_snapshot = `+snapshotSQL+`, updated = NOW()
FROM sensor s JOIN pack p ON p.id = s.pack JOIN pack_release pr ON pr.id = p.active_release
JOIN runtime r ON r.id = s.runtime
WHERE sw.id = $1 AND s.id = sw.sensor
RETURNING sw.executable_snapshot`, workloadID).Scan(&w.snapshot)
	if errors.Is(err, pgx.ErrNoRows) {
		return pinnedWorkload{}, ErrNoActiveRelease
	}
	if err != nil {
		return pinnedWorkload{}, fmt.Errorf("re-pin workload: %w", err)
	}
	return w, nil
}

// executableSnapshot is the part of the snapshot JSON a launch reads.
type executableSnapshot struct {
	Release struct {
		ID     int64  `json:"id"`
		Digest string `json:"digest"`
	} `json:"release"`
	Sensor struct {
		Label                    *string         `json:"label"`
		Entrypoint               string          `json:"entrypoint"`
		Config                   json.RawMessage `json:"config"`
		RuntimeVersionConstraint *string         `json:"runtime_version_constraint"`
	} `json:"sensor"`
	Runtime struct {
		ID              int64           `json:"id"`
		Ref             string          `json:"ref"`
		Name            string          `json:"name"`
		Aliases         []string        `json:"aliases"`
		ExecutionConfig json.RawMessage `json:"execution_config"`
	} `json:"runtime"`
	RuntimeVersions []struct {
		Version         string          `json:"version"`
		ExecutionConfig json.RawMessage `json:"execution_config"`
		IsDefault       bool            `json:"is_default"`
		Available       *bool           `json:"available"`
		RetiredAt       *time.Time      `json:"retired_at"`
	} `json:"runtime_versions"`
}

// specFromSnapshot is the spec a leased process launches from: the
// snapshot's sensor, runtime, versions and release (the reference launches
// from the pinned rows, not the live ones), with the live rules and ids.
func specFromSnapshot(live sensorSpec, raw json.RawMessage) (sensorSpec, error) {
	var snap executableSnapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return sensorSpec{}, fmt.Errorf("workload executable snapshot of sensor %s: %w", live.Ref, err)
	}
	if snap.Release.Digest == "" || snap.Sensor.Entrypoint == "" || snap.Runtime.ID == 0 {
		return sensorSpec{}, fmt.Errorf("workload executable snapshot of sensor %s lacks release, entrypoint or runtime", live.Ref)
	}
	sp := live
	sp.Release = &packRelease{ID: snap.Release.ID, Digest: snap.Release.Digest}
	sp.Entrypoint = snap.Sensor.Entrypoint
	sp.Config = nullableJSON(snap.Sensor.Config)
	sp.RuntimeVersionConstraint = ""
	if c := snap.Sensor.RuntimeVersionConstraint; c != nil {
		sp.RuntimeVersionConstraint = *c
	}
	sp.RuntimeID, sp.RuntimeRef, sp.RuntimeName = snap.Runtime.ID, snap.Runtime.Ref, snap.Runtime.Name
	sp.RuntimeAliases = snap.Runtime.Aliases
	sp.ExecutionConfig = nullableJSON(snap.Runtime.ExecutionConfig)
	sp.RuntimeVersions = nil
	for _, v := range snap.RuntimeVersions {
		if v.RetiredAt != nil {
			continue
		}
		sp.RuntimeVersions = append(sp.RuntimeVersions, runtimeVersionRow{Version: v.Version,
			ExecutionConfig: nullableJSON(v.ExecutionConfig), IsDefault: v.IsDefault, Available: v.Available == nil || *v.Available})
	}
	return sp, nil
}
