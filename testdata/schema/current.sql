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
