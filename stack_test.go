package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// testStack is one isolated Attune around an agent under test: its own
// database (of one schema generation), vhost, fake API and directories.
type testStack struct {
	t       *testing.T
	gen     string
	name    string // worker name
	dbURL   string
	amqpURL string
	api     *fakeAttuneAPI
	dir     string
	db      *seedDB
	packID  int64
	// release is testpack's active release on the current generation,
	// published at the first start (leased sensors need one to pin).
	release *packRelease
	rt      map[string]int64 // runtime name → id
}

// newTestStack builds the stack and seeds pack `testpack` (a copy of
// testdata/packs/testpack) with one runtime per kind.
func newTestStack(t *testing.T, gen string) *testStack {
	t.Helper()
	s := &testStack{t: t, gen: gen, dbURL: newTestDB(t, gen), amqpURL: newTestVhost(t),
		api: newFakeAttuneAPI(t), dir: t.TempDir(), rt: map[string]int64{},
		name: "sensor-test-" + randomSuffix()}
	if out, err := exec.Command("cp", "-a", fixturePacksDir(t), filepath.Join(s.dir, "packs")).CombinedOutput(); err != nil {
		t.Fatalf("copy fixture packs: %v: %s", err, out)
	}
	s.db = newSeedDB(t, s.dbURL)
	s.packID = s.db.pack("testpack")
	if gen == "legacy" {
		s.api.preLeaseAPI()
	} else {
		s.api.useDatabase(t, s.dbURL)
		s.ensureRelease() // leased sensors need a release to pin; it links packs/testpack, so later scripts count
	}
	for name, cfg := range map[string]string{
		"Python":  `{"interpreter": {"binary": "python3", "args": ["-u"], "file_extension": ".py"}}`,
		"Node.js": `{"interpreter": {"binary": "node", "file_extension": ".js"}}`,
		"Shell":   `{"interpreter": {"binary": "/bin/bash", "file_extension": ".sh"}}`,
		"Native":  `{"interpreter": {"binary": ""}}`,
	} {
		s.rt[name] = s.db.runtime("core."+strings.ToLower(strings.TrimSuffix(name, ".js")), name, cfg)
	}
	return s
}

// sensorWithRule seeds sensor testpack.<name> on runtime rtName with one
// trigger testpack.<name>_trigger and one rule testpack.<name>_rule.
func (s *testStack) sensorWithRule(name, entrypoint, rtName, config string, ruleEnabled bool) (sensorID, ruleID int64) {
	s.t.Helper()
	sensorID = s.db.sensor(s.packID, "testpack", "testpack."+name, entrypoint, s.rt[rtName], config)
	trig := s.db.trigger(s.packID, "testpack", "testpack."+name+"_trigger", sensorID)
	ruleID = s.db.rule(s.packID, "testpack", "testpack."+name+"_rule", trig, `{"n": 1}`, ruleEnabled)
	return sensorID, ruleID
}

// writeSensorScript writes an executable script into testpack/sensors.
func (s *testStack) writeSensorScript(name, body string) {
	s.t.Helper()
	p := filepath.Join(s.dir, "packs", "testpack", "sensors", name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		s.t.Fatal(err)
	}
}

// start runs the agent against the stack (on the current generation after
// publishing testpack's release, once).
func (s *testStack) start(extra ...string) *agentProc {
	s.t.Helper()
	s.ensureRelease()
	env := agentEnv(s.dbURL, s.amqpURL, s.api.URL(), s.dir,
		append(extra, "LANG=C.UTF-8", "ATTUNE__SENSOR__WORKER_NAME="+s.name)...)
	return startAgent(s.t, env)
}

// publish sends a lifecycle envelope to attune.events with routing key key.
func (s *testStack) publish(key, messageType string, payload any) {
	s.t.Helper()
	conn, err := amqp.Dial(s.amqpURL)
	if err != nil {
		s.t.Fatalf("dial broker: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		s.t.Fatalf("open channel: %v", err)
	}
	body, _ := json.Marshal(map[string]any{
		"message_id": "6f1c1f0e-8a53-4c52-9c55-0d8f6f2b1a01", "correlation_id": "6f1c1f0e-8a53-4c52-9c55-0d8f6f2b1a02",
		"message_type": messageType, "version": "1.0", "timestamp": time.Now().UTC().Format(time.RFC3339),
		"headers": map[string]any{"retry_count": 0}, "payload": payload,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ch.PublishWithContext(ctx, "attune.events", key, false, false,
		amqp.Publishing{ContentType: "application/json", Body: body}); err != nil {
		s.t.Fatalf("publish %s: %v", key, err)
	}
}

// sensorPIDs lists the live processes (sensor and descendants) that carry
// this stack's API URL in their environment, i.e. this stack's sensors.
func (s *testStack) sensorPIDs(ref string) []int {
	want := "ATTUNE_API_URL=" + s.api.URL()
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !procEnvHas(env, want) || !procEnvHasName(env, "ATTUNE_SENSOR_REF") {
			continue // not ours, or the agent itself (it has the API URL but no sensor ref)
		}
		if ref != "" && !procEnvHas(env, "ATTUNE_SENSOR_REF="+ref) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && isZombieStat(string(st)) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// procEnvHas reports whether a /proc/<pid>/environ image holds entry
// ("NAME=value") as a whole entry. A substring match is not enough: another
// stack's API URL may extend this one (…:4123 is a prefix of …:41234), and
// its processes are not ours to count or kill.
func procEnvHas(environ []byte, entry string) bool {
	return bytes.Contains(append([]byte{0}, environ...), []byte("\x00"+entry+"\x00"))
}

// procEnvHasName reports whether a /proc/<pid>/environ image sets name.
func procEnvHasName(environ []byte, name string) bool {
	return bytes.Contains(append([]byte{0}, environ...), []byte("\x00"+name+"="))
}

// TestProcEnvHasWholeEntry: the process filter of the harness matches whole
// entries only, so a neighbour whose URL extends ours is not taken for ours.
func TestProcEnvHasWholeEntry(t *testing.T) {
	env := []byte("PATH=/bin\x00ATTUNE_API_URL=http://127.0.0.1:41234\x00XATTUNE_SENSOR_REF=a.b\x00")
	for _, tc := range []struct {
		entry string
		want  bool
	}{
		{"ATTUNE_API_URL=http://127.0.0.1:41234", true},
		{"ATTUNE_API_URL=http://127.0.0.1:4123", false},
		{"PATH=/bin", true},
		{"ATTUNE_SENSOR_REF=a.b", false},
	} {
		if got := procEnvHas(env, tc.entry); got != tc.want {
			t.Errorf("procEnvHas(%q) = %v, want %v", tc.entry, got, tc.want)
		}
	}
	if procEnvHasName(env, "ATTUNE_SENSOR_REF") || !procEnvHasName(env, "XATTUNE_SENSOR_REF") {
		t.Error("procEnvHasName matched inside another variable's name")
	}
}

// isZombieStat reports whether a /proc/<pid>/stat line is a zombie's.
func isZombieStat(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// waitSensorRunning waits until a process of sensor ref runs and returns its pid.
func (s *testStack) waitSensorRunning(a *agentProc, ref string, timeout time.Duration) int {
	s.t.Helper()
	var pid int
	if !waitUntil(timeout, func() bool {
		p := s.sensorPIDs(ref)
		if len(p) > 0 {
			pid = p[0]
			return true
		}
		return false
	}) {
		s.t.Fatalf("sensor %s never started within %s; agent stderr:\n%s", ref, timeout, a.stderr.String())
	}
	return pid
}

// waitSensorGone waits until no process of sensor ref ("" = any) is left.
func (s *testStack) waitSensorGone(a *agentProc, ref string, timeout time.Duration) {
	s.t.Helper()
	if !waitUntil(timeout, func() bool { return len(s.sensorPIDs(ref)) == 0 }) {
		s.t.Fatalf("sensor %q still running after %s (pids %v); agent stderr:\n%s", ref, timeout, s.sensorPIDs(ref), a.stderr.String())
	}
}

// killLeftovers is a last-resort cleanup so a failing test leaves nothing behind.
func (s *testStack) killLeftovers() {
	for _, pid := range s.sensorPIDs("") {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// workerRow reads the agent's worker row.
func (s *testStack) workerRow() (status string, caps map[string]any, lastBeat time.Time) {
	s.t.Helper()
	var raw []byte
	err := s.db.pool.QueryRow(context.Background(),
		`SELECT status::text, capabilities, last_heartbeat FROM worker WHERE name = $1`, s.name).Scan(&status, &raw, &lastBeat)
	if err != nil {
		s.t.Fatalf("read worker %s: %v", s.name, err)
	}
	json.Unmarshal(raw, &caps)
	return status, caps, lastBeat
}

// ensureRelease publishes testpack's release on the current generation.
func (s *testStack) ensureRelease() {
	if s.gen == "legacy" || s.release != nil {
		return
	}
	r := publishRelease(s.t, s.db, filepath.Join(s.dir, "packs"), "testpack", s.packID, "1.0.0")
	s.release = &r
}
