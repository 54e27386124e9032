package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentConfigErrorsStartNothing runs the real binary with one invalid
// value of CONTRACT §3 at a time, against a real database it could register
// in: each exits 2 with exactly one line naming the key (or the variable it
// came from), echoes no secret, and leaves no worker row, status file or
// sensor directory behind. config_test.go covers every message; this is the
// process-level view of a representative handful.
func TestAgentConfigErrorsStartNothing(t *testing.T) {
	t.Parallel()
	dbURL := newTestDB(t, "current")
	db := newSeedDB(t, dbURL)
	badYAML := filepath.Join(t.TempDir(), "broken.yaml")
	os.WriteFile(badYAML, []byte("database: [unclosed\n"), 0o644)
	for _, tc := range []struct {
		name string
		set  map[string]string // replaces or adds these variables
		drop []string          // removes these
		want []string          // the line names one of these
	}{
		{name: "log level", set: map[string]string{"ATTUNE__LOG__LEVEL": "loud"}, want: []string{"log.level"}},
		{name: "log format", set: map[string]string{"ATTUNE__LOG__FORMAT": "xml"}, want: []string{"log.format"}},
		{name: "empty database url", set: map[string]string{"ATTUNE__DATABASE__URL": ""}, want: []string{"database.url"}},
		{name: "auth without secret", drop: []string{"ATTUNE__SECURITY__JWT_SECRET"}, want: []string{"security.jwt_secret"}},
		{name: "reserved passthrough", set: map[string]string{"ATTUNE__SENSOR__PASSTHROUGH_ENV": "PATH,ATTUNE_API_URL"},
			want: []string{"sensor.passthrough_env"}},
		{name: "schema name", set: map[string]string{"ATTUNE__DATABASE__SCHEMA": "attune;drop"}, want: []string{"database.schema"}},
		{name: "heartbeat not a number", set: map[string]string{"ATTUNE__SENSOR__HEARTBEAT_INTERVAL": "soon"},
			want: []string{"sensor.heartbeat_interval", "ATTUNE__SENSOR__HEARTBEAT_INTERVAL"}},
		{name: "zero sensors", set: map[string]string{"ATTUNE__SENSOR__MAX_CONCURRENT_SENSORS": "0"},
			want: []string{"sensor.max_concurrent_sensors", "ATTUNE__SENSOR__MAX_CONCURRENT_SENSORS"}},
		{name: "log files", set: map[string]string{"ATTUNE__ARTIFACTS__SENSOR_LOG_MAX_FILES": "-1"},
			want: []string{"artifacts.sensor_log_max_files", "ATTUNE__ARTIFACTS__SENSOR_LOG_MAX_FILES"}},
		{name: "notifier with credentials", set: map[string]string{"ATTUNE_NOTIFIER_WS_URL": "wss://notify:s3cr3t-ws@example.com/ws"},
			want: []string{"ATTUNE_NOTIFIER_WS_URL", "notifier"}},
		{name: "no message_queue section", drop: []string{"ATTUNE__MESSAGE_QUEUE__URL"}, want: []string{"message_queue"}},
		{name: "invalid yaml", set: map[string]string{"ATTUNE_CONFIG": badYAML}, want: []string{badYAML}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			name := "sensor-badcfg-" + randomSuffix()
			closed := closedTestAddr(t)
			env := agentEnv(dbURL, "amqp://guest:guest@"+closed+"/", "http://"+closed, dir,
				"ATTUNE__SENSOR__WORKER_NAME="+name)
			for k, v := range tc.set {
				env = faultSetEnv(env, k, v)
			}
			for _, k := range tc.drop {
				env = faultDropEnv(env, k)
			}
			a := startAgent(t, env)
			select {
			case <-a.done:
			case <-time.After(20 * time.Second):
				t.Fatal("agent did not exit on invalid configuration")
			}
			out := strings.TrimSpace(a.stderr.String())
			lines := strings.Split(out, "\n")
			named := false
			for _, w := range tc.want {
				named = named || strings.Contains(out, w)
			}
			t.Logf("exit %d: %s", a.code, out)
			if a.code != exitUsage || len(lines) != 1 || !named {
				t.Errorf("exit %d, stderr %q: want exit 2 and one line naming one of %q", a.code, out, tc.want)
			}
			if strings.Contains(out, "s3cr3t-ws") {
				t.Errorf("secret echoed: %q", out)
			}
			var n int
			db.pool.QueryRow(t.Context(), `SELECT count(*) FROM worker WHERE name = $1`, name).Scan(&n)
			if n != 0 {
				t.Errorf("a worker row was created despite the invalid configuration")
			}
			for _, p := range []string{"status.json", "artifacts", "runtime_envs"} {
				if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
					t.Errorf("%s was created despite the invalid configuration", p)
				}
			}
		})
	}
}

// faultDropEnv removes every assignment of name from env.
func faultDropEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
