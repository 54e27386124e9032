-- The rows the Attune API would write when the demo pack is registered and
-- one rule is enabled on its trigger: pack `demo`, the Python runtime, sensor
-- demo.ticker (demo/packs/demo/sensors/ticker.py), trigger demo.tick and rule
-- demo.on_tick. The agent runs a sensor while it is enabled and has an
-- enabled rule on an enabled trigger.
--
-- psql variable: sensor_config, the sensor's config JSON (interval_seconds).
SET search_path TO attune, public;

INSERT INTO pack (ref, label, description, version)
VALUES ('demo', 'Demo pack', 'make demo', '1.0.0');

INSERT INTO runtime (ref, name, distributions, execution_config)
VALUES ('core.python', 'Python', '{}',
        '{"interpreter": {"binary": "python3", "args": ["-u"], "file_extension": ".py"}}');

INSERT INTO sensor (ref, pack, pack_ref, label, entrypoint, runtime, runtime_ref, enabled, config)
SELECT 'demo.ticker', p.id, p.ref, 'Ticker', 'ticker.py', r.id, r.ref, true, :'sensor_config'::jsonb
FROM pack p, runtime r WHERE p.ref = 'demo' AND r.ref = 'core.python';

INSERT INTO trigger (ref, pack, pack_ref, label, enabled, sensor, sensor_ref)
SELECT 'demo.tick', s.pack, s.pack_ref, 'Tick', true, s.id, s.ref FROM sensor s WHERE s.ref = 'demo.ticker';

INSERT INTO rule (ref, pack, pack_ref, label, action_ref, trigger, trigger_ref, trigger_params, enabled)
SELECT 'demo.on_tick', t.pack, t.pack_ref, 'On tick', 'core.echo', t.id, t.ref,
       '{"message": "hello from the demo sensor"}', true
FROM trigger t WHERE t.ref = 'demo.tick';
