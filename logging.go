package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
)

// levelTrace sits below slog.LevelDebug so that log.level=trace (or
// RUST_LOG=trace) shows more than debug, as in the reference's tracing.
const levelTrace = slog.LevelDebug - 4

// redactedURL replaces a URL that cannot be parsed safely: logging the raw
// text could leak a password that the parser failed to recognise.
const redactedURL = "<redacted URL>"

// newLogger builds the agent's one logger: log.format json → JSON lines,
// pretty → key=value text. The level comes from RUST_LOG when it is a plain
// level word (trace, debug, info, warn/warning, error, any case); a RUST_LOG
// filter directive such as "info,sqlx=warn" is not a level here, so
// log.level is used instead.
func newLogger(w io.Writer, cfg LogConfig, rustLog string) *slog.Logger {
	level, err := parseLogLevel(rustLog)
	if err != nil {
		level, err = parseLogLevel(cfg.Level)
		if err != nil {
			level = slog.LevelInfo
		}
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: replaceTraceLevel}
	if cfg.Format == "pretty" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// replaceTraceLevel prints levelTrace as "TRACE" instead of slog's "DEBUG-4".
func replaceTraceLevel(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.LevelKey {
		if l, ok := a.Value.Any().(slog.Level); ok && l == levelTrace {
			a.Value = slog.StringValue("TRACE")
		}
	}
	return a
}

// parseLogLevel maps a level word (case-insensitive, surrounding blanks
// ignored) to a slog level: trace → levelTrace, debug, info, warn or
// warning, error. Anything else is an error.
func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace":
		return levelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q", s)
}

// redactURL returns raw fit for a log line: scheme, host, port and path
// only. The whole userinfo goes (username too: the reference drops it, and
// a username can itself be a token), and so do the query and fragment
// (they can carry passwords: ?password=, ?sslpassword=). Anything that is
// not a plain scheme://host/path URL, including text that fails to parse,
// becomes a fixed placeholder, never the input.
func redactURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.Host == "" {
		return redactedURL
	}
	path := u.EscapedPath()
	// A password with an unescaped '/' splits the authority: the rest of
	// the password then shows up in the path before an '@'.
	if strings.ContainsAny(u.Host+path, "@ \t\r\n") {
		return redactedURL
	}
	return u.Scheme + "://" + u.Host + path
}
