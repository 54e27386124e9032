package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// sensorlog_rows.go owns the database rows the agent writes for a sensor's
// log streams on the newest generation (CONTRACT §13): one artifact per
// (sensor, stream), found or created at every start, and one
// artifact_version + log_stream per process generation and per rotation.
// The API writes log_segment, the stream counters and the seal state.

// sensorLogStreams are the two streams every sensor has, in a fixed order.
var sensorLogStreams = [2]string{"stdout", "stderr"}

// Defaults of a sensor log artifact's retention when the sensor row sets
// none (the reference's SensorLogConfig: versions / 4).
const (
	defaultSensorLogRetentionPolicy = "versions"
	defaultSensorLogRetentionLimit  = 4
)

// logArtifact is the artifact of one stream of one sensor.
type logArtifact struct {
	ID        int64
	Ref       string // sensor.<sensor_ref>.<stream>
	SensorRef string
	Stream    string
}

// logVersion is one allocated artifact_version and its log_stream.
type logVersion struct {
	ID       int64 // artifact_version.id, the {version_id} of the upload URLs
	Version  int
	FilePath string
	StreamID int64
}

// logRows is what the log shipping needs from the database.
type logRows interface {
	ensureArtifacts(ctx context.Context, spec sensorSpec) ([2]logArtifact, error)
	createVersion(ctx context.Context, a logArtifact, maxUnflushedBytes, maxUnflushedMS int64) (logVersion, error)
}

// pgLogRows implements logRows on the agent's pool.
type pgLogRows struct {
	pool   *pgxpool.Pool
	schema schemaInfo
}

var _ logRows = (*pgLogRows)(nil)

// sensorLogArtifactRef is the artifact ref of one stream of a sensor.
func sensorLogArtifactRef(sensorRef, stream string) string {
	return "sensor." + sensorRef + "." + stream
}

// sensorLogFilePath is the file_path of version n: the ref with dots as
// slashes, then v<n>.txt. Nothing is written there; the API authorises
// uploads by it.
func sensorLogFilePath(artifactRef string, n int) string {
	return strings.ReplaceAll(artifactRef, ".", "/") + fmt.Sprintf("/v%d.txt", n)
}

// ensureArtifacts finds or creates the stdout and stderr artifacts of the
// sensor, correcting only the four policy columns of an existing row.
func (r *pgLogRows) ensureArtifacts(ctx context.Context, spec sensorSpec) ([2]logArtifact, error) {
	var out [2]logArtifact
	policy, limit := defaultSensorLogRetentionPolicy, int32(defaultSensorLogRetentionLimit)
	if r.schema.SensorLogRetention {
		var p *string
		var l *int32
		err := r.pool.QueryRow(ctx, `SELECT log_retention_policy::text, log_retention_limit FROM sensor WHERE id = $1`, spec.ID).Scan(&p, &l)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return out, fmt.Errorf("sensor %s: read log retention: %w", spec.Ref, err)
		}
		if p != nil {
			policy = *p
		}
		if l != nil {
			limit = *l
		}
	}
	for i, stream := range sensorLogStreams {
		ref := sensorLogArtifactRef(spec.Ref, stream)
		var id int64
		// One statement: update the policy columns of the existing row when
		// they differ, else insert; the oldest row wins if there are several.
		err := r.pool.QueryRow(ctx, `
WITH found AS (
    SELECT id FROM artifact WHERE ref = $1 ORDER BY id LIMIT 1
), fixed AS (
    UPDATE artifact a SET visibility = 'private', classification = 'runtime_log',
           retention_policy = $3::artifact_retention_enum, retention_limit = $4
      FROM found WHERE a.id = found.id
       AND (a.visibility <> 'private' OR a.classification <> 'runtime_log'
            OR a.retention_policy <> $3::artifact_retention_enum OR a.retention_limit <> $4)
    RETURNING a.id
), created AS (
    INSERT INTO artifact (ref, scope, owner, type, visibility, classification,
                          retention_policy, retention_limit, name, description, content_type)
    SELECT $1, 'sensor', $2, 'file_text', 'private', 'runtime_log',
           $3::artifact_retention_enum, $4, $5, $6, 'text/plain'
     WHERE NOT EXISTS (SELECT 1 FROM found)
    RETURNING id
)
SELECT id FROM found UNION ALL SELECT id FROM created LIMIT 1`,
			ref, spec.Ref, policy, limit,
			spec.Ref+" sensor "+stream+" log", "Rotating "+stream+" log for sensor '"+spec.Ref+"'").Scan(&id)
		if err != nil {
			return out, fmt.Errorf("sensor %s: %s log artifact: %w", spec.Ref, stream, err)
		}
		out[i] = logArtifact{ID: id, Ref: ref, SensorRef: spec.Ref, Stream: stream}
	}
	return out, nil
}

// createVersion allocates the next version of a (pending, with an upload
// object key and the file_path the API authorises by) and its log_stream,
// in one transaction that holds the artifact row lock, so two writers never
// take the same number.
func (r *pgLogRows) createVersion(ctx context.Context, a logArtifact, maxUnflushedBytes, maxUnflushedMS int64) (logVersion, error) {
	var v logVersion
	meta, _ := json.Marshal(map[string]string{"sensor_ref": a.SensorRef, "stream": a.Stream})
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM artifact WHERE id = $1 FOR UPDATE`, a.ID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM artifact_version WHERE artifact = $1`, a.ID).Scan(&v.Version); err != nil {
			return err
		}
		v.FilePath = sensorLogFilePath(a.Ref, v.Version)
		objectKey := "artifacts/" + v.FilePath + "/" + newUUIDv4()
		if err := tx.QueryRow(ctx, `
INSERT INTO artifact_version (artifact, version, content_type, file_path, meta, created_by, body_state, object_key)
VALUES ($1, $2, 'text/plain', $3, $4, 'sensor', 'pending', $5) RETURNING id`,
			a.ID, v.Version, v.FilePath, meta, objectKey).Scan(&v.ID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `
INSERT INTO log_stream (artifact_version, max_unflushed_bytes, max_unflushed_milliseconds)
VALUES ($1, $2, $3) RETURNING id`, v.ID, maxUnflushedBytes, maxUnflushedMS).Scan(&v.StreamID)
	})
	if err != nil {
		return logVersion{}, fmt.Errorf("%s: new log version: %w", a.Ref, err)
	}
	return v, nil
}
