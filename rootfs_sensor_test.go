package main

// The end-to-end injection test: a Python sensor run by the agent inside a
// stock Debian root filesystem. Kept apart from rootfs_test.go because it
// needs the whole merged agent and the services.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRootfsStockImageRunsPythonSensor is the end-to-end check of injection:
// the agent, installed by its own `install` into a stock Debian+python3 root
// filesystem, registers against the host's PostgreSQL and RabbitMQ (same
// network namespace), launches the fixture Python sensors of
// testdata/packs/testpack with the image's /usr/bin/python3, the sensor posts
// an event with its token to the fake API, the healthcheck passes from
// outside, and SIGTERM deregisters and leaves no sensor behind.
func TestRootfsStockImageRunsPythonSensor(t *testing.T) {
	lower := rootfsStock(t)
	bin := buildAgent(t)
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	_, ruleID := s.sensorWithRule("python_sensor", "python_sensor.py", "Python", "", true)
	s.sensorWithRule("envdump", "envdump.py", "Python", `{"dump_path": "/tmp/envdump.json"}`, true)

	o := newRootfsOverlay(t, lower)
	rootfsInstallAgent(t, o, bin)
	packs := filepath.Join(o.upper, "opt/attune/packs")
	if err := os.MkdirAll(packs, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(s.dir, "packs")+"/.", packs).CombinedOutput(); err != nil { // with the published release
		t.Fatalf("copy fixture packs into the root filesystem: %v: %s", err, out)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const statusInside = "/tmp/attune-sensor-agent.status.json"
	cmd := o.command(ctx, "chroot", "{root}", "/opt/attune/agent/attune-sensor-agent")
	cmd.Env = []string{rootfsDebianPath, "HOME=/root", "LANG=C.UTF-8",
		"ATTUNE_CONFIG=/nonexistent/config.yaml",
		"ATTUNE__DATABASE__URL=" + s.dbURL,
		"ATTUNE__MESSAGE_QUEUE__URL=" + s.amqpURL, "ATTUNE_MQ_URL=" + s.amqpURL,
		"ATTUNE__SECURITY__JWT_SECRET=" + fakeAPISecret,
		"ATTUNE_API_URL=" + s.api.URL(),
		"ATTUNE_PACKS_BASE_DIR=/opt/attune/packs",
		"ATTUNE__RUNTIME_ENVS_DIR=/opt/attune/runtime_envs",
		"ATTUNE__ARTIFACTS_DIR=/opt/attune/artifacts",
		"ATTUNE__SENSOR__WORKER_NAME=" + s.name,
		"ATTUNE__SENSOR__HEARTBEAT_INTERVAL=1",
		"ATTUNE__SENSOR__SHUTDOWN_TIMEOUT=10",
		"ATTUNE_SENSOR_STATUS_FILE=" + statusInside,
	}
	var logs syncBuffer
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

	ev := s.api.waitEvents(t, 1, time.Minute)[0]
	if ev.SensorRef != "testpack.python_sensor" || ev.TriggerRef != "testpack.python_sensor_trigger" ||
		ev.TriggerInstanceID != "rule_"+strconv.FormatInt(ruleID, 10) || ev.Payload["language"] != "python" {
		t.Errorf("event from the Python sensor: %v", ev)
	}

	// The sensor runs the image's interpreter on the pack file, both named
	// by their paths inside the root filesystem.
	py := rootfsSensorCmdline(t, s, "testpack.python_sensor")
	// Under a lease the pack is the pinned release's tree.
	script := "/opt/attune/packs/.releases/sha256/" + s.release.Digest + "/pack/sensors/python_sensor.py"
	if want := []string{"/usr/bin/python3", "-u", script}; !slices.Equal(py, want) {
		t.Errorf("python sensor command line %q, want %q", py, want)
	}
	var env map[string]string
	dump := filepath.Join(o.upper, "tmp/envdump.json")
	if !waitUntil(30*time.Second, func() bool {
		b, err := os.ReadFile(dump)
		return err == nil && json.Unmarshal(b, &env) == nil
	}) {
		t.Fatalf("envdump never wrote /tmp/envdump.json inside the root filesystem")
	}
	if env["PATH"] != strings.TrimPrefix(rootfsDebianPath, "PATH=") || env["ATTUNE_ARTIFACTS_DIR"] != "/opt/attune/artifacts" {
		t.Errorf("sensor environment: PATH %q, ATTUNE_ARTIFACTS_DIR %q", env["PATH"], env["ATTUNE_ARTIFACTS_DIR"])
	}
	for k, v := range env {
		if strings.HasPrefix(k, "ATTUNE__") || k == "ATTUNE_MQ_URL" || strings.Contains(v, fakeAPISecret) || strings.Contains(v, s.dbURL) {
			t.Errorf("the sensor inherited the agent's %s", k)
		}
	}
	stdout := filepath.Join(o.upper, "opt/attune/artifacts/sensors/testpack.python_sensor/stdout.log")
	if !waitUntil(10*time.Second, func() bool {
		b, _ := os.ReadFile(stdout)
		return strings.Contains(string(b), "python sensor ready")
	}) {
		t.Errorf("the sensor's stdout never reached %s inside the root filesystem", stdout)
	}

	if r := rootfsRun(t, os.Environ(), bin, "healthcheck", "--status-file", filepath.Join(o.upper, statusInside)); r.code != 0 {
		t.Errorf("healthcheck of the running agent: exit %d: %s", r.code, r.stderr)
	}
	if status, _, _ := s.workerRow(); status != "active" {
		t.Errorf("worker row while running: status %q", status)
	}
	if pids := s.sensorPIDs(""); len(pids) != 2 {
		t.Errorf("want 2 sensor processes while running, got %v", pids)
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
	if status, _, _ := s.workerRow(); status != "inactive" {
		t.Errorf("worker row after shutdown: status %q", status)
	}
	if pids := s.sensorPIDs(""); len(pids) != 0 {
		t.Errorf("sensor processes %v outlived the agent", pids)
	}
	if _, err := os.Stat(filepath.Join(o.upper, statusInside)); err == nil {
		t.Error("the status file outlived a clean shutdown")
	}
}

// rootfsSensorCmdline returns the command line of the running sensor ref of
// stack s, read from /proc (the chroot shares the host's PID namespace).
func rootfsSensorCmdline(t *testing.T, s *testStack, ref string) []string {
	t.Helper()
	pids := s.sensorPIDs(ref)
	if len(pids) != 1 {
		t.Fatalf("want one process of sensor %s, got %v", ref, pids)
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pids[0]), "cmdline"))
	if err != nil {
		t.Fatalf("read sensor command line: %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}
