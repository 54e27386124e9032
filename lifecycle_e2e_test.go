package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentRunsSensorOfEachRuntime: Python, Node, shell and native sensors
// start under the real agent, each posts its event with a token the API
// issued to that very sensor, and all stop with the agent.
func TestAgentRunsSensorOfEachRuntime(t *testing.T) {
	for _, gen := range []string{"legacy", "current"} {
		t.Run(gen, func(t *testing.T) {
			s := newTestStack(t, gen)
			t.Cleanup(s.killLeftovers)
			sensors := map[string][2]string{
				"python_sensor": {"python_sensor.py", "Python"},
				"node_sensor":   {"node_sensor.js", "Node.js"},
				"shell_sensor":  {"shell_sensor.sh", "Shell"},
				"native_sensor": {"native_sensor", "Native"},
			}
			for name, v := range sensors {
				s.sensorWithRule(name, v[0], v[1], "", true)
			}
			a := s.start()
			events := s.api.waitEvents(t, len(sensors), 60*time.Second)
			seen := map[string]bool{}
			for _, e := range events {
				if e.SensorRef == "" || s.api.issuedTo(e.Token) != e.SensorRef {
					t.Errorf("event %+v not posted with a token issued to its sensor", e)
				}
				if e.TriggerRef != e.SensorRef+"_trigger" {
					t.Errorf("event of %s has trigger_ref %q", e.SensorRef, e.TriggerRef)
				}
				seen[e.SensorRef] = true
			}
			for name := range sensors {
				if !seen["testpack."+name] {
					t.Errorf("no event from testpack.%s", name)
				}
			}
			if gen == "current" {
				var n int
				s.db.pool.QueryRow(t.Context(), `SELECT count(*) FROM sensor_process WHERE status = 'running'
					AND meta->>'manager' = 'attune-sensor-agent'`).Scan(&n)
				if n != len(sensors) {
					t.Errorf("sensor_process running rows = %d, want %d", n, len(sensors))
				}
				// Every sensor runs under its own lease, shortened to the
				// 120 s renewal lease once its process runs.
				if !waitUntil(20*time.Second, func() bool {
					var short int
					s.db.pool.QueryRow(t.Context(), `SELECT count(*) FROM sensor_workload_assignment
						WHERE worker IS NOT NULL AND generation >= 1
						  AND lease_expires_at BETWEEN clock_timestamp() + interval '60 seconds' AND clock_timestamp() + interval '121 seconds'`).Scan(&short)
					return short == len(sensors)
				}) {
					t.Errorf("leases not all shortened to the 120 s renewal lease: %s", leaseRowsText(t, s.db))
				}
			}
			if code := a.stop(syscall.SIGTERM, 40*time.Second); code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			if gen == "current" {
				var held int
				s.db.pool.QueryRow(t.Context(), `SELECT count(*) FROM sensor_workload_assignment WHERE worker IS NOT NULL`).Scan(&held)
				if held != 0 {
					t.Errorf("%d leases still held after a graceful stop: %s", held, leaseRowsText(t, s.db))
				}
			}
			if left := s.sensorPIDs(""); len(left) > 0 {
				t.Errorf("sensor processes outlived the agent: %v", left)
			}
		})
	}
}

// TestAgentFollowsRuleLifecycle drives one sensor through the database and
// the broker: enable its rule → it starts; disable → it stops; enable again
// and touch the sensor row → it restarts; delete the row → it stops. The
// broker is then cut from the broker side; a change made without any prompt
// is still picked up by the 2 s loop, and prompts work after the reconnect.
func TestAgentFollowsRuleLifecycle(t *testing.T) {
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	sensorID, ruleID := s.sensorWithRule("python_sensor", "python_sensor.py", "Python", "", false)
	a := s.start()
	a.waitLog("Attune Sensor Agent is ready", 30*time.Second)
	if p := s.sensorPIDs(""); len(p) != 0 {
		t.Fatalf("sensor running without an enabled rule: %v", p)
	}
	ref := "testpack.python_sensor"

	s.db.exec(`UPDATE rule SET enabled = true WHERE id = $1`, ruleID)
	s.publish("rule.enabled", "RuleEnabled", map[string]any{"rule_id": ruleID, "rule_ref": "testpack.python_sensor_rule",
		"trigger_ref": "testpack.python_sensor_trigger"})
	pid1 := s.waitSensorRunning(a, ref, 20*time.Second)
	s.api.waitEvents(t, 1, 20*time.Second)

	s.db.exec(`UPDATE rule SET enabled = false WHERE id = $1`, ruleID)
	s.publish("rule.disabled", "RuleDisabled", map[string]any{"rule_id": ruleID, "rule_ref": "testpack.python_sensor_rule",
		"trigger_ref": "testpack.python_sensor_trigger"})
	s.waitSensorGone(a, ref, 20*time.Second)

	s.db.exec(`UPDATE rule SET enabled = true WHERE id = $1`, ruleID)
	s.publish("rule.enabled", "RuleEnabled", map[string]any{"rule_id": ruleID, "rule_ref": "testpack.python_sensor_rule",
		"trigger_ref": "testpack.python_sensor_trigger"})
	pid2 := s.waitSensorRunning(a, ref, 20*time.Second)
	if pid2 == pid1 {
		t.Fatalf("same pid %d after disable/enable", pid1)
	}
	s.db.exec(`UPDATE sensor SET label = 'changed' WHERE id = $1`, sensorID)
	if !waitUntil(20*time.Second, func() bool { p := s.sensorPIDs(ref); return len(p) > 0 && !slices.Contains(p, pid2) }) {
		t.Fatalf("sensor not restarted after its row changed; pids %v", s.sensorPIDs(ref))
	}

	// Cut the broker connection from the broker side.
	testBrokerCtl(t, "close_all_connections", "-p", testVhostName(t, s.amqpURL), "--limit", "100", "test cuts the broker")
	s.db.exec(`DELETE FROM sensor WHERE id = $1`, sensorID) // no prompt at all: the 2 s loop must see it
	s.waitSensorGone(a, ref, 20*time.Second)

	// A new sensor announced only by a prompt after the reconnect.
	s.sensorWithRule("node_sensor", "node_sensor.js", "Node.js", "", true)
	a.waitLog("broker available", 60*time.Second)
	s.publish("rule.created", "RuleCreated", map[string]any{"rule_id": 1, "rule_ref": "testpack.node_sensor_rule",
		"trigger_ref": "testpack.node_sensor_trigger", "action_ref": "core.noop", "enabled": true})
	s.waitSensorRunning(a, "testpack.node_sensor", 20*time.Second)

	if code := a.stop(syscall.SIGTERM, 40*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if left := s.sensorPIDs(""); len(left) > 0 {
		t.Errorf("sensor processes outlived the agent: %v", left)
	}
}

// TestSensorEnvironmentContract: a sensor sees exactly the baseline, the
// passthrough names and the ATTUNE_* variables of the contract, and none of
// the agent's secrets.
func TestSensorEnvironmentContract(t *testing.T) {
	for _, gen := range []string{"legacy", "current"} {
		t.Run(gen, func(t *testing.T) { testSensorEnvironment(t, gen) })
	}
}

func testSensorEnvironment(t *testing.T, gen string) {
	s := newTestStack(t, gen)
	t.Cleanup(s.killLeftovers)
	dump := filepath.Join(s.dir, "env.json")
	s.sensorWithRule("envdump", "envdump.py", "Python", `{"dump_path": "`+dump+`"}`, true)
	a := s.start("ATTUNE__SENSOR__PASSTHROUGH_ENV=PASS_ME", "PASS_ME=yes", "NOT_ME=no", "TZ=UTC")
	var env map[string]string
	if !waitUntil(30*time.Second, func() bool {
		b, err := os.ReadFile(dump)
		return err == nil && json.Unmarshal(b, &env) == nil
	}) {
		t.Fatalf("envdump never wrote %s; agent stderr:\n%s", dump, a.stderr.String())
	}
	want := []string{"ATTUNE_API_TOKEN", "ATTUNE_API_URL", "ATTUNE_ARTIFACTS_DIR", "ATTUNE_ALLOW_INSECURE_NOTIFIER_WS",
		"ATTUNE_LOG_FORMAT", "ATTUNE_LOG_LEVEL", "ATTUNE_NOTIFIER_WS_URL", "ATTUNE_PACK_REF", "ATTUNE_SENSOR_CONFIG_JSON",
		"ATTUNE_SENSOR_ID", "ATTUNE_SENSOR_REF", "ATTUNE_SENSOR_TRIGGERS", "ATTUNE_SENSOR_TRIGGER_TYPES"}
	if gen == "current" { // the lease the process runs under
		want = append(want, "ATTUNE_SENSOR_WORKLOAD_ID", "ATTUNE_SENSOR_ASSIGNMENT_GENERATION")
		var workload, generation string
		s.db.pool.QueryRow(t.Context(), `SELECT a.workload::text, a.generation::text FROM sensor_workload_assignment a
			JOIN sensor_workload w ON w.id = a.workload JOIN sensor se ON se.id = w.sensor WHERE se.ref = 'testpack.envdump'`).Scan(&workload, &generation)
		if env["ATTUNE_SENSOR_WORKLOAD_ID"] != workload || env["ATTUNE_SENSOR_ASSIGNMENT_GENERATION"] != generation || generation == "" {
			t.Errorf("lease variables %q/%q, want the assignment's %q/%q", env["ATTUNE_SENSOR_WORKLOAD_ID"],
				env["ATTUNE_SENSOR_ASSIGNMENT_GENERATION"], workload, generation)
		}
	}
	var gotAttune []string
	for k := range env {
		if strings.HasPrefix(k, "ATTUNE_") {
			gotAttune = append(gotAttune, k)
		}
	}
	slices.Sort(want)
	slices.Sort(gotAttune)
	if !slices.Equal(gotAttune, want) {
		t.Errorf("ATTUNE_* set:\n got %v\nwant %v", gotAttune, want)
	}
	if env["PASS_ME"] != "yes" || env["TZ"] != "UTC" || env["PATH"] == "" {
		t.Errorf("baseline/passthrough missing: PASS_ME=%q TZ=%q PATH=%q", env["PASS_ME"], env["TZ"], env["PATH"])
	}
	if _, ok := env["NOT_ME"]; ok {
		t.Error("a variable outside the baseline and passthrough reached the sensor")
	}
	if env["ATTUNE_SENSOR_REF"] != "testpack.envdump" || env["ATTUNE_PACK_REF"] != "testpack" ||
		env["ATTUNE_SENSOR_TRIGGER_TYPES"] != `["testpack.envdump_trigger"]` {
		t.Errorf("sensor identity wrong: %v", env)
	}
	var triggers []map[string]any
	if err := json.Unmarshal([]byte(env["ATTUNE_SENSOR_TRIGGERS"]), &triggers); err != nil || len(triggers) != 1 ||
		triggers[0]["ref"] != "testpack.envdump_rule" || triggers[0]["trigger_ref"] != "testpack.envdump_trigger" {
		t.Errorf("ATTUNE_SENSOR_TRIGGERS = %s", env["ATTUNE_SENSOR_TRIGGERS"])
	}
	for k, v := range env {
		for _, secret := range []string{s.dbURL, s.amqpURL, fakeAPISecret} {
			if strings.Contains(v, secret) {
				t.Errorf("secret reached the sensor in %s", k)
			}
		}
	}
	a.stop(syscall.SIGTERM, 40*time.Second)
}
