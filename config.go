package main

import (
	"errors"
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
	Sensor         SensorConfig

	// Resolved endpoints: plain environment variables win over config keys.
	APIURL        string // ATTUNE_API_URL, else http://{server.host}:{server.port}
	MQURL         string // ATTUNE_MQ_URL, else message_queue.url
	NotifierWSURL string // ATTUNE_NOTIFIER_WS_URL, else sensor.notifier_ws_url, else ws://127.0.0.1:8081/ws
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
	SensorLogMaxBytes int64
	SensorLogMaxFiles int
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
