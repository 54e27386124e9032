package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// minimalConfigYAML is the smallest file that passes validation: the
// message_queue section must exist and auth (on by default) needs a secret.
const minimalConfigYAML = `
message_queue: {}
security:
  jwt_secret: test-secret
`

// testConfigEnv is the environ every test starts from: TMPDIR pins the
// status file default so expectations do not depend on the machine.
var testConfigEnv = []string{"TMPDIR=/tmp-test", "PATH=/usr/bin"}

// loadTestConfig writes files (name relative to a fresh work directory →
// content) and loads with the hostname "box".
func loadTestConfig(t *testing.T, files map[string]string, env []string, name string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	writeConfigFiles(t, dir, files)
	environ := append(append([]string{}, testConfigEnv...), env...)
	return loadConfigWith(environ, dir, name, func() (string, error) { return "box", nil })
}

// writeConfigFiles writes files under dir, creating parent directories.
func writeConfigFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// mustLoadTestConfig is loadTestConfig for inputs that must load.
func mustLoadTestConfig(t *testing.T, files map[string]string, env []string, name string) *Config {
	t.Helper()
	cfg, err := loadTestConfig(t, files, env, name)
	if err != nil {
		t.Fatalf("loadConfig: unexpected error: %v", err)
	}
	return cfg
}

func TestLoadConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	writeConfigFiles(t, dir, map[string]string{"config.yaml": minimalConfigYAML})
	got, err := loadConfigWith(testConfigEnv, dir, "", func() (string, error) { return "box", nil })
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Environment: "development",
		Database: DatabaseConfig{
			URL:            "postgresql://postgres:postgres@localhost:5432/attune",
			MaxConnections: 50, MinConnections: 5,
			ConnectTimeout: 30 * time.Second, IdleTimeout: 600 * time.Second,
			Schema: "attune",
		},
		MessageQueue:   MessageQueueConfig{URL: "amqp://guest:guest@localhost:5672/%2f"},
		Server:         ServerConfig{Host: "0.0.0.0", Port: 8080},
		Security:       SecurityConfig{JWTSecret: "test-secret", EnableAuth: true},
		Log:            LogConfig{Level: "info", Format: "json"},
		PacksBaseDir:   "/opt/attune/packs",
		RuntimeEnvsDir: "/opt/attune/runtime_envs",
		ArtifactsDir:   "/opt/attune/artifacts",
		Artifacts: ArtifactsConfig{Transport: "volume", SensorLogMaxBytes: 10485760, SensorLogMaxFiles: 4,
			FlushIntervalMS: 500, LogSegmentInitialBytes: 65536, LogSegmentMaxBytes: 1048576, LogSegmentRetryMaxAttempts: 5},
		Packs: PacksConfig{Transport: "volume"},
		Sensor: SensorConfig{
			WorkerName: "sensor-box", Host: "box", MaxConcurrentSensors: 10,
			HeartbeatInterval: 30 * time.Second, ShutdownTimeout: 30 * time.Second,
			StatusFile: "/tmp-test/attune-sensor-agent.status.json",
		},
		APIURL:        "http://0.0.0.0:8080",
		MQURL:         "amqp://guest:guest@localhost:5672/%2f",
		NotifierWSURL: "ws://127.0.0.1:8081/ws",
		Files:         []string{filepath.Join(dir, "config.yaml")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}

	t.Run("no hostname", func(t *testing.T) {
		cfg, err := loadConfigWith(testConfigEnv, dir, "", func() (string, error) { return "", errors.New("no uts") })
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Sensor.WorkerName != "sensor-unknown" || cfg.Sensor.Host != "" {
			t.Errorf("worker name %q host %q, want sensor-unknown and empty", cfg.Sensor.WorkerName, cfg.Sensor.Host)
		}
	})
	t.Run("real hostname", func(t *testing.T) {
		cfg, err := loadConfig(testConfigEnv, dir, "")
		if err != nil {
			t.Fatal(err)
		}
		if h, err := os.Hostname(); err == nil && cfg.Sensor.WorkerName != "sensor-"+h {
			t.Errorf("worker name %q, want sensor-%s", cfg.Sensor.WorkerName, h)
		}
	})
	t.Run("no TMPDIR", func(t *testing.T) {
		cfg, err := loadConfigWith(nil, dir, "", os.Hostname)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Sensor.StatusFile != "/tmp/attune-sensor-agent.status.json" {
			t.Errorf("status file %q", cfg.Sensor.StatusFile)
		}
	})
}

// TestLoadConfigPrecedence walks each layered value through every layer:
// YAML < config.<env>.yaml < ATTUNE__ < plain legacy variable < --name.
func TestLoadConfigPrecedence(t *testing.T) {
	base := `
security: {jwt_secret: test-secret}
database: {url: "postgres://base/db"}
sensor: {worker_name: base-name, notifier_ws_url: "wss://base.example/ws"}
message_queue: {url: "amqp://base/%2f"}
packs_base_dir: /base/packs
server: {host: api.internal, port: 9000}
`
	envFile := `
database: {url: "postgres://envfile/db"}
sensor: {worker_name: envfile-name}
`
	worker := func(c *Config) any { return c.Sensor.WorkerName }
	dbURL := func(c *Config) any { return c.Database.URL }
	tests := []struct {
		name  string
		files map[string]string
		env   []string
		flag  string
		get   func(*Config) any
		want  any
	}{
		{"yaml only", map[string]string{"config.yaml": base}, nil, "", worker, "base-name"},
		{"env file beats yaml", map[string]string{"config.yaml": base, "config.development.yaml": envFile}, nil, "", worker, "envfile-name"},
		{"env file keeps untouched keys", map[string]string{"config.yaml": base, "config.development.yaml": envFile}, nil, "",
			func(c *Config) any { return c.PacksBaseDir }, "/base/packs"},
		{"ATTUNE__ beats env file", map[string]string{"config.yaml": base, "config.development.yaml": envFile},
			[]string{"ATTUNE__SENSOR__WORKER_NAME=var-name"}, "", worker, "var-name"},
		{"--name beats everything", map[string]string{"config.yaml": base, "config.development.yaml": envFile},
			[]string{"ATTUNE__SENSOR__WORKER_NAME=var-name"}, "flag-name", worker, "flag-name"},
		{"--name without a sensor section", map[string]string{"config.yaml": minimalConfigYAML}, nil, "flag-name", worker, "flag-name"},
		{"database.url env file", map[string]string{"config.yaml": base, "config.development.yaml": envFile}, nil, "", dbURL, "postgres://envfile/db"},
		{"database.url ATTUNE__", map[string]string{"config.yaml": base, "config.development.yaml": envFile},
			[]string{"ATTUNE__DATABASE__URL=postgres://var/db"}, "", dbURL, "postgres://var/db"},
		{"ATTUNE__ENVIRONMENT picks the env file", map[string]string{"config.yaml": base, "config.development.yaml": envFile,
			"config.staging.yaml": "database: {url: postgres://staging/db}"}, []string{"ATTUNE__ENVIRONMENT=staging"}, "", dbURL, "postgres://staging/db"},
		{"environment key does not pick the env file", map[string]string{"config.yaml": base + "environment: production\n",
			"config.production.yaml": "database: {url: postgres://prod/db}"}, nil, "", dbURL, "postgres://base/db"},
		{"environment key is still read", map[string]string{"config.yaml": base + "environment: production\n"}, nil, "",
			func(c *Config) any { return c.Environment }, "production"},
		{"ATTUNE_CONFIG replaces config.yaml", map[string]string{"config.yaml": base, "etc/agent.yaml": minimalConfigYAML + "database: {url: postgres://other/db}"},
			[]string{"ATTUNE_CONFIG=etc/agent.yaml"}, "", dbURL, "postgres://other/db"},
		{"env file still read from workdir with ATTUNE_CONFIG", map[string]string{"etc/agent.yaml": base, "config.development.yaml": envFile},
			[]string{"ATTUNE_CONFIG=etc/agent.yaml"}, "", dbURL, "postgres://envfile/db"},
		{"api url from server", map[string]string{"config.yaml": base}, nil, "", func(c *Config) any { return c.APIURL }, "http://api.internal:9000"},
		{"ATTUNE_API_URL wins", map[string]string{"config.yaml": base}, []string{"ATTUNE_API_URL=https://api.example"}, "",
			func(c *Config) any { return c.APIURL }, "https://api.example"},
		{"mq url from yaml", map[string]string{"config.yaml": base}, nil, "", func(c *Config) any { return c.MQURL }, "amqp://base/%2f"},
		{"mq url ATTUNE__", map[string]string{"config.yaml": base}, []string{"ATTUNE__MESSAGE_QUEUE__URL=amqp://var/%2f"}, "",
			func(c *Config) any { return c.MQURL }, "amqp://var/%2f"},
		{"ATTUNE_MQ_URL wins", map[string]string{"config.yaml": base},
			[]string{"ATTUNE__MESSAGE_QUEUE__URL=amqp://var/%2f", "ATTUNE_MQ_URL=amqp://legacy/%2f"}, "",
			func(c *Config) any { return [2]string{c.MQURL, c.MessageQueue.URL} }, [2]string{"amqp://legacy/%2f", "amqp://var/%2f"}},
		{"empty ATTUNE_MQ_URL is unset", map[string]string{"config.yaml": base}, []string{"ATTUNE_MQ_URL="}, "",
			func(c *Config) any { return c.MQURL }, "amqp://base/%2f"},
		{"notifier from yaml", map[string]string{"config.yaml": base}, nil, "", func(c *Config) any { return c.NotifierWSURL }, "wss://base.example/ws"},
		{"ATTUNE_NOTIFIER_WS_URL wins", map[string]string{"config.yaml": base}, []string{"ATTUNE_NOTIFIER_WS_URL= wss://legacy.example/ws "}, "",
			func(c *Config) any { return c.NotifierWSURL }, "wss://legacy.example/ws"},
		{"blank ATTUNE_NOTIFIER_WS_URL is unset", map[string]string{"config.yaml": base}, []string{"ATTUNE_NOTIFIER_WS_URL=  "}, "",
			func(c *Config) any { return c.NotifierWSURL }, "wss://base.example/ws"},
		{"packs dir ATTUNE__", map[string]string{"config.yaml": base}, []string{"ATTUNE__PACKS_BASE_DIR=/var/packs"}, "",
			func(c *Config) any { return c.PacksBaseDir }, "/var/packs"},
		{"ATTUNE_PACKS_BASE_DIR wins", map[string]string{"config.yaml": base},
			[]string{"ATTUNE__PACKS_BASE_DIR=/var/packs", "ATTUNE_PACKS_BASE_DIR=/legacy/packs"}, "",
			func(c *Config) any { return c.PacksBaseDir }, "/legacy/packs"},
		{"status file key", map[string]string{"config.yaml": minimalConfigYAML + "sensor: {status_file: /run/s.json}"}, nil, "",
			func(c *Config) any { return c.Sensor.StatusFile }, "/run/s.json"},
		{"status file ATTUNE__", map[string]string{"config.yaml": base}, []string{"ATTUNE__SENSOR__STATUS_FILE=/run/s.json"}, "",
			func(c *Config) any { return c.Sensor.StatusFile }, "/run/s.json"},
		{"ATTUNE_SENSOR_STATUS_FILE wins", map[string]string{"config.yaml": base},
			[]string{"ATTUNE__SENSOR__STATUS_FILE=/run/s.json", "ATTUNE_SENSOR_STATUS_FILE=/run/legacy.json"}, "",
			func(c *Config) any { return c.Sensor.StatusFile }, "/run/legacy.json"},
		{"first of duplicate variables wins", map[string]string{"config.yaml": base},
			[]string{"ATTUNE__SENSOR__WORKER_NAME=first", "ATTUNE__SENSOR__WORKER_NAME=second"}, "", worker, "first"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustLoadTestConfig(t, tc.files, tc.env, tc.flag)
			if got := tc.get(cfg); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

// TestLoadConfigEnvOverrideForms covers every shape an ATTUNE__ variable
// takes: nested key, map entry, boolean, number, comma list, free-form map,
// lower-case prefix, and a section created from nothing.
func TestLoadConfigEnvOverrideForms(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  []string
		get  func(*Config) any
		want any
	}{
		{"nested key", minimalConfigYAML, []string{"ATTUNE__DATABASE__SCHEMA=tenant_1"}, func(c *Config) any { return c.Database.Schema }, "tenant_1"},
		{"map entry key is lower-cased", minimalConfigYAML + "sensor: {labels: {region: eu}}",
			[]string{"ATTUNE__SENSOR__LABELS__Zone=local-a"}, func(c *Config) any { return c.Sensor.Labels },
			map[string]string{"region": "eu", "zone": "local-a"}},
		{"map entry replaces same key", minimalConfigYAML + "sensor: {labels: {zone: old}}",
			[]string{"ATTUNE__SENSOR__LABELS__ZONE=new"}, func(c *Config) any { return c.Sensor.Labels }, map[string]string{"zone": "new"}},
		{"bool TRUE", minimalConfigYAML, []string{"ATTUNE__SENSOR__ALLOW_INSECURE_NOTIFIER_WS=TRUE"},
			func(c *Config) any { return c.Sensor.AllowInsecureNotifierWS }, true},
		{"bool false over yaml", minimalConfigYAML + "log: {mirror_runtime_stdout_to_stdio: true}",
			[]string{"ATTUNE__LOG__MIRROR_RUNTIME_STDOUT_TO_STDIO=false"}, func(c *Config) any { return c.Log.MirrorStdout }, false},
		{"number seconds", minimalConfigYAML, []string{"ATTUNE__SENSOR__HEARTBEAT_INTERVAL=45"},
			func(c *Config) any { return c.Sensor.HeartbeatInterval }, 45 * time.Second},
		{"number count", minimalConfigYAML, []string{"ATTUNE__ARTIFACTS__SENSOR_LOG_MAX_BYTES=2048"},
			func(c *Config) any { return c.Artifacts.SensorLogMaxBytes }, int64(2048)},
		{"log segment keys", minimalConfigYAML + "artifacts: {flush_interval_ms: 250, log_segment_initial_bytes: 4096}",
			[]string{"ATTUNE__ARTIFACTS__LOG_SEGMENT_MAX_BYTES=65536", "ATTUNE__ARTIFACTS__LOG_SEGMENT_RETRY_MAX_ATTEMPTS=3"},
			func(c *Config) any {
				a := c.Artifacts
				return []int64{a.FlushIntervalMS, a.LogSegmentInitialBytes, a.LogSegmentMaxBytes, int64(a.LogSegmentRetryMaxAttempts)}
			}, []int64{250, 4096, 65536, 3}},
		{"passthrough comma list", minimalConfigYAML, []string{"ATTUNE__SENSOR__PASSTHROUGH_ENV=HTTP_PROXY, NO_PROXY,,SSL_CERT_FILE"},
			func(c *Config) any { return c.Sensor.PassthroughEnv }, []string{"HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE"}},
		{"passthrough yaml list", minimalConfigYAML + "sensor: {passthrough_env: [HTTP_PROXY, no_proxy]}", nil,
			func(c *Config) any { return c.Sensor.PassthroughEnv }, []string{"HTTP_PROXY", "no_proxy"}},
		{"other lists are not split", minimalConfigYAML, []string{"ATTUNE__DATABASE__URL=postgres://a,b/db"},
			func(c *Config) any { return c.Database.URL }, "postgres://a,b/db"},
		{"free-form capabilities convert", minimalConfigYAML + "sensor: {capabilities: {gpu: 1}}",
			[]string{"ATTUNE__SENSOR__CAPABILITIES__FAST=true", "ATTUNE__SENSOR__CAPABILITIES__RATIO=0.5", "ATTUNE__SENSOR__CAPABILITIES__NOTE=hi"},
			func(c *Config) any { return c.Sensor.Capabilities },
			map[string]any{"gpu": 1, "fast": true, "ratio": 0.5, "note": "hi"}},
		{"string key keeps its text", minimalConfigYAML, []string{"ATTUNE__SECURITY__JWT_SECRET=00123.0"},
			func(c *Config) any { return c.Security.JWTSecret }, "00123.0"},
		{"lower-case prefix", minimalConfigYAML, []string{"attune__log__level=debug"}, func(c *Config) any { return c.Log.Level }, "debug"},
		{"single underscore is not a key", minimalConfigYAML, []string{"ATTUNE_LOG__LEVEL=debug", "ATTUNE_CONFIG_LEVEL=x"},
			func(c *Config) any { return c.Log.Level }, "info"},
		{"override creates message_queue", "security: {jwt_secret: s}", []string{"ATTUNE__MESSAGE_QUEUE__URL=amqp://mq/%2f"},
			func(c *Config) any { return c.MQURL }, "amqp://mq/%2f"},
		{"override replaces a scalar section", minimalConfigYAML + "sensor: off", []string{"ATTUNE__SENSOR__MAX_CONCURRENT_SENSORS=3"},
			func(c *Config) any { return c.Sensor.MaxConcurrentSensors }, 3},
		{"deeper variable wins over section scalar", minimalConfigYAML, []string{"ATTUNE__SENSOR__WORKER_NAME=w", "ATTUNE__SENSOR=x"},
			func(c *Config) any { return c.Sensor.WorkerName }, "w"},
		{"empty segment warns", minimalConfigYAML, []string{"ATTUNE__SENSOR____X=1"}, func(c *Config) any { return c.Warnings },
			[]string{"ATTUNE__SENSOR____X: ignored: empty key segment in an ATTUNE__ variable name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustLoadTestConfig(t, map[string]string{"config.yaml": tc.yaml}, tc.env, "")
			if got := tc.get(cfg); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestLoadConfigUnknownKeysIgnored(t *testing.T) {
	yaml := minimalConfigYAML + `
service_name: attune
worker: {name: w1, max_concurrent_tasks: 3}
notifier: {host: 0.0.0.0, port: 8081}
executor: {scheduled_timeout: 300}
server: {cors_origins: [a, b], port: 8181}
sensor: {poll_interval: 30, sensor_timeout: 30, future_key: {nested: [1, 2]}}
"1": numeric top-level key
`
	cfg := mustLoadTestConfig(t, map[string]string{"config.yaml": yaml}, []string{"ATTUNE__EXECUTOR__X=1", "ATTUNE__NEW_SECTION__Y=z"}, "")
	if cfg.Server.Port != 8181 || len(cfg.Warnings) != 0 {
		t.Errorf("port %d warnings %q", cfg.Server.Port, cfg.Warnings)
	}
}

// TestLoadConfigLabelsAndTaints checks decoding and the reference's rule
// that any invalid label or taint drops the whole set with a warning.
func TestLoadConfigLabelsAndTaints(t *testing.T) {
	tests := []struct {
		name       string
		sensor     string
		wantLabels map[string]string
		wantTaints []Taint
		wantWarn   []string
	}{
		{"valid", `{labels: {zone: a, gpu: true, n: 2}, taints: [{key: gpu, value: "yes", effect: prefer_no_schedule}, {key: dedicated}]}`,
			map[string]string{"zone": "a", "gpu": "true", "n": "2"},
			[]Taint{{Key: "gpu", Value: "yes", Effect: "prefer_no_schedule"}, {Key: "dedicated", Effect: "no_schedule"}}, nil},
		{"empty label value", `{labels: {zone: " ", ok: x}}`, nil, nil,
			[]string{`sensor.labels: invalid sensor worker labels ignored: sensor.labels["zone"] must be a non-empty string`}},
		{"null label value", `{labels: {zone: ~}}`, nil, nil,
			[]string{`sensor.labels: invalid sensor worker labels ignored: sensor.labels["zone"] must be a non-empty string`}},
		{"blank label key", `{labels: {" ": x}}`, nil, nil,
			[]string{`sensor.labels: invalid sensor worker labels ignored: label keys must be non-empty`}},
		{"labels not a map", `{labels: [a]}`, nil, nil,
			[]string{`sensor.labels: invalid sensor worker labels ignored: expected a mapping of strings, got a list`}},
		{"bad effect", `{taints: [{key: a}, {key: b, effect: NoSchedule}]}`, nil, nil,
			[]string{`sensor.taints: invalid sensor worker taints ignored: sensor.taints[1].effect must be no_schedule or prefer_no_schedule, got "NoSchedule"`}},
		{"empty key", `{taints: [{key: "", effect: no_schedule}]}`, nil, nil,
			[]string{`sensor.taints: invalid sensor worker taints ignored: sensor.taints[0].key must be non-empty`}},
		{"blank value", `{taints: [{key: a, value: " "}]}`, nil, nil,
			[]string{`sensor.taints: invalid sensor worker taints ignored: sensor.taints[0].value of taint "a" must be non-empty when provided`}},
		{"taint not a map", `{taints: [gpu]}`, nil, nil,
			[]string{`sensor.taints: invalid sensor worker taints ignored: sensor.taints[0] must be a mapping with key, value and effect`}},
		{"taints not a list", `{taints: gpu}`, nil, nil,
			[]string{`sensor.taints: invalid sensor worker taints ignored: expected a list of {key, value, effect}, got a string`}},
		{"both invalid", `{labels: {a: ""}, taints: [{}]}`, nil, nil, []string{
			`sensor.labels: invalid sensor worker labels ignored: sensor.labels["a"] must be a non-empty string`,
			`sensor.taints: invalid sensor worker taints ignored: sensor.taints[0].key must be non-empty`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustLoadTestConfig(t, map[string]string{"config.yaml": minimalConfigYAML + "sensor: " + tc.sensor}, nil, "")
			if !reflect.DeepEqual(cfg.Sensor.Labels, tc.wantLabels) {
				t.Errorf("labels %#v, want %#v", cfg.Sensor.Labels, tc.wantLabels)
			}
			if !reflect.DeepEqual(cfg.Sensor.Taints, tc.wantTaints) {
				t.Errorf("taints %#v, want %#v", cfg.Sensor.Taints, tc.wantTaints)
			}
			if !reflect.DeepEqual(cfg.Warnings, tc.wantWarn) {
				t.Errorf("warnings %q, want %q", cfg.Warnings, tc.wantWarn)
			}
		})
	}
}

func TestLoadConfigWarnings(t *testing.T) {
	cfg := mustLoadTestConfig(t, map[string]string{"config.yaml": minimalConfigYAML + "sensor: {heartbeat_interval: 90}"},
		[]string{"ATTUNE_CONFIG=missing.yaml", "ATTUNE__MESSAGE_QUEUE__URL=amqp://x/", "ATTUNE__SECURITY__JWT_SECRET=s"}, "")
	if len(cfg.Warnings) != 1 || !strings.HasPrefix(cfg.Warnings[0], "ATTUNE_CONFIG: config file ") ||
		!strings.HasSuffix(cfg.Warnings[0], "missing.yaml does not exist; using defaults and environment only") {
		t.Errorf("warnings %q: want only the missing ATTUNE_CONFIG warning (config.yaml must not be read)", cfg.Warnings)
	}
	if len(cfg.Files) != 0 {
		t.Errorf("files %q, want none", cfg.Files)
	}
	// The staleness warning for a 90 s interval belongs to the heartbeat loop
	// (heartbeat.go), which logs it once; loading adds nothing.
	cfg = mustLoadTestConfig(t, map[string]string{"config.yaml": minimalConfigYAML + "sensor: {heartbeat_interval: 90}"}, nil, "")
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings %q, want none", cfg.Warnings)
	}
}
