package main

// The end-to-end injection test: a Python sensor run by the agent inside a
// stock Debian root filesystem. Kept apart from rootfs_test.go because it
// needs the whole merged agent and the services.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// rootfsProbeSensor is the Python sensor of TestRootfsStockImageRunsPythonSensor:
// it records its pid, posts one event with its token and reports the names of
// its environment, then idles like a long-running sensor.
const rootfsProbeSensor = `import json, os, time, urllib.request
with open("/tmp/probe-sensor.pid", "w") as f:
    f.write(str(os.getpid()))
body = json.dumps({"trigger_ref": "gotest.tick", "payload": {
    "sensor_ref": os.environ["ATTUNE_SENSOR_REF"],
    "env_names": sorted(os.environ),
}}).encode()
req = urllib.request.Request(os.environ["ATTUNE_API_URL"] + "/api/v1/events", data=body,
    headers={"Authorization": "Bearer " + os.environ["ATTUNE_API_TOKEN"], "Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=10).read()
while True:
    time.sleep(3600)
`

// TestRootfsStockImageRunsPythonSensor is the end-to-end check of injection:
// the agent, installed by its own `install` into a stock Debian+python3 root
// filesystem, registers against the host's PostgreSQL and RabbitMQ, launches
// a Python pack sensor with the image's /usr/bin/python3, the sensor posts an
// event with its token to an in-test API, the healthcheck passes from
// outside, and SIGTERM deregisters and leaves no sensor behind.
//
// FOR THE LEAD: needs the merged agent (cli.go wiring, registry, launcher,
// token client); until then rootfsRequireWiredCLI skips it. The seed SQL
// follows testdata/schema/current.sql on main.
func TestRootfsStockImageRunsPythonSensor(t *testing.T) {
	lower := rootfsStock(t)
	bin := buildAgent(t)
	rootfsRequireWiredCLI(t, bin)
	dbURL := newTestDB(t, "current")
	amqpURL := newTestVhost(t)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	seed := []string{
		`SET search_path = attune, public`,
		`INSERT INTO pack (ref, label, version) VALUES ('gotest', 'gotest', '1.0.0')`,
		`INSERT INTO runtime (ref, name, distributions, execution_config) VALUES ('core.python', 'Python', '{}',
			'{"interpreter": {"binary": "python3", "args": ["-u"], "file_extension": ".py"}}')`,
		`INSERT INTO sensor (ref, pack, pack_ref, label, entrypoint, runtime, runtime_ref, enabled)
			SELECT 'gotest.probe', p.id, p.ref, 'probe', 'probe.py', r.id, r.ref, true FROM pack p, runtime r
			WHERE p.ref = 'gotest' AND r.ref = 'core.python'`,
		`INSERT INTO trigger (ref, pack, pack_ref, label, enabled, sensor, sensor_ref)
			SELECT 'gotest.tick', s.pack, s.pack_ref, 'tick', true, s.id, s.ref FROM sensor s WHERE s.ref = 'gotest.probe'`,
		`INSERT INTO rule (ref, pack, pack_ref, label, action_ref, trigger, trigger_ref, enabled)
			SELECT 'gotest.on_tick', t.pack, t.pack_ref, 'on tick', 'core.noop', t.id, t.ref, true FROM trigger t WHERE t.ref = 'gotest.tick'`,
	}
	for _, q := range seed {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatalf("seed %q: %v", q, err)
		}
	}

	events := make(chan rootfsEvent, 4)
	api := httptest.NewServer(rootfsFakeAPI(t, events))
	defer api.Close()

	o := newRootfsOverlay(t, lower)
	rootfsInstallAgent(t, o, bin)
	sensorDir := filepath.Join(o.upper, "opt/attune/packs/gotest/sensors")
	if err := os.MkdirAll(sensorDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sensorDir, "probe.py"), []byte(rootfsProbeSensor), 0o644); err != nil {
		t.Fatal(err)
	}
	worker := "sensor-rootfs-" + randomSuffix()
	env := []string{rootfsDebianPath, "HOME=/root", "LANG=C.UTF-8",
		"ATTUNE_CONFIG=/nonexistent/config.yaml",
		"ATTUNE__DATABASE__URL=" + dbURL,
		"ATTUNE__MESSAGE_QUEUE__URL=" + amqpURL, "ATTUNE_MQ_URL=" + amqpURL,
		"ATTUNE__SECURITY__JWT_SECRET=rootfs-test-secret",
		"ATTUNE_API_URL=" + api.URL,
		"ATTUNE_PACKS_BASE_DIR=/opt/attune/packs",
		"ATTUNE__RUNTIME_ENVS_DIR=/opt/attune/runtime_envs",
		"ATTUNE__ARTIFACTS_DIR=/opt/attune/artifacts",
		"ATTUNE__SENSOR__WORKER_NAME=" + worker,
		"ATTUNE__SENSOR__HEARTBEAT_INTERVAL=1",
		"ATTUNE__SENSOR__SHUTDOWN_TIMEOUT=10",
		"ATTUNE_SENSOR_STATUS_FILE=/tmp/attune-sensor-agent.status.json",
	}
	cmd := o.command(ctx, "chroot", "{root}", "/opt/attune/agent/attune-sensor-agent")
	cmd.Env = env
	var logs rootfsSyncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent output:\n%s", logs.String())
		}
	})

	select {
	case ev := <-events:
		if ev.TriggerRef != "gotest.tick" || ev.Payload.SensorRef != "gotest.probe" {
			t.Errorf("event: %+v", ev)
		}
		for _, name := range ev.Payload.EnvNames {
			if strings.HasPrefix(name, "ATTUNE__") || name == "ATTUNE_MQ_URL" {
				t.Errorf("the sensor inherited the agent's %s", name)
			}
		}
	case err := <-exited:
		t.Fatalf("agent exited before the sensor posted an event: %v", err)
	case <-ctx.Done():
		t.Fatal("no event from the Python sensor within the deadline")
	}

	if r := rootfsRun(t, os.Environ(), bin, "healthcheck", "--status-file",
		filepath.Join(o.upper, "tmp/attune-sensor-agent.status.json")); r.code != 0 {
		t.Errorf("healthcheck of the running agent: exit %d: %s", r.code, r.stderr)
	}
	var status string
	if err := db.QueryRow(ctx, `SELECT status::text FROM attune.worker WHERE name = $1`, worker).Scan(&status); err != nil || status != "active" {
		t.Errorf("worker row while running: status %q, %v", status, err)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("agent exit after SIGTERM: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("agent did not stop after SIGTERM")
	}
	if !strings.Contains(logs.String(), "Attune Sensor Agent shutdown complete") {
		t.Error("no shutdown-complete log line")
	}
	if err := db.QueryRow(ctx, `SELECT status::text FROM attune.worker WHERE name = $1`, worker).Scan(&status); err != nil || status != "inactive" {
		t.Errorf("worker row after shutdown: status %q, %v", status, err)
	}
	if b, err := os.ReadFile(filepath.Join(o.upper, "tmp/probe-sensor.pid")); err != nil {
		t.Errorf("sensor pid file: %v", err)
	} else if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid <= 0 || healthPIDAlive(pid) {
		t.Errorf("sensor pid %q outlived the agent", b)
	}
}

// rootfsEvent is what the probe sensor posts.
type rootfsEvent struct {
	TriggerRef string `json:"trigger_ref"`
	Payload    struct {
		SensorRef string   `json:"sensor_ref"`
		EnvNames  []string `json:"env_names"`
	} `json:"payload"`
}

// rootfsFakeAPI stands in for the Attune API: it issues sensor tokens
// (CONTRACT §6) and accepts events made with them.
func rootfsFakeAPI(t *testing.T, events chan<- rootfsEvent) http.Handler {
	const token = "sensor-token-rootfs"
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/internal/sensor-token", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			http.Error(w, "no worker token", http.StatusUnauthorized)
			return
		}
		var req struct {
			SensorRef    string   `json:"sensor_ref"`
			PackRef      string   `json:"pack_ref"`
			TriggerTypes []string `json:"trigger_types"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("sensor-token request: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{
			"identity_id": 1, "sensor_ref": req.SensorRef, "pack_ref": req.PackRef, "token": token,
			"expires_at":    time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339),
			"trigger_types": req.TriggerTypes, "permission_set_refs": []string{},
		}})
	})
	mux.HandleFunc("POST /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "bad sensor token", http.StatusUnauthorized)
			return
		}
		var ev rootfsEvent
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case events <- ev:
		default:
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"data": {"id": 1}}`)
	})
	return mux
}

// rootfsSyncBuffer collects a child's output from two pipes at once.
type rootfsSyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *rootfsSyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *rootfsSyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
