package main

import (
	"context"
	"encoding/json"
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
// sensor in one statement (one round trip per start), correcting only the
// four policy columns of an existing row; the oldest row of a ref wins.
// Retention comes from the sensor row when the schema has the columns.
func (r *pgLogRows) ensureArtifacts(ctx context.Context, spec sensorSpec) ([2]logArtifact, error) {
	var out [2]logArtifact
	policy, limit := "NULL::artifact_retention_enum", "NULL::integer"
	if r.schema.SensorLogRetention {
		policy, limit = "s.log_retention_policy", "s.log_retention_limit"
	}
	rows, err := r.pool.Query(ctx, `
WITH want AS (
    SELECT x.stream, 'sensor.' || $1 || '.' || x.stream AS ref,
           COALESCE(`+policy+`, $3::artifact_retention_enum) AS policy, COALESCE(`+limit+`, $4::integer) AS lim
      FROM unnest(ARRAY['stdout', 'stderr']) AS x(stream)
      LEFT JOIN sensor s ON s.id = $2
), found AS (
    SELECT DISTINCT ON (a.ref) a.id, a.ref FROM artifact a JOIN want w ON w.ref = a.ref ORDER BY a.ref, a.id
), fixed AS (
    UPDATE artifact a SET visibility = 'private', classification = 'runtime_log',
           retention_policy = w.policy, retention_limit = w.lim
      FROM found f JOIN want w ON w.ref = f.ref
     WHERE a.id = f.id
       AND (a.visibility <> 'private' OR a.classification <> 'runtime_log'
            OR a.retention_policy <> w.policy OR a.retention_limit <> w.lim)
    RETURNING a.id
), created AS (
    INSERT INTO artifact (ref, scope, owner, type, visibility, classification,
                          retention_policy, retention_limit, name, description, content_type)
    SELECT w.ref, 'sensor', $1, 'file_text', 'private', 'runtime_log', w.policy, w.lim,
           $1 || ' sensor ' || w.stream || ' log', 'Rotating ' || w.stream || ' log for sensor ''' || $1 || '''', 'text/plain'
      FROM want w WHERE NOT EXISTS (SELECT 1 FROM found f WHERE f.ref = w.ref)
    RETURNING id, ref
)
SELECT ref, id FROM found UNION ALL SELECT ref, id FROM created`,
		spec.Ref, spec.ID, defaultSensorLogRetentionPolicy, defaultSensorLogRetentionLimit)
	if err != nil {
		return out, fmt.Errorf("sensor %s: log artifacts: %w", spec.Ref, err)
	}
	ids := map[string]int64{}
	for rows.Next() {
		var ref string
		var id int64
		if err := rows.Scan(&ref, &id); err != nil {
			rows.Close()
			return out, fmt.Errorf("sensor %s: log artifacts: %w", spec.Ref, err)
		}
		ids[ref] = id
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("sensor %s: log artifacts: %w", spec.Ref, err)
	}
	for i, stream := range sensorLogStreams {
		ref := sensorLogArtifactRef(spec.Ref, stream)
		id, ok := ids[ref]
		if !ok {
			return out, fmt.Errorf("sensor %s: log artifact %s neither found nor created", spec.Ref, ref)
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
