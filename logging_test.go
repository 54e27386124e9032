package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestNewLoggerFormat(t *testing.T) {
	t.Run("json", func(t *testing.T) {
		var buf bytes.Buffer
		newLogger(&buf, LogConfig{Level: "info", Format: "json"}, "").Info("agent ready", "sensor", "core.timer")
		var rec map[string]any
		if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
			t.Fatalf("not one JSON object: %q: %v", buf.String(), err)
		}
		if rec["level"] != "INFO" || rec["msg"] != "agent ready" || rec["sensor"] != "core.timer" {
			t.Errorf("record %v", rec)
		}
	})
	t.Run("pretty", func(t *testing.T) {
		var buf bytes.Buffer
		newLogger(&buf, LogConfig{Level: "info", Format: "pretty"}, "").Info("agent ready", "sensor", "core.timer")
		if got := buf.String(); !strings.Contains(got, `level=INFO msg="agent ready" sensor=core.timer`) || strings.HasPrefix(got, "{") {
			t.Errorf("text line %q", got)
		}
	})
	t.Run("trace is named TRACE", func(t *testing.T) {
		var buf bytes.Buffer
		newLogger(&buf, LogConfig{Level: "trace", Format: "json"}, "").Log(context.Background(), levelTrace, "probe")
		if !strings.Contains(buf.String(), `"level":"TRACE"`) {
			t.Errorf("line %q", buf.String())
		}
	})
}

// TestNewLoggerLevel pins RUST_LOG precedence: a plain level word wins over
// log.level; anything else (directives, "off", blank) falls back to it.
func TestNewLoggerLevel(t *testing.T) {
	tests := []struct {
		rustLog, cfgLevel string
		want              slog.Level
	}{
		{"", "info", slog.LevelInfo},
		{"", "warn", slog.LevelWarn},
		{"", "trace", levelTrace},
		{"debug", "info", slog.LevelDebug},
		{"TRACE", "info", levelTrace},
		{"Warning", "debug", slog.LevelWarn},
		{" error ", "debug", slog.LevelError},
		{"info", "error", slog.LevelInfo},
		{"info,sqlx=warn", "debug", slog.LevelDebug},
		{"attune_sensor=trace", "warn", slog.LevelWarn},
		{"off", "error", slog.LevelError},
		{"   ", "debug", slog.LevelDebug},
		{"", "bogus", slog.LevelInfo},
	}
	for _, tc := range tests {
		t.Run(tc.rustLog+"/"+tc.cfgLevel, func(t *testing.T) {
			l := newLogger(&bytes.Buffer{}, LogConfig{Level: tc.cfgLevel, Format: "json"}, tc.rustLog)
			ctx := context.Background()
			if !l.Enabled(ctx, tc.want) || l.Enabled(ctx, tc.want-1) {
				t.Errorf("logger level is not %v", tc.want)
			}
		})
	}
}

func TestParseLogLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"trace": levelTrace, "DEBUG": slog.LevelDebug, "Info": slog.LevelInfo,
		"warn": slog.LevelWarn, "WARNING": slog.LevelWarn, "error\n": slog.LevelError,
	} {
		if got, err := parseLogLevel(in); err != nil || got != want {
			t.Errorf("parseLogLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fatal", "info,x=debug", "off", "1"} {
		if _, err := parseLogLevel(in); err == nil {
			t.Errorf("parseLogLevel(%q): no error", in)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"postgres with password", "postgresql://postgres:s3cret@db.internal:5432/attune", "postgresql://db.internal:5432/attune"},
		{"postgres sslpassword in query", "postgres://app@db/attune?sslmode=require&sslpassword=hunter2", "postgres://db/attune"},
		{"amqp with password and vhost", "amqp://guest:guest@rabbitmq:5672/%2f", "amqp://rabbitmq:5672/%2f"},
		{"amqps query secret and fragment", "amqps://u:p@mq.example/vh?auth_token=abc#frag", "amqps://mq.example/vh"},
		{"escaped password", "postgres://user:p%40ss%2Fw@db/x", "postgres://db/x"},
		{"no credentials", "postgresql://localhost:5432/attune", "postgresql://localhost:5432/attune"},
		{"ipv6 host", "postgres://u:p@[::1]:5432/a", "postgres://[::1]:5432/a"},
		{"websocket", "wss://notify.example/ws?token=t", "wss://notify.example/ws"},
		{"password with slash spills into path", "amqp://u:12/ss@host/vh", redactedURL},
		{"password with raw percent", "postgres://u:100%@db/x", redactedURL},
		{"not a URL", "not a connection URL?password=secret", redactedURL},
		{"key=value DSN", "host=db user=app password=secret", redactedURL},
		{"unix socket (no host)", "postgresql:///attune?host=/run/postgresql&password=x", redactedURL},
		{"opaque", "mailto:user:secret", redactedURL},
		{"empty", "", redactedURL},
		{"control character", "postgres://u:p@db/x\x7f", redactedURL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := redactURL(tc.in)
			if got != tc.want {
				t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
			}
			for _, secret := range []string{"s3cret", "hunter2", "guest:guest", "auth_token", "p%40ss", "secret", "password"} {
				if strings.Contains(got, secret) {
					t.Errorf("redactURL(%q) = %q leaks %q", tc.in, got, secret)
				}
			}
		})
	}
}
