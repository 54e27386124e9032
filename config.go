package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrConfig marks every configuration error; the CLI maps it to exit code 2.
var ErrConfig = errors.New("invalid configuration")

// Config is the subset of Attune's shared config.yaml that the sensor agent
// reads, after layering file, environment file, ATTUNE__ variables and the
// plain legacy variables (CONTRACT §3).
type Config struct {
	Environment    string
	Database       DatabaseConfig
	MessageQueue   MessageQueueConfig
	Server         ServerConfig
	Security       SecurityConfig
	Log            LogConfig
	PacksBaseDir   string
	RuntimeEnvsDir string
	ArtifactsDir   string
	Artifacts      ArtifactsConfig
	Packs          PacksConfig
	Sensor         SensorConfig

	// Resolved endpoints: plain environment variables win over config keys.
	APIURL        string // ATTUNE_API_URL, else http://{server.host}:{server.port}
	MQURL         string // ATTUNE_MQ_URL, else message_queue.url
	NotifierWSURL string // ATTUNE_NOTIFIER_WS_URL, else sensor.notifier_ws_url, else ws://127.0.0.1:8081/ws

	// Files lists the YAML files that were read, in load order, so the
	// caller can log where the configuration came from.
	Files []string
	// Warnings holds non-fatal problems found while loading (invalid labels
	// or taints that were dropped, a missing ATTUNE_CONFIG file, ...). They
	// are collected here because the logger does not exist yet when the
	// configuration is loaded; the caller logs them once it does.
	Warnings []string
}

// DatabaseConfig is the database section.
type DatabaseConfig struct {
	URL            string
	MaxConnections int
	MinConnections int
	ConnectTimeout time.Duration
	IdleTimeout    time.Duration
	Schema         string
}

// MessageQueueConfig is the message_queue section.
type MessageQueueConfig struct {
	URL string
}

// ServerConfig is the server section; the agent only builds the fallback API URL from it.
type ServerConfig struct {
	Host string
	Port int
}

// SecurityConfig is the security section.
type SecurityConfig struct {
	JWTSecret  string
	EnableAuth bool
}

// LogConfig is the log section.
type LogConfig struct {
	Level        string // trace|debug|info|warn|error
	Format       string // json|pretty
	MirrorStdout bool   // log.mirror_runtime_stdout_to_stdio
	MirrorStderr bool   // log.mirror_runtime_stderr_to_stdio
}

// ArtifactsConfig is the artifacts section.
type ArtifactsConfig struct {
	Transport         string // artifacts.transport: volume (default) or api
	SensorLogMaxBytes int64
	SensorLogMaxFiles int
	// Segmented log streams (newest generation, CONTRACT §13), with the
	// reference's keys and defaults.
	FlushIntervalMS            int64 // artifacts.flush_interval_ms: 500
	LogSegmentInitialBytes     int64 // artifacts.log_segment_initial_bytes: 64 KiB
	LogSegmentMaxBytes         int64 // artifacts.log_segment_max_bytes: 1 MiB
	LogSegmentRetryMaxAttempts int   // artifacts.log_segment_retry_max_attempts: 5
}

// PacksConfig is the packs section: how pinned pack releases reach this
// worker (CONTRACT §6).
type PacksConfig struct {
	Transport string // packs.transport: volume (default) or api
}

// Taint is one sensor.taints entry.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// SensorConfig is the sensor section.
type SensorConfig struct {
	WorkerName              string
	Host                    string
	Capabilities            map[string]any
	Labels                  map[string]string
	Taints                  []Taint
	MaxConcurrentSensors    int
	HeartbeatInterval       time.Duration
	ShutdownTimeout         time.Duration
	PassthroughEnv          []string
	NotifierWSURL           string
	AllowInsecureNotifierWS bool
	StatusFile              string // [agent] status file read by `healthcheck`
}

// Names of the plain (single underscore) variables the loader reads. They
// are not config keys: each one wins over one resolved field.
const (
	envConfigPath    = "ATTUNE_CONFIG"
	envEnvironment   = "ATTUNE__ENVIRONMENT"
	envAPIURL        = "ATTUNE_API_URL"
	envMQURL         = "ATTUNE_MQ_URL"
	envNotifierWSURL = "ATTUNE_NOTIFIER_WS_URL"
	envPacksBaseDir  = "ATTUNE_PACKS_BASE_DIR"
	envStatusFile    = "ATTUNE_SENSOR_STATUS_FILE"
)

// defaultNotifierWSURL is the reference's loopback-only fallback: a notifier
// on the same host. The notifier's bind address is not a client endpoint.
const defaultNotifierWSURL = "ws://127.0.0.1:8081/ws"

// configError is a configuration problem tied to one place: a key path
// ("sensor.heartbeat_interval"), a variable name or a file. It matches
// ErrConfig with errors.Is, and also any underlying cause (an *os.PathError
// for an unreadable file) so callers can still branch on it.
type configError struct {
	where string
	msg   string
	cause error
}

func (e *configError) Error() string { return e.where + ": " + e.msg }

// Unwrap exposes ErrConfig and the optional cause to errors.Is/As.
func (e *configError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrConfig, e.cause}
	}
	return []error{ErrConfig}
}

// newConfigError builds a configError without a cause.
func newConfigError(where, msg string) error {
	return &configError{where: where, msg: msg}
}

// loadConfig loads the agent configuration in the reference's order (CONTRACT
// §3): the YAML file named by ATTUNE_CONFIG or workDir/config.yaml, then
// workDir/config.<ATTUNE__ENVIRONMENT|development>.yaml, then ATTUNE__
// variables, then the plain legacy variables, then nameOverride (--name).
// environ is in os.Environ form and is the only environment consulted, so
// the result does not depend on the test process's own variables. Every
// returned error wraps ErrConfig and names the key, variable or file.
func loadConfig(environ []string, workDir string, nameOverride string) (*Config, error) {
	return loadConfigWith(environ, workDir, nameOverride, os.Hostname)
}

// loadConfigWith is loadConfig with the hostname lookup injected, so the
// sensor-unknown fallback can be tested.
func loadConfigWith(environ []string, workDir, nameOverride string, hostname func() (string, error)) (*Config, error) {
	env := configEnvLookup(environ)
	tree, files, warnings, err := loadConfigTree(env, environ, workDir)
	if err != nil {
		return nil, err
	}

	host, herr := hostname()
	if herr != nil {
		host = ""
	}
	cfg := defaultConfig(host, env)
	cfg.Files = files
	cfg.Warnings = warnings

	if err := decodeConfigTree(tree, cfg); err != nil {
		return nil, err
	}
	notifierKey := applyPlainVariables(cfg, env)
	if nameOverride != "" {
		cfg.Sensor.WorkerName = nameOverride
	}
	if err := validateConfig(cfg, tree, notifierKey); err != nil {
		return nil, err
	}
	return cfg, nil
}

// defaultConfig returns every default of CONTRACT §3. host is the machine's
// hostname, "" when unknown (worker name sensor-unknown, no host column).
func defaultConfig(host string, env map[string]string) *Config {
	worker := "sensor-unknown"
	if host != "" {
		worker = "sensor-" + host
	}
	return &Config{
		Environment: "development",
		Database: DatabaseConfig{
			URL:            "postgresql://postgres:postgres@localhost:5432/attune",
			MaxConnections: 50,
			MinConnections: 5,
			ConnectTimeout: 30 * time.Second,
			IdleTimeout:    600 * time.Second,
			Schema:         "attune",
		},
		MessageQueue: MessageQueueConfig{URL: "amqp://guest:guest@localhost:5672/%2f"},
		Server:       ServerConfig{Host: "0.0.0.0", Port: 8080},
		Security:     SecurityConfig{EnableAuth: true},
		Log:          LogConfig{Level: "info", Format: "json"},

		PacksBaseDir:   "/opt/attune/packs",
		RuntimeEnvsDir: "/opt/attune/runtime_envs",
		ArtifactsDir:   "/opt/attune/artifacts",
		Artifacts: ArtifactsConfig{Transport: "volume", SensorLogMaxBytes: 10485760, SensorLogMaxFiles: 4,
			FlushIntervalMS: 500, LogSegmentInitialBytes: 64 << 10, LogSegmentMaxBytes: 1 << 20, LogSegmentRetryMaxAttempts: 5},
		Packs: PacksConfig{Transport: "volume"},
		Sensor: SensorConfig{
			WorkerName:           worker,
			Host:                 host,
			MaxConcurrentSensors: 10,
			HeartbeatInterval:    30 * time.Second,
			ShutdownTimeout:      30 * time.Second,
			StatusFile:           filepath.Join(configTempDir(env), "attune-sensor-agent.status.json"),
		},
	}
}

// configTempDir is os.TempDir computed from environ rather than the process
// environment (identical on Unix: $TMPDIR, else /tmp), keeping loadConfig
// hermetic.
func configTempDir(env map[string]string) string {
	if d := env["TMPDIR"]; d != "" {
		return d
	}
	return "/tmp"
}

// applyPlainVariables resolves the endpoints and lets the legacy single
// underscore variables win over config keys. An empty variable counts as
// unset. It returns where the notifier URL came from, for error messages.
func applyPlainVariables(cfg *Config, env map[string]string) (notifierKey string) {
	cfg.APIURL = "http://" + net.JoinHostPort(cfg.Server.Host, strconv.Itoa(cfg.Server.Port))
	if v := env[envAPIURL]; v != "" {
		cfg.APIURL = v
	}
	cfg.MQURL = cfg.MessageQueue.URL
	if v := env[envMQURL]; v != "" {
		cfg.MQURL = v
	}
	if v := env[envPacksBaseDir]; v != "" {
		cfg.PacksBaseDir = v
	}
	if v := env[envStatusFile]; v != "" {
		cfg.Sensor.StatusFile = v
	}
	cfg.NotifierWSURL, notifierKey = defaultNotifierWSURL, ""
	if v := strings.TrimSpace(cfg.Sensor.NotifierWSURL); v != "" {
		cfg.NotifierWSURL, notifierKey = v, "sensor.notifier_ws_url"
	}
	if v := strings.TrimSpace(env[envNotifierWSURL]); v != "" {
		cfg.NotifierWSURL, notifierKey = v, envNotifierWSURL
	}
	return notifierKey
}

// configEnvLookup indexes environ by name. The first occurrence of a name
// wins, as in os.Getenv and baselineEnv.
func configEnvLookup(environ []string) map[string]string {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if _, dup := env[k]; !dup {
			env[k] = v
		}
	}
	return env
}
