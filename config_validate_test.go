package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadConfigErrors pins the exact text of every fatal configuration
// error, and that each one wraps ErrConfig (the CLI maps it to exit 2).
func TestLoadConfigErrors(t *testing.T) {
	const mq = "message_queue: {}\n"
	const sec = "security: {jwt_secret: s}\n"
	tests := []struct {
		name string
		yaml string
		env  []string
		want string
	}{
		// CONTRACT §3 messages.
		{"empty database url", mq + sec + "database: {url: ''}", nil, "database.url: Database URL cannot be empty"},
		{"empty database url from env", mq + sec, []string{"ATTUNE__DATABASE__URL="}, "database.url: Database URL cannot be empty"},
		{"auth without secret", mq, nil, "security.jwt_secret: JWT secret is required when authentication is enabled"},
		{"auth with blank secret", mq + "security: {jwt_secret: '  '}", nil, "security.jwt_secret: JWT secret is required when authentication is enabled"},
		{"auth from string true", mq + "security: {enable_auth: 'yes'}", nil, "security.jwt_secret: JWT secret is required when authentication is enabled"},
		{"no message_queue", sec, nil, "message_queue: Message queue configuration is required"},
		{"null message_queue", sec + "message_queue: ~", nil, "message_queue: Message queue configuration is required"},
		{"ATTUNE_MQ_URL does not create the section", sec, []string{"ATTUNE_MQ_URL=amqp://x/"}, "message_queue: Message queue configuration is required"},
		{"bad log level", mq + sec + "log: {level: verbose}", nil, `log.level: invalid log level "verbose"; must be one of trace, debug, info, warn, error`},
		{"log level is case-sensitive", mq + sec + "log: {level: INFO}", nil, `log.level: invalid log level "INFO"; must be one of trace, debug, info, warn, error`},
		{"bad log format", mq + sec, []string{"ATTUNE__LOG__FORMAT=compact"}, `log.format: invalid log format "compact"; must be one of json, pretty`},
		{"empty schema", mq + sec + "database: {schema: ''}", nil, "database.schema: schema name cannot be empty"},
		{"bad packs transport", mq + sec + "packs: {transport: s3}", nil, `packs.transport: unknown transport "s3"; must be one of volume, api, auto`},
		{"transport is case-sensitive", mq + sec, []string{"ATTUNE__ARTIFACTS__TRANSPORT=API"}, `artifacts.transport: unknown transport "API"; must be one of volume, api, auto`},
		{"auto outside development", mq + sec + "environment: production\npacks: {transport: auto}", nil,
			`packs.transport: transport "auto" is only accepted in the development environment (environment is "production"); set volume or api`},
		{"auto artifacts outside development", mq + sec + "artifacts: {transport: auto}", []string{"ATTUNE__ENVIRONMENT=staging"},
			`artifacts.transport: transport "auto" is only accepted in the development environment (environment is "staging"); set volume or api`},
		{"schema with dash", mq + sec + "database: {schema: my-schema}", nil, `database.schema: invalid schema name "my-schema": only letters, digits and underscores allowed`},
		{"schema injection", mq + sec, []string{"ATTUNE__DATABASE__SCHEMA=x; drop table worker"}, `database.schema: invalid schema name "x; drop table worker": only letters, digits and underscores allowed`},
		{"schema too long", mq + sec + "database: {schema: " + strings.Repeat("s", 64) + "}", nil, `database.schema: schema name "` + strings.Repeat("s", 64) + `" too long (max 63 characters)`},
		{"segment initial above max", mq + sec + "artifacts: {log_segment_initial_bytes: 2097152}", nil, "artifacts.log_segment_initial_bytes: must not exceed artifacts.log_segment_max_bytes"},
		{"zero flush interval", mq + sec, []string{"ATTUNE__ARTIFACTS__FLUSH_INTERVAL_MS=0"}, "artifacts.flush_interval_ms: must be greater than zero"},
		{"passthrough pattern", mq + sec + "sensor: {passthrough_env: ['HTTP_*']}", nil, `sensor.passthrough_env: invalid passthrough environment name "HTTP_*"; use an exact variable name, not a pattern`},
		{"passthrough assignment", mq + sec, []string{"ATTUNE__SENSOR__PASSTHROUGH_ENV=HTTP_PROXY=x"}, `sensor.passthrough_env: invalid passthrough environment name "HTTP_PROXY=x"; use an exact variable name, not a pattern`},
		{"passthrough leading digit", mq + sec + "sensor: {passthrough_env: [1X]}", nil, `sensor.passthrough_env: invalid passthrough environment name "1X"; use an exact variable name, not a pattern`},
		{"passthrough non-ascii", mq + sec + "sensor: {passthrough_env: [ÄX]}", nil, `sensor.passthrough_env: invalid passthrough environment name "ÄX"; use an exact variable name, not a pattern`},
		{"passthrough reserved", mq + sec + "sensor: {passthrough_env: [attune_api_token]}", nil, `sensor.passthrough_env: passthrough environment name "attune_api_token" is reserved; Attune context must be supplied by the agent`},
		{"passthrough reserved double", mq + sec, []string{"ATTUNE__SENSOR__PASSTHROUGH_ENV=ATTUNE__DATABASE__URL"}, `sensor.passthrough_env: passthrough environment name "ATTUNE__DATABASE__URL" is reserved; Attune context must be supplied by the agent`},
		{"passthrough duplicate", mq + sec, []string{"ATTUNE__SENSOR__PASSTHROUGH_ENV=HTTP_PROXY,NO_PROXY,HTTP_PROXY"}, `sensor.passthrough_env: duplicate passthrough environment name "HTTP_PROXY"`},
		{"passthrough item is a map", mq + sec + "sensor: {passthrough_env: [{a: b}]}", nil, `sensor.passthrough_env[0]: expected a variable name, got a mapping`},
		{"notifier credentials", mq + sec + "sensor: {notifier_ws_url: 'wss://user:pw@n.example/ws'}", nil, "sensor.notifier_ws_url: sensor notifier websocket URL must not contain credentials"},
		{"notifier username only", mq + sec, []string{"ATTUNE_NOTIFIER_WS_URL=wss://user@n.example/ws"}, "ATTUNE_NOTIFIER_WS_URL: sensor notifier websocket URL must not contain credentials"},
		{"notifier no host", mq + sec + "sensor: {notifier_ws_url: 'wss:///ws'}", nil, "sensor.notifier_ws_url: sensor notifier websocket URL must include a host"},
		{"notifier http", mq + sec + "sensor: {notifier_ws_url: 'https://n.example/ws'}", nil, "sensor.notifier_ws_url: sensor notifier websocket URL must use wss:// or ws://"},
		{"notifier unparsable", mq + sec, []string{"ATTUNE_NOTIFIER_WS_URL=wss://[::1"}, "ATTUNE_NOTIFIER_WS_URL: invalid sensor notifier websocket URL"},
		{"notifier ws remote", mq + sec + "sensor: {notifier_ws_url: 'ws://notifier:8081/ws'}", nil, "sensor.notifier_ws_url: non-loopback sensor notifier websocket URLs require wss:// or sensor.allow_insecure_notifier_ws=true"},
		{"notifier ws private ip", mq + sec, []string{"ATTUNE_NOTIFIER_WS_URL=ws://10.0.0.5:8081/ws"}, "ATTUNE_NOTIFIER_WS_URL: non-loopback sensor notifier websocket URLs require wss:// or sensor.allow_insecure_notifier_ws=true"},
		{"notifier ws localhost lookalike", mq + sec, []string{"ATTUNE_NOTIFIER_WS_URL=ws://localhost.example.com/ws"}, "ATTUNE_NOTIFIER_WS_URL: non-loopback sensor notifier websocket URLs require wss:// or sensor.allow_insecure_notifier_ws=true"},
		// Numbers that must be positive.
		{"zero heartbeat", mq + sec + "sensor: {heartbeat_interval: 0}", nil, "sensor.heartbeat_interval: must be greater than zero"},
		{"zero max sensors", mq + sec, []string{"ATTUNE__SENSOR__MAX_CONCURRENT_SENSORS=0"}, "sensor.max_concurrent_sensors: must be greater than zero"},
		{"zero shutdown", mq + sec + "sensor: {shutdown_timeout: 0}", nil, "sensor.shutdown_timeout: must be greater than zero"},
		{"zero log bytes", mq + sec + "artifacts: {sensor_log_max_bytes: 0}", nil, "artifacts.sensor_log_max_bytes: must be greater than zero"},
		{"zero log files", mq + sec + "artifacts: {sensor_log_max_files: 0}", nil, "artifacts.sensor_log_max_files: must be greater than zero"},
		{"zero pool", mq + sec + "database: {max_connections: 0}", nil, "database.max_connections: must be greater than zero"},
		// Wrong types name the key path.
		{"seconds not a number", mq + sec + "sensor: {heartbeat_interval: abc}", nil, `sensor.heartbeat_interval: expected a number of seconds, got "abc"`},
		{"seconds from env", mq + sec, []string{"ATTUNE__SENSOR__HEARTBEAT_INTERVAL=30s"}, `sensor.heartbeat_interval: expected a number of seconds, got "30s"`},
		{"fractional seconds", mq + sec + "sensor: {shutdown_timeout: 1.5}", nil, "sensor.shutdown_timeout: expected a number of seconds, got 1.5"},
		{"negative seconds", mq + sec + "database: {idle_timeout: -1}", nil, "database.idle_timeout: expected a number of seconds, got -1"},
		{"seconds as list", mq + sec + "database: {connect_timeout: [1]}", nil, "database.connect_timeout: expected a number of seconds, got a list"},
		{"port out of range", mq + sec + "server: {port: 70000}", nil, "server.port: expected a whole number from 0 to 65535, got 70000"},
		{"count as bool", mq + sec + "sensor: {max_concurrent_sensors: true}", nil, "sensor.max_concurrent_sensors: expected a whole number from 0 to 2147483647, got true"},
		{"bad boolean", mq + "security: {enable_auth: maybe, jwt_secret: s}", nil, `security.enable_auth: expected true or false, got "maybe"`},
		{"string given a mapping", mq + sec + "database: {url: {host: x}}", nil, "database.url: expected a string, got a mapping"},
		{"section is a scalar", mq + sec + "log: loud", nil, "log: expected a mapping, got a string"},
		{"message_queue is a scalar", sec + "message_queue: amqp://x/", nil, "message_queue: expected a mapping, got a string"},
		{"capabilities not a map", mq + sec + "sensor: {capabilities: [a]}", nil, "sensor.capabilities: expected a mapping, got a list"},
		{"passthrough not a list", mq + sec + "sensor: {passthrough_env: {a: b}}", nil, "sensor.passthrough_env: expected a list of variable names, got a mapping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadTestConfig(t, map[string]string{"config.yaml": tc.yaml}, tc.env, "")
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got %q\nwant %q", err.Error(), tc.want)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
		})
	}
}

// TestLoadConfigAcceptedNotifierURLs covers the URLs the notifier rules let
// through: wss anywhere, ws on loopback, ws anywhere with the opt-in; and
// what reaches sensors is the URL normalised as the reference does.
func TestLoadConfigAcceptedNotifierURLs(t *testing.T) {
	for _, tc := range []struct {
		url, allow, want string // want: what sensors get, the WHATWG serialisation
	}{
		{"wss://notify.example/ws", "false", "wss://notify.example/ws"},
		{"WSS://Notify.Example:443/ws", "false", "wss://notify.example/ws"},
		{"wss://notify.example", "false", "wss://notify.example/"},
		{"wss://notify.example:8443/ws?x=1", "false", "wss://notify.example:8443/ws?x=1"},
		{"ws://127.0.0.1:8081/ws", "false", "ws://127.0.0.1:8081/ws"},
		{"ws://127.9.9.9:80/ws", "false", "ws://127.9.9.9/ws"},
		{"ws://[::1]:8081/ws", "false", "ws://[::1]:8081/ws"},
		{"ws://[0:0:0:0:0:0:0:1]:8081/ws", "false", "ws://[::1]:8081/ws"},
		{"ws://[::ffff:127.0.0.1]:8081/ws", "false", "ws://[::ffff:7f00:1]:8081/ws"},
		{"ws://localhost:8081/ws", "false", "ws://localhost:8081/ws"},
		{"ws://LOCALHOST./ws", "false", "ws://localhost./ws"},
		{"ws://notifier.localhost:8081/ws", "false", "ws://notifier.localhost:8081/ws"},
		{"ws://notifier:8081/ws", "true", "ws://notifier:8081/ws"},
		{"  wss://padded.example/ws  ", "false", "wss://padded.example/ws"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			cfg, err := loadTestConfig(t, map[string]string{"config.yaml": minimalConfigYAML},
				[]string{"ATTUNE_NOTIFIER_WS_URL=" + tc.url, "ATTUNE__SENSOR__ALLOW_INSECURE_NOTIFIER_WS=" + tc.allow}, "")
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if cfg.NotifierWSURL != tc.want {
				t.Errorf("notifier %q, want %q", cfg.NotifierWSURL, tc.want)
			}
		})
	}
}

// TestLoadConfigFileErrors checks that a broken file is fatal and that the
// error names the file and, for YAML errors, the line.
func TestLoadConfigFileErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		env   []string
		where string // file the error must start with, relative to the work dir
		want  string // rest of the message
	}{
		{"tab indentation", map[string]string{"config.yaml": "message_queue: {}\nsecurity:\n\tjwt_secret: s\n"}, nil,
			"config.yaml", "invalid YAML: line 3: found character that cannot start any token"},
		{"error on first line", map[string]string{"config.yaml": "a: b: c\n"}, nil,
			"config.yaml", "invalid YAML: line 1: mapping values are not allowed in this context"},
		{"duplicate key", map[string]string{"config.yaml": "log: {}\nsensor: {}\nlog: {}\n"}, nil,
			"config.yaml", `invalid YAML: line 3: mapping key "log" already defined at line 1`},
		{"unclosed flow", map[string]string{"config.yaml": minimalConfigYAML, "config.development.yaml": "sensor: [\n"}, nil,
			"config.development.yaml", "invalid YAML: line 1: did not find expected node content"},
		{"two documents", map[string]string{"config.yaml": "a: 1\n---\nb: 2\n"}, nil,
			"config.yaml", "contains more than one YAML document; expected one"},
		{"top level list", map[string]string{"config.yaml": "- a\n"}, nil,
			"config.yaml", "top level must be a mapping, got a list"},
		{"top level scalar", map[string]string{"etc/c.yaml": "hello\n"}, []string{"ATTUNE_CONFIG=etc/c.yaml"},
			"etc/c.yaml", "top level must be a mapping, got a string"},
		{"unreadable (a directory)", map[string]string{"etc/c.yaml/x": ""}, []string{"ATTUNE_CONFIG=etc/c.yaml"},
			"etc/c.yaml", "cannot read config file: is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeConfigFiles(t, dir, tc.files)
			_, err := loadConfigWith(append(append([]string{}, testConfigEnv...), tc.env...), dir, "", os.Hostname)
			want := filepath.Join(dir, tc.where) + ": " + tc.want
			if err == nil || err.Error() != want {
				t.Fatalf("error:\n got %v\nwant %s", err, want)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error does not wrap ErrConfig")
			}
		})
	}
	t.Run("unreadable keeps the cause", func(t *testing.T) {
		dir := t.TempDir()
		writeConfigFiles(t, dir, map[string]string{"config.yaml/x": ""})
		_, err := loadConfigWith(testConfigEnv, dir, "", os.Hostname)
		var pe *fs.PathError
		if !errors.As(err, &pe) {
			t.Errorf("error %v does not expose the *fs.PathError", err)
		}
	})
	t.Run("empty and comment-only files are fine", func(t *testing.T) {
		for _, content := range []string{"", "# nothing\n", "---\n"} {
			_, err := loadTestConfig(t, map[string]string{"config.yaml": content, "config.development.yaml": minimalConfigYAML}, nil, "")
			if err != nil {
				t.Errorf("content %q: %v", content, err)
			}
		}
	})
}

// TestLoadConfigAcceptedTransports: volume and api anywhere, auto in
// development (the default environment) only.
func TestLoadConfigAcceptedTransports(t *testing.T) {
	for _, env := range [][]string{
		{"ATTUNE__PACKS__TRANSPORT=api", "ATTUNE__ARTIFACTS__TRANSPORT=volume", "ATTUNE__ENVIRONMENT=production"},
		{"ATTUNE__PACKS__TRANSPORT=auto", "ATTUNE__ARTIFACTS__TRANSPORT=auto"},
	} {
		cfg, err := loadTestConfig(t, map[string]string{"config.yaml": minimalConfigYAML}, env, "")
		if err != nil {
			t.Fatalf("%v rejected: %v", env, err)
		}
		if want := strings.TrimPrefix(env[0], "ATTUNE__PACKS__TRANSPORT="); cfg.Packs.Transport != want {
			t.Errorf("%v: packs.transport %q", env, cfg.Packs.Transport)
		}
	}
}
