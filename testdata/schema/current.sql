-- Current generation of the Attune schema, reduced to what the sensor agent
-- reads and writes. Facts from the reference migrations (attune-system/attune):
--   20250101000001 initial setup: enums, update_updated_column();
--   20250101000002 pack system: pack, runtime, runtime_version;
--   20250101000004 trigger/sensor/event/rule: trigger, sensor (placement columns);
--   20250101000005 execution and operations: rule, worker (cordon columns),
--                  sensor_process;
--   20260821000001 pack worker placement: pack.worker_selector/tolerations/affinity;
--   20260902000003 sensor workload assignment: sensor_workload,
--                  sensor_workload_assignment, rule.sensor_worker_*;
--   20260909000001 pack releases: pack_release, pack.active_release;
--   20260909000002 async pack release pins: sensor_workload.pack_release*;
--   20260909000005 pack release object storage: object_key, provider_version;
--   20260916000003 component retirement: retired_at, enabled_override,
--                  effective_enabled.
-- The columns are written in their final shape instead of as ALTERs.
-- Loaded into a fresh database per test (testenv_test.go newTestDB).

CREATE SCHEMA attune;
SET search_path TO attune, public;

CREATE TYPE worker_type_enum AS ENUM ('local', 'remote', 'container');
CREATE TYPE worker_role_enum AS ENUM ('action', 'sensor');
CREATE TYPE sensor_process_status_enum AS ENUM ('starting', 'running', 'stopped', 'failed', 'backoff');
CREATE TYPE worker_status_enum AS ENUM ('active', 'inactive', 'busy', 'error');

CREATE FUNCTION update_updated_column() RETURNS TRIGGER AS $$
BEGIN
    NEW.updated = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE pack (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    description TEXT,
    version TEXT NOT NULL,
    conf_schema JSONB NOT NULL DEFAULT '{}'::jsonb,
    config JSONB NOT NULL DEFAULT '{}'::jsonb,
    meta JSONB NOT NULL DEFAULT '{}'::jsonb,
    is_standard BOOLEAN NOT NULL DEFAULT FALSE,
    worker_selector JSONB NOT NULL DEFAULT '{}'::jsonb,
    worker_tolerations JSONB NOT NULL DEFAULT '[]'::jsonb,
    worker_affinity JSONB NOT NULL DEFAULT '{}'::jsonb,
    active_release BIGINT,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT pack_ref_lowercase CHECK (ref = LOWER(ref)),
    CONSTRAINT pack_ref_format CHECK (ref ~ '^[a-z][a-z0-9_-]+$')
);
CREATE TRIGGER update_pack_updated BEFORE UPDATE ON pack
    FOR EACH ROW EXECUTE FUNCTION update_updated_column();

CREATE TABLE runtime (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    pack BIGINT REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT,
    description TEXT,
    name TEXT NOT NULL,
    aliases TEXT[] NOT NULL DEFAULT '{}'::text[],
    distributions JSONB NOT NULL,
    installation JSONB,
    execution_config JSONB NOT NULL DEFAULT '{}'::jsonb,
    retired_at TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT runtime_ref_lowercase CHECK (ref = LOWER(ref))
);
CREATE TRIGGER update_runtime_updated BEFORE UPDATE ON runtime
    FOR EACH ROW EXECUTE FUNCTION update_updated_column();

CREATE TABLE runtime_version (
    id BIGSERIAL PRIMARY KEY,
    runtime BIGINT NOT NULL REFERENCES runtime(id) ON DELETE CASCADE,
    runtime_ref TEXT NOT NULL,
    version TEXT NOT NULL,
    version_major INT,
    version_minor INT,
    version_patch INT,
    execution_config JSONB NOT NULL DEFAULT '{}'::jsonb,
    distributions JSONB NOT NULL DEFAULT '{}'::jsonb,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    available BOOLEAN NOT NULL DEFAULT TRUE,
    verified_at TIMESTAMPTZ,
    meta JSONB NOT NULL DEFAULT '{}'::jsonb,
    retired_at TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT runtime_version_unique UNIQUE (runtime, version)
);
CREATE TRIGGER update_runtime_version_updated BEFORE UPDATE ON runtime_version
    FOR EACH ROW EXECUTE FUNCTION update_updated_column();

CREATE TABLE trigger (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    pack BIGINT REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT,
    label TEXT NOT NULL,
    description TEXT,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    is_adhoc BOOLEAN NOT NULL DEFAULT FALSE,
    param_schema JSONB,
    out_schema JSONB,
    sensor BIGINT,
    sensor_ref TEXT,
    enabled_override BOOLEAN,
    effective_enabled BOOLEAN GENERATED ALWAYS AS (COALESCE(enabled_override, enabled)) STORED,
    retired_at TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT trigger_ref_lowercase CHECK (ref = LOWER(ref)),
    CONSTRAINT trigger_ref_format CHECK (ref ~ '^[^.]+\.[^.]+$')
);
CREATE TRIGGER update_trigger_updated BEFORE UPDATE ON trigger
    FOR EACH ROW EXECUTE FUNCTION update_updated_column();

CREATE TABLE sensor (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    pack BIGINT REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT,
    label TEXT NOT NULL,
    description TEXT,
    entrypoint TEXT NOT NULL,
    runtime BIGINT NOT NULL REFERENCES runtime(id) ON DELETE CASCADE,
    runtime_ref TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    is_adhoc BOOLEAN NOT NULL DEFAULT FALSE,
    param_schema JSONB,
    config JSONB,
    runtime_version_constraint TEXT,
    worker_selector JSONB NOT NULL DEFAULT '{}'::jsonb,
    worker_tolerations JSONB NOT NULL DEFAULT '[]'::jsonb,
    worker_affinity JSONB NOT NULL DEFAULT '{}'::jsonb,
    enabled_override BOOLEAN,
    effective_enabled BOOLEAN GENERATED ALWAYS AS (COALESCE(enabled_override, enabled)) STORED,
    retired_at TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT sensor_ref_lowercase CHECK (ref = LOWER(ref)),
    CONSTRAINT sensor_ref_format CHECK (ref ~ '^[^.]+\.[^.]+$')
);
ALTER TABLE trigger ADD CONSTRAINT trigger_sensor_fk
    FOREIGN KEY (sensor) REFERENCES sensor(id) ON DELETE SET NULL;
CREATE TRIGGER update_sensor_updated BEFORE UPDATE ON sensor
    FOR EACH ROW EXECUTE FUNCTION update_updated_column();

-- rule.action references action(id) in the reference; the agent never reads
-- actions, so the fixture keeps the column without the foreign key.
CREATE TABLE rule (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    pack BIGINT NOT NULL REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT NOT NULL,
    label TEXT NOT NULL,
    description TEXT,
    action BIGINT,
    action_ref TEXT NOT NULL,
    trigger BIGINT REFERENCES trigger(id) ON DELETE SET NULL,
    trigger_ref TEXT NOT NULL,
    conditions JSONB NOT NULL DEFAULT '[]'::jsonb,
    action_params JSONB DEFAULT '{}'::jsonb,
    trigger_params JSONB DEFAULT '{}'::jsonb,
    enabled BOOLEAN NOT NULL,
    is_adhoc BOOLEAN NOT NULL DEFAULT FALSE,
    sensor_worker_selector JSONB NOT NULL DEFAULT '{}'::jsonb,
    sensor_worker_tolerations JSONB NOT NULL DEFAULT '[]'::jsonb,
    sensor_worker_affinity JSONB NOT NULL DEFAULT '{}'::jsonb,
    enabled_override BOOLEAN,
    effective_enabled BOOLEAN GENERATED ALWAYS AS (COALESCE(enabled_override, enabled)) STORED,
    retired_at TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT rule_ref_lowercase CHECK (ref = LOWER(ref)),
    CONSTRAINT rule_ref_format CHECK (ref ~ '^[^.]+\.[^.]+$')
);
CREATE TRIGGER update_rule_updated BEFORE UPDATE ON rule
    FOR EACH ROW EXECUTE FUNCTION update_updated_column();

CREATE TABLE worker (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    worker_type worker_type_enum NOT NULL,
    worker_role worker_role_enum NOT NULL,
    runtime BIGINT REFERENCES runtime(id) ON DELETE SET NULL,
    host TEXT,
    port INTEGER,
    status worker_status_enum NOT NULL DEFAULT 'active',
    capabilities JSONB,
    meta JSONB,
    last_heartbeat TIMESTAMPTZ,
    cordoned BOOLEAN NOT NULL DEFAULT FALSE,
    cordon_reason TEXT,
    cordoned_by BIGINT,
    cordoned_at TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE TRIGGER update_worker_updated BEFORE UPDATE ON worker
    FOR EACH ROW EXECUTE FUNCTION update_updated_column();

CREATE TABLE sensor_process (
    id BIGSERIAL PRIMARY KEY,
    sensor BIGINT NOT NULL REFERENCES sensor(id) ON DELETE CASCADE,
    sensor_ref TEXT NOT NULL,
    worker BIGINT NOT NULL REFERENCES worker(id) ON DELETE CASCADE,
    worker_name TEXT NOT NULL,
    status sensor_process_status_enum NOT NULL DEFAULT 'starting',
    pid INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_exit_code INTEGER,
    last_signal INTEGER,
    last_started_at TIMESTAMPTZ,
    last_stopped_at TIMESTAMPTZ,
    next_restart_at TIMESTAMPTZ,
    stderr_excerpt TEXT,
    log_artifact_ref TEXT,
    active_rule_count INTEGER NOT NULL DEFAULT 0,
    last_alerted_failure_count INTEGER NOT NULL DEFAULT 0,
    last_alerted_at TIMESTAMPTZ,
    meta JSONB NOT NULL DEFAULT '{}'::jsonb,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT sensor_process_pid_positive CHECK (pid IS NULL OR pid > 0),
    CONSTRAINT sensor_process_failures_nonnegative CHECK (consecutive_failures >= 0),
    CONSTRAINT sensor_process_active_rules_nonnegative CHECK (active_rule_count >= 0),
    CONSTRAINT sensor_process_alerted_failures_nonnegative CHECK (last_alerted_failure_count >= 0)
);
CREATE UNIQUE INDEX ux_sensor_process_sensor_worker ON sensor_process(sensor, worker);
CREATE UNIQUE INDEX ux_sensor_process_sensor_ref_worker_name ON sensor_process(sensor_ref, worker_name);
CREATE TRIGGER update_sensor_process_updated BEFORE UPDATE ON sensor_process
    FOR EACH ROW EXECUTE FUNCTION update_updated_column();

-- event: where the sensor agent records a core.alert when a sensor keeps
-- failing (migration 20250101000004; a TimescaleDB hypertable later, which
-- the agent does not care about).
CREATE TABLE event (
    id BIGSERIAL PRIMARY KEY,
    trigger BIGINT REFERENCES trigger(id) ON DELETE SET NULL,
    trigger_ref TEXT NOT NULL,
    config JSONB,
    payload JSONB,
    source BIGINT REFERENCES sensor(id) ON DELETE SET NULL,
    source_ref TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    rule BIGINT,
    rule_ref TEXT
);

CREATE TABLE pack_release (
    id BIGSERIAL PRIMARY KEY,
    pack BIGINT NOT NULL REFERENCES pack(id) ON DELETE CASCADE,
    pack_ref TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    archive_path TEXT,
    content_path TEXT NOT NULL,
    archive_size BIGINT NOT NULL CHECK (archive_size >= 0),
    manifest JSONB NOT NULL,
    object_key TEXT,
    provider_version TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT pack_release_pack_version_unique UNIQUE (pack, version),
    CONSTRAINT pack_release_pack_id_unique UNIQUE (pack, id),
    CONSTRAINT pack_release_digest_sha256 CHECK (digest ~ '^[0-9a-f]{64}$'),
    CONSTRAINT pack_release_manifest_object CHECK (jsonb_typeof(manifest) = 'object'),
    CONSTRAINT pack_release_object_pointer_complete CHECK (
        (object_key IS NULL AND provider_version IS NULL)
        OR (object_key IS NOT NULL AND provider_version IS NOT NULL))
);
ALTER TABLE pack ADD CONSTRAINT pack_active_release_same_pack
    FOREIGN KEY (id, active_release) REFERENCES pack_release(pack, id)
    DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE sensor_workload (
    id BIGSERIAL PRIMARY KEY,
    sensor BIGINT NOT NULL REFERENCES sensor(id) ON DELETE CASCADE,
    workload_key TEXT NOT NULL,
    pack_release BIGINT REFERENCES pack_release(id) ON DELETE SET NULL,
    pack_release_digest TEXT,
    executable_snapshot JSONB,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT sensor_workload_key_nonempty CHECK (BTRIM(workload_key) <> ''),
    CONSTRAINT uq_sensor_workload_sensor_key UNIQUE (sensor, workload_key),
    CONSTRAINT sensor_workload_release_pin_complete CHECK (
        (pack_release IS NULL AND pack_release_digest IS NULL AND executable_snapshot IS NULL)
        OR (pack_release_digest IS NOT NULL AND executable_snapshot IS NOT NULL)),
    CONSTRAINT sensor_workload_release_digest_sha256 CHECK (
        pack_release_digest IS NULL OR pack_release_digest ~ '^[0-9a-f]{64}$')
);
CREATE TRIGGER update_sensor_workload_updated BEFORE UPDATE ON sensor_workload
    FOR EACH ROW EXECUTE FUNCTION update_updated_column();

CREATE TABLE sensor_workload_assignment (
    workload BIGINT PRIMARY KEY REFERENCES sensor_workload(id) ON DELETE CASCADE,
    worker BIGINT REFERENCES worker(id) ON DELETE RESTRICT,
    worker_instance UUID,
    generation BIGINT NOT NULL DEFAULT 0,
    lease_expires_at TIMESTAMPTZ,
    assigned_at TIMESTAMPTZ,
    renewed_at TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT sensor_workload_assignment_generation_nonnegative CHECK (generation >= 0),
    CONSTRAINT sensor_workload_assignment_owner_complete CHECK (
        (worker IS NULL AND worker_instance IS NULL AND lease_expires_at IS NULL
            AND assigned_at IS NULL AND renewed_at IS NULL)
        OR
        (worker IS NOT NULL AND worker_instance IS NOT NULL AND lease_expires_at IS NOT NULL
            AND assigned_at IS NOT NULL AND renewed_at IS NOT NULL))
);
CREATE TRIGGER update_sensor_workload_assignment_updated BEFORE UPDATE ON sensor_workload_assignment
    FOR EACH ROW EXECUTE FUNCTION update_updated_column();

-- Sensor log streams (CONTRACT §13). Facts from the reference migrations:
--   20250101000001 enums: owner_type_enum, artifact_type_enum,
--                  artifact_retention_enum, artifact_visibility_enum;
--   20250101000007 supporting systems: artifact, artifact_version;
--   20250101000017 artifact log classification: artifact.classification;
--   20260909000003 artifact object storage: body_state, object_key,
--                  provider_version, sha256;
--   20260909000004 immutable log segments: log_stream, log_segment;
--   sensor.log_retention_policy / log_retention_limit (per-sensor override).
-- Only the columns the agent and the test API double use, in final shape.
CREATE TYPE owner_type_enum AS ENUM ('system', 'identity', 'pack', 'action', 'sensor');
CREATE TYPE artifact_type_enum AS ENUM ('file_binary', 'file_datatable', 'file_image', 'file_text', 'other', 'progress', 'url');
CREATE TYPE artifact_retention_enum AS ENUM ('versions', 'days', 'hours', 'minutes');
CREATE TYPE artifact_visibility_enum AS ENUM ('public', 'private');
CREATE TYPE artifact_classification_enum AS ENUM ('general', 'runtime_log');
CREATE TYPE artifact_body_state_enum AS ENUM ('pending', 'ready', 'deleting');

ALTER TABLE sensor
    ADD COLUMN log_retention_policy artifact_retention_enum,
    ADD COLUMN log_retention_limit INTEGER;

CREATE TABLE artifact (
    id BIGSERIAL PRIMARY KEY,
    ref TEXT NOT NULL,
    scope owner_type_enum NOT NULL DEFAULT 'system',
    owner TEXT NOT NULL DEFAULT '',
    type artifact_type_enum NOT NULL,
    visibility artifact_visibility_enum NOT NULL DEFAULT 'private',
    classification artifact_classification_enum NOT NULL DEFAULT 'general',
    name TEXT,
    description TEXT,
    content_type TEXT,
    size_bytes BIGINT,
    data JSONB,
    retention_policy artifact_retention_enum NOT NULL DEFAULT 'versions',
    retention_limit INTEGER NOT NULL DEFAULT 1,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_artifact_ref ON artifact(ref);
CREATE TRIGGER update_artifact_updated BEFORE UPDATE ON artifact
    FOR EACH ROW EXECUTE FUNCTION update_updated_column();

CREATE TABLE artifact_version (
    id BIGSERIAL PRIMARY KEY,
    artifact BIGINT NOT NULL REFERENCES artifact(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    execution BIGINT,
    content_type TEXT,
    size_bytes BIGINT,
    content BYTEA,
    content_json JSONB,
    file_path TEXT,
    meta JSONB,
    created_by TEXT,
    body_state artifact_body_state_enum,
    object_key TEXT,
    provider_version TEXT,
    sha256 TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT uq_artifact_version_artifact_version UNIQUE (artifact, version),
    CONSTRAINT ck_artifact_version_object_metadata CHECK (
        (body_state IS NULL AND object_key IS NULL AND provider_version IS NULL AND sha256 IS NULL)
        OR (body_state = 'pending' AND object_key IS NOT NULL AND provider_version IS NULL AND sha256 IS NULL AND size_bytes IS NULL)
        OR (body_state IN ('ready', 'deleting') AND object_key IS NOT NULL AND provider_version IS NOT NULL
            AND sha256 ~ '^[0-9a-f]{64}$' AND size_bytes IS NOT NULL AND size_bytes >= 0))
);
CREATE UNIQUE INDEX uq_artifact_version_object_key ON artifact_version(object_key) WHERE object_key IS NOT NULL;
CREATE INDEX idx_artifact_version_file_path ON artifact_version(file_path) WHERE file_path IS NOT NULL;

CREATE TABLE log_stream (
    id BIGSERIAL PRIMARY KEY,
    artifact_version BIGINT NOT NULL UNIQUE REFERENCES artifact_version(id) ON DELETE CASCADE,
    max_unflushed_bytes BIGINT NOT NULL CHECK (max_unflushed_bytes > 0),
    max_unflushed_milliseconds BIGINT NOT NULL CHECK (max_unflushed_milliseconds > 0),
    next_sequence BIGINT NOT NULL DEFAULT 0 CHECK (next_sequence >= 0),
    total_bytes BIGINT NOT NULL DEFAULT 0 CHECK (total_bytes >= 0),
    truncated BOOLEAN NOT NULL DEFAULT FALSE,
    sealed BOOLEAN NOT NULL DEFAULT FALSE,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    sealed_at TIMESTAMPTZ
);

CREATE TABLE log_segment (
    id BIGSERIAL PRIMARY KEY,
    stream BIGINT NOT NULL REFERENCES log_stream(id) ON DELETE CASCADE,
    sequence BIGINT NOT NULL CHECK (sequence >= 0),
    byte_start BIGINT NOT NULL CHECK (byte_start >= 0),
    byte_end BIGINT NOT NULL CHECK (byte_end > byte_start),
    size_bytes BIGINT NOT NULL CHECK (size_bytes = byte_end - byte_start),
    sha256 TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    object_key TEXT NOT NULL UNIQUE,
    provider_version TEXT NOT NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT uq_log_segment_stream_sequence UNIQUE (stream, sequence)
);
