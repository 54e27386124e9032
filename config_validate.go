package main

import (
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strings"
)

// Taint effects accepted in sensor.taints (the reference's snake_case enum).
const (
	taintNoSchedule       = "no_schedule"
	taintPreferNoSchedule = "prefer_no_schedule"
)

// validateConfig checks the decoded configuration. Each error names the key
// (or the variable the value came from) and wraps ErrConfig. notifierKey is
// where the notifier URL came from, "" for the built-in loopback default.
func validateConfig(cfg *Config, tree map[string]any, notifierKey string) error {
	if err := validatePassthroughEnv(cfg.Sensor.PassthroughEnv); err != nil {
		return err
	}
	if strings.TrimSpace(cfg.Database.URL) == "" {
		return newConfigError("database.url", "Database URL cannot be empty")
	}
	// The reference only checks that the key is present; a blank secret
	// cannot sign the worker token either, so it counts as missing here.
	if cfg.Security.EnableAuth && strings.TrimSpace(cfg.Security.JWTSecret) == "" {
		return newConfigError("security.jwt_secret", "JWT secret is required when authentication is enabled")
	}
	switch cfg.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		return newConfigError("log.level", fmt.Sprintf("invalid log level %q; must be one of trace, debug, info, warn, error", cfg.Log.Level))
	}
	switch cfg.Log.Format {
	case "json", "pretty":
	default:
		return newConfigError("log.format", fmt.Sprintf("invalid log format %q; must be one of json, pretty", cfg.Log.Format))
	}
	if err := validateSchemaName(cfg.Database.Schema); err != nil {
		return err
	}
	for _, tr := range []struct{ key, value string }{
		{"packs.transport", cfg.Packs.Transport}, {"artifacts.transport", cfg.Artifacts.Transport},
	} {
		if err := validateTransport(tr.key, tr.value, cfg.Environment); err != nil {
			return err
		}
	}
	// Like the reference, a section created by an ATTUNE__MESSAGE_QUEUE__
	// variable counts; ATTUNE_MQ_URL alone does not create the section.
	if mq, ok := tree["message_queue"]; !ok || mq == nil {
		return newConfigError("message_queue", "Message queue configuration is required")
	}
	positive := []struct {
		key string
		n   int64
	}{
		{"database.max_connections", int64(cfg.Database.MaxConnections)},
		{"sensor.max_concurrent_sensors", int64(cfg.Sensor.MaxConcurrentSensors)},
		{"sensor.heartbeat_interval", int64(cfg.Sensor.HeartbeatInterval)},
		{"sensor.shutdown_timeout", int64(cfg.Sensor.ShutdownTimeout)},
		{"artifacts.sensor_log_max_bytes", cfg.Artifacts.SensorLogMaxBytes},
		{"artifacts.sensor_log_max_files", int64(cfg.Artifacts.SensorLogMaxFiles)},
		{"artifacts.flush_interval_ms", cfg.Artifacts.FlushIntervalMS},
		{"artifacts.log_segment_initial_bytes", cfg.Artifacts.LogSegmentInitialBytes},
		{"artifacts.log_segment_max_bytes", cfg.Artifacts.LogSegmentMaxBytes},
		{"artifacts.log_segment_retry_max_attempts", int64(cfg.Artifacts.LogSegmentRetryMaxAttempts)},
	}
	for _, p := range positive {
		if p.n <= 0 {
			return newConfigError(p.key, "must be greater than zero")
		}
	}
	if cfg.Artifacts.LogSegmentInitialBytes > cfg.Artifacts.LogSegmentMaxBytes {
		return newConfigError("artifacts.log_segment_initial_bytes", "must not exceed artifacts.log_segment_max_bytes")
	}
	if notifierKey != "" {
		if err := validateNotifierWSURL(cfg.NotifierWSURL, cfg.Sensor.AllowInsecureNotifierWS); err != nil {
			return newConfigError(notifierKey, err.Error())
		}
		cfg.NotifierWSURL = normalizeNotifierWSURL(cfg.NotifierWSURL)
	}
	return nil
}

// normalizeNotifierWSURL rewrites a validated notifier URL the way the
// reference hands it to sensors: it parses it as a WHATWG URL and passes on
// that URL's serialisation. So scheme and host are lower case, an IPv6 host
// is in its compressed hex form, the scheme's default port (ws 80, wss 443)
// is dropped and an empty path becomes "/". Query and fragment are kept.
func normalizeNotifierWSURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw // validateNotifierWSURL refused it already
	}
	u.Scheme = strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() && a.Zone() == "" {
		host = "[" + whatwgIPv6(a) + "]"
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if (u.Scheme == "ws" && port == "80") || (u.Scheme == "wss" && port == "443") {
		port = ""
	}
	u.Host = host
	if port != "" {
		u.Host += ":" + port
	}
	if u.Path == "" && u.RawPath == "" {
		u.Path = "/"
	}
	return u.String()
}

// whatwgIPv6 serialises an IPv6 address as the URL standard does: eight
// hex pieces without leading zeros, the first longest run of two or more
// zero pieces compressed to "::"; an IPv4-mapped address stays in hex.
func whatwgIPv6(a netip.Addr) string {
	b := a.As16()
	var pieces [8]uint16
	for i := range pieces {
		pieces[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	start, length := -1, 1
	for i := 0; i < 8; {
		if pieces[i] != 0 {
			i++
			continue
		}
		j := i
		for j < 8 && pieces[j] == 0 {
			j++
		}
		if j-i > length {
			start, length = i, j-i
		}
		i = j
	}
	var sb strings.Builder
	for i := 0; i < 8; i++ {
		if i == start {
			sb.WriteString("::")
			i += length - 1
			continue
		}
		if sb.Len() > 0 && !strings.HasSuffix(sb.String(), ":") {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%x", pieces[i])
	}
	return sb.String()
}

// validatePassthroughEnv applies the reference's rules for names a sensor
// may inherit: exact names (ASCII letter or underscore, then letters,
// digits, underscores), never ATTUNE_-prefixed in any case (Attune context
// comes from the agent), no duplicates.
func validatePassthroughEnv(names []string) error {
	const key = "sensor.passthrough_env"
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		if !isPassthroughName(name) {
			return newConfigError(key, fmt.Sprintf("invalid passthrough environment name %q; use an exact variable name, not a pattern", name))
		}
		if strings.HasPrefix(strings.ToUpper(name), "ATTUNE_") {
			return newConfigError(key, fmt.Sprintf("passthrough environment name %q is reserved; Attune context must be supplied by the agent", name))
		}
		if seen[name] {
			return newConfigError(key, fmt.Sprintf("duplicate passthrough environment name %q", name))
		}
		seen[name] = true
	}
	return nil
}

// isPassthroughName matches ^[A-Za-z_][A-Za-z0-9_]*$.
func isPassthroughName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// validateSchemaName mirrors the reference's guard on database.schema
// (non-empty, letters/digits/underscore, at most 63 bytes, PostgreSQL's
// identifier limit), restricted to ASCII letters and digits.
func validateSchemaName(schema string) error {
	const key = "database.schema"
	if schema == "" {
		return newConfigError(key, "schema name cannot be empty")
	}
	for i := 0; i < len(schema); i++ {
		c := schema[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return newConfigError(key, fmt.Sprintf("invalid schema name %q: only letters, digits and underscores allowed", schema))
		}
	}
	if len(schema) > 63 {
		return newConfigError(key, fmt.Sprintf("schema name %q too long (max 63 characters)", schema))
	}
	return nil
}

// validateNotifierWSURL applies the reference's notifier URL rules: it
// parses, has no credentials, has a host, and is wss, or ws when insecure
// transport is allowed or the host is loopback. Loopback is decided without
// DNS: literal loopback addresses, "localhost" and *.localhost (RFC 6761).
// The reference resolves other names too; here a name that merely resolves
// to loopback needs wss or the opt-in, which keeps loading pure and fast.
// Messages never include the URL, which may carry credentials.
func validateNotifierWSURL(raw string, allowInsecure bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid sensor notifier websocket URL")
	}
	if u.User != nil {
		return fmt.Errorf("sensor notifier websocket URL must not contain credentials")
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("sensor notifier websocket URL must include a host")
	}
	switch u.Scheme {
	case "wss":
		return nil
	case "ws":
		if allowInsecure || isLoopbackHost(host) {
			return nil
		}
		return fmt.Errorf("non-loopback sensor notifier websocket URLs require wss:// or sensor.allow_insecure_notifier_ws=true")
	default:
		return fmt.Errorf("sensor notifier websocket URL must use wss:// or ws://")
	}
}

// isLoopbackHost reports whether host is certainly loopback without a DNS
// lookup.
func isLoopbackHost(host string) bool {
	if addr, err := netip.ParseAddr(host); err == nil {
		return addr.Unmap().IsLoopback()
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// decodeSensorLabels reads sensor.labels (string → string). Following the
// reference's registration, any invalid entry drops the whole map with one
// warning instead of failing start-up: keys and values must be non-blank
// scalars.
func decodeSensorLabels(d *configDecoder, path string) (map[string]string, []string) {
	v, ok := d.lookup(path)
	if !ok {
		return nil, nil
	}
	drop := func(problem string) (map[string]string, []string) {
		return nil, []string{path + ": invalid sensor worker labels ignored: " + problem}
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		return drop("expected a mapping of strings, got " + describeConfigKind(v))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, len(m))
	for _, k := range keys {
		if strings.TrimSpace(k) == "" {
			return drop("label keys must be non-empty")
		}
		s, ok := configScalarText(m[k])
		if !ok || strings.TrimSpace(s) == "" {
			return drop(fmt.Sprintf("%s[%q] must be a non-empty string", path, k))
		}
		out[k] = s
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// decodeSensorTaints reads sensor.taints, a list of {key, value?, effect?}.
// effect defaults to no_schedule as in the reference. Any invalid entry
// drops the whole list with one warning (the reference would refuse to
// start on an unknown effect; the contract asks for a warning instead).
func decodeSensorTaints(d *configDecoder, path string) ([]Taint, []string) {
	v, ok := d.lookup(path)
	if !ok {
		return nil, nil
	}
	drop := func(problem string) ([]Taint, []string) {
		return nil, []string{path + ": invalid sensor worker taints ignored: " + problem}
	}
	list, isList := v.([]any)
	if !isList {
		return drop("expected a list of {key, value, effect}, got " + describeConfigKind(v))
	}
	var out []Taint
	for i, e := range list {
		at := fmt.Sprintf("%s[%d]", path, i)
		m, isMap := e.(map[string]any)
		if !isMap {
			return drop(at + " must be a mapping with key, value and effect")
		}
		key, ok := configScalarText(m["key"])
		if !ok || strings.TrimSpace(key) == "" {
			return drop(at + ".key must be non-empty")
		}
		t := Taint{Key: key, Effect: taintNoSchedule}
		if raw, present := m["value"]; present && raw != nil {
			val, ok := configScalarText(raw)
			if !ok || strings.TrimSpace(val) == "" {
				return drop(fmt.Sprintf("%s.value of taint %q must be non-empty when provided", at, key))
			}
			t.Value = val
		}
		if raw := m["effect"]; raw != nil {
			eff, _ := configScalarText(raw)
			if eff != taintNoSchedule && eff != taintPreferNoSchedule {
				return drop(fmt.Sprintf("%s.effect must be %s or %s, got %s", at, taintNoSchedule, taintPreferNoSchedule, renderConfigValue(raw)))
			}
			t.Effect = eff
		}
		out = append(out, t)
	}
	return out, nil
}

// validateTransport checks packs.transport / artifacts.transport. The
// reference decodes both into one lowercase enum (volume, api, auto), so any
// other spelling fails to load in every environment. auto guesses the
// transport from a sentinel file the API leaves on a shared volume (the
// reference calls it the legacy mode); outside development a guess could
// silently pick the wrong transport, so it must be named explicitly there.
func validateTransport(key, value, environment string) error {
	switch value {
	case "volume", "api":
		return nil
	case "auto":
		if environment == "development" {
			return nil
		}
		return newConfigError(key, fmt.Sprintf("transport \"auto\" is only accepted in the development environment (environment is %q); set volume or api", environment))
	default:
		return newConfigError(key, fmt.Sprintf("unknown transport %q; must be one of volume, api, auto", value))
	}
}
