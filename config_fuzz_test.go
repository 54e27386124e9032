package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig feeds arbitrary YAML plus one ATTUNE__ override to the
// loader. It must never panic; every error must wrap ErrConfig; and a
// configuration it accepts must satisfy the invariants the rest of the
// agent relies on. `go test` replays testdata/fuzz/FuzzLoadConfig.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(minimalConfigYAML), "SENSOR__HEARTBEAT_INTERVAL", "45")
	f.Add([]byte(minimalConfigYAML+"sensor: {labels: {zone: a}, taints: [{key: k}]}"), "SENSOR__LABELS__Zone", "")
	f.Add([]byte("a: &x [*x]\n"), "MESSAGE_QUEUE__URL", "amqp://x/")
	f.Fuzz(func(t *testing.T, doc []byte, key, value string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), doc, 0o644); err != nil {
			t.Fatal(err)
		}
		environ := []string{"TMPDIR=/tmp", "ATTUNE__" + key + "=" + value}
		cfg, err := loadConfigWith(environ, dir, "", func() (string, error) { return "fuzz", nil })
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error does not wrap ErrConfig: %v", err)
			}
			if cfg != nil {
				t.Fatalf("error %v with a non-nil config", err)
			}
			return
		}
		if cfg.Sensor.WorkerName == "" || cfg.Sensor.StatusFile == "" {
			t.Errorf("empty worker name %q or status file %q", cfg.Sensor.WorkerName, cfg.Sensor.StatusFile)
		}
		if cfg.Sensor.HeartbeatInterval <= 0 || cfg.Sensor.ShutdownTimeout <= 0 || cfg.Sensor.MaxConcurrentSensors <= 0 ||
			cfg.Artifacts.SensorLogMaxBytes <= 0 || cfg.Artifacts.SensorLogMaxFiles <= 0 || cfg.Database.MaxConnections <= 0 {
			t.Errorf("non-positive limit accepted: %+v %+v", cfg.Sensor, cfg.Artifacts)
		}
		if err := validatePassthroughEnv(cfg.Sensor.PassthroughEnv); err != nil {
			t.Errorf("invalid passthrough accepted: %v", err)
		}
		for _, tt := range cfg.Sensor.Taints {
			if tt.Key == "" || (tt.Effect != taintNoSchedule && tt.Effect != taintPreferNoSchedule) {
				t.Errorf("invalid taint accepted: %+v", tt)
			}
		}
		for _, v := range []any{cfg.Sensor.Capabilities, cfg.Sensor.Labels, cfg.Sensor.Taints} {
			if _, err := json.Marshal(v); err != nil {
				t.Errorf("capabilities/labels/taints do not marshal: %v", err)
			}
		}
		if err := validateNotifierWSURL(cfg.NotifierWSURL, cfg.Sensor.AllowInsecureNotifierWS); err != nil {
			t.Errorf("invalid notifier URL accepted: %v", err)
		}
	})
}
