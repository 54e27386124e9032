package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// maxConfigSeconds keeps a seconds value inside time.Duration.
const maxConfigSeconds = math.MaxInt64 / int64(time.Second)

// configDecoder reads typed values out of the merged tree. It records the
// first error and turns later calls into no-ops (the errWriter pattern), so
// decodeConfigTree reads as a flat list of keys. Values that are absent or
// null leave the default in place.
type configDecoder struct {
	tree map[string]any
	err  error
}

// decodeConfigTree copies every key the agent reads from tree into cfg,
// which holds the defaults. Wrong types are errors naming the key path;
// invalid labels and taints only add warnings (CONTRACT §4: dropped).
func decodeConfigTree(tree map[string]any, cfg *Config) error {
	d := &configDecoder{tree: tree}
	d.str("environment", &cfg.Environment)

	d.str("database.url", &cfg.Database.URL)
	d.count("database.max_connections", &cfg.Database.MaxConnections, math.MaxInt32)
	d.count("database.min_connections", &cfg.Database.MinConnections, math.MaxInt32)
	d.seconds("database.connect_timeout", &cfg.Database.ConnectTimeout)
	d.seconds("database.idle_timeout", &cfg.Database.IdleTimeout)
	d.str("database.schema", &cfg.Database.Schema)

	d.str("message_queue.url", &cfg.MessageQueue.URL)
	d.str("server.host", &cfg.Server.Host)
	d.count("server.port", &cfg.Server.Port, 65535)
	d.str("security.jwt_secret", &cfg.Security.JWTSecret)
	d.boolean("security.enable_auth", &cfg.Security.EnableAuth)

	d.str("log.level", &cfg.Log.Level)
	d.str("log.format", &cfg.Log.Format)
	d.boolean("log.mirror_runtime_stdout_to_stdio", &cfg.Log.MirrorStdout)
	d.boolean("log.mirror_runtime_stderr_to_stdio", &cfg.Log.MirrorStderr)

	d.str("packs_base_dir", &cfg.PacksBaseDir)
	d.str("runtime_envs_dir", &cfg.RuntimeEnvsDir)
	d.str("artifacts_dir", &cfg.ArtifactsDir)
	d.str("artifacts.transport", &cfg.Artifacts.Transport)
	d.str("packs.transport", &cfg.Packs.Transport)
	d.count64("artifacts.sensor_log_max_bytes", &cfg.Artifacts.SensorLogMaxBytes, math.MaxInt64)
	d.count("artifacts.sensor_log_max_files", &cfg.Artifacts.SensorLogMaxFiles, math.MaxInt32)
	d.count64("artifacts.flush_interval_ms", &cfg.Artifacts.FlushIntervalMS, math.MaxInt64)
	d.count64("artifacts.log_segment_initial_bytes", &cfg.Artifacts.LogSegmentInitialBytes, math.MaxInt32)
	d.count64("artifacts.log_segment_max_bytes", &cfg.Artifacts.LogSegmentMaxBytes, math.MaxInt32)
	d.count("artifacts.log_segment_retry_max_attempts", &cfg.Artifacts.LogSegmentRetryMaxAttempts, math.MaxInt32)

	s := &cfg.Sensor
	d.nonEmptyStr("sensor.worker_name", &s.WorkerName)
	d.nonEmptyStr("sensor.host", &s.Host)
	d.count("sensor.max_concurrent_sensors", &s.MaxConcurrentSensors, math.MaxInt32)
	d.seconds("sensor.heartbeat_interval", &s.HeartbeatInterval)
	d.seconds("sensor.shutdown_timeout", &s.ShutdownTimeout)
	d.str("sensor.notifier_ws_url", &s.NotifierWSURL)
	d.boolean("sensor.allow_insecure_notifier_ws", &s.AllowInsecureNotifierWS)
	d.nonEmptyStr("sensor.status_file", &s.StatusFile)
	d.passthrough("sensor.passthrough_env", &s.PassthroughEnv)
	d.capabilities("sensor.capabilities", &s.Capabilities)
	if d.err != nil {
		return d.err
	}

	labels, lwarn := decodeSensorLabels(d, "sensor.labels")
	taints, twarn := decodeSensorTaints(d, "sensor.taints")
	if d.err != nil {
		return d.err
	}
	s.Labels, s.Taints = labels, taints
	cfg.Warnings = append(cfg.Warnings, lwarn...)
	cfg.Warnings = append(cfg.Warnings, twarn...)
	return nil
}

// lookup walks a dotted path. An absent or null value reports ok=false; a
// non-mapping where a section is expected is a type error on that prefix.
func (d *configDecoder) lookup(path string) (v any, ok bool) {
	if d.err != nil {
		return nil, false
	}
	var cur any = d.tree
	segs := strings.Split(path, ".")
	for i, seg := range segs {
		m, isMap := cur.(map[string]any)
		if !isMap {
			d.err = newConfigError(strings.Join(segs[:i], "."), "expected a mapping, got "+describeConfigKind(cur))
			return nil, false
		}
		cur, ok = m[seg]
		if !ok || cur == nil {
			return nil, false
		}
	}
	return cur, true
}

// fail records the first error, naming the key.
func (d *configDecoder) fail(path, msg string) {
	if d.err == nil {
		d.err = newConfigError(path, msg)
	}
}

// str reads a string key. Scalars of other kinds are formatted as text, as
// the reference's config crate does; a mapping or list is an error (whose
// message never repeats the value: the key may hold a secret).
func (d *configDecoder) str(path string, dst *string) {
	v, ok := d.lookup(path)
	if !ok {
		return
	}
	s, ok := configScalarText(v)
	if !ok {
		d.fail(path, "expected a string, got "+describeConfigKind(v))
		return
	}
	*dst = s
}

// nonEmptyStr is str for keys whose empty value means "use the default"
// (the worker name, host and status file have no sensible empty meaning).
func (d *configDecoder) nonEmptyStr(path string, dst *string) {
	var s string
	d.str(path, &s)
	if strings.TrimSpace(s) != "" {
		*dst = s
	}
}

// boolean reads a boolean key: YAML booleans, or the words true/false,
// yes/no, on/off, 1/0 in any case (the reference's config crate accepts the
// same words when a string meets a boolean field).
func (d *configDecoder) boolean(path string, dst *bool) {
	v, ok := d.lookup(path)
	if !ok {
		return
	}
	if b, ok := v.(bool); ok {
		*dst = b
		return
	}
	if s, ok := configScalarText(v); ok {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true", "yes", "on", "1":
			*dst = true
			return
		case "false", "no", "off", "0":
			*dst = false
			return
		}
	}
	d.fail(path, "expected true or false, got "+renderConfigValue(v))
}

// count reads a non-negative whole number no larger than max (at most
// math.MaxInt32, so the value fits int on every platform).
func (d *configDecoder) count(path string, dst *int, max int64) {
	n := int64(*dst)
	d.count64(path, &n, max)
	*dst = int(n)
}

// count64 reads a non-negative whole number no larger than max.
func (d *configDecoder) count64(path string, dst *int64, max int64) {
	v, ok := d.lookup(path)
	if !ok {
		return
	}
	n, ok := configInteger(v)
	if !ok || n < 0 || n > max {
		d.fail(path, fmt.Sprintf("expected a whole number from 0 to %d, got %s", max, renderConfigValue(v)))
		return
	}
	*dst = n
}

// seconds reads a non-negative whole number of seconds.
func (d *configDecoder) seconds(path string, dst *time.Duration) {
	v, ok := d.lookup(path)
	if !ok {
		return
	}
	n, ok := configInteger(v)
	if !ok || n < 0 || n > maxConfigSeconds {
		d.fail(path, "expected a number of seconds, got "+renderConfigValue(v))
		return
	}
	*dst = time.Duration(n) * time.Second
}

// passthrough reads sensor.passthrough_env: a YAML list of names, or one
// comma-separated string (the only key split this way, as the reference's
// list_parse_key does for ATTUNE__SENSOR__PASSTHROUGH_ENV). Items are
// trimmed and empty items dropped; validation happens later.
func (d *configDecoder) passthrough(path string, dst *[]string) {
	v, ok := d.lookup(path)
	if !ok {
		return
	}
	var out []string
	switch t := v.(type) {
	case []any:
		for i, e := range t {
			s, ok := configScalarText(e)
			if !ok || e == nil {
				d.fail(fmt.Sprintf("%s[%d]", path, i), "expected a variable name, got "+describeConfigKind(e))
				return
			}
			out = append(out, strings.TrimSpace(s))
		}
	default:
		s, ok := configScalarText(v)
		if !ok {
			d.fail(path, "expected a list of variable names, got "+describeConfigKind(v))
			return
		}
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	*dst = out
}

// capabilities reads the free-form sensor.capabilities mapping. ATTUNE__
// leaves inside it are converted like the reference's try_parsing (bool,
// integer, float, else string), and non-finite floats become null so the
// map always marshals to JSON.
func (d *configDecoder) capabilities(path string, dst *map[string]any) {
	v, ok := d.lookup(path)
	if !ok {
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.fail(path, "expected a mapping, got "+describeConfigKind(v))
		return
	}
	*dst = jsonSafeConfigValue(m).(map[string]any)
}

// jsonSafeConfigValue deep-copies a tree value into JSON-marshalable form.
func jsonSafeConfigValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = jsonSafeConfigValue(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = jsonSafeConfigValue(e)
		}
		return out
	case envText:
		return parseEnvScalar(string(t))
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return nil
		}
		return t
	case string, bool, int, int64, uint64, nil:
		return t
	default:
		s, _ := configScalarText(t)
		return s
	}
}

// parseEnvScalar converts variable text the way the reference does with
// try_parsing: a boolean word, else an integer, else a finite float, else
// the string itself.
func parseEnvScalar(s string) any {
	switch strings.ToLower(s) {
	case "true":
		return true
	case "false":
		return false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		return f
	}
	return s
}

// configScalarText formats a scalar leaf as text; ok=false for mappings and
// lists. null reads as "".
func configScalarText(v any) (string, bool) {
	switch t := v.(type) {
	case nil:
		return "", true
	case string:
		return t, true
	case envText:
		return string(t), true
	case bool:
		return strconv.FormatBool(t), true
	case int:
		return strconv.Itoa(t), true
	case int64:
		return strconv.FormatInt(t, 10), true
	case uint64:
		return strconv.FormatUint(t, 10), true
	case float64:
		return strconv.FormatFloat(t, 'g', -1, 64), true
	case time.Time:
		// yaml/v3 turns unquoted dates into time.Time; give back the date.
		if t.Equal(t.Truncate(24*time.Hour)) && t.Location() == time.UTC {
			return t.Format(time.DateOnly), true
		}
		return t.Format(time.RFC3339Nano), true
	case map[string]any, []any:
		return "", false
	default:
		return fmt.Sprint(t), true
	}
}

// configInteger reads a whole number from a YAML number, a whole float
// (30.0) or text ("30", from a variable or a quoted YAML string).
func configInteger(v any) (int64, bool) {
	switch t := v.(type) {
	case int:
		return int64(t), true
	case int64:
		return t, true
	case uint64:
		if t > math.MaxInt64 {
			return 0, false
		}
		return int64(t), true
	case float64:
		return configWholeFloat(t)
	case string, envText:
		s, _ := configScalarText(t)
		s = strings.TrimSpace(s)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, true
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return configWholeFloat(f)
		}
	}
	return 0, false
}

// configWholeFloat accepts floats with no fractional part that fit int64.
func configWholeFloat(f float64) (int64, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}

// describeConfigKind names the kind of a tree value for error messages.
func describeConfigKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string, envText:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	case time.Time:
		return "a timestamp"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// renderConfigValue shows a non-secret value in an error message: text is
// quoted and cut to 64 bytes, containers are described by kind only.
func renderConfigValue(v any) string {
	switch t := v.(type) {
	case string, envText:
		s, _ := configScalarText(t)
		if len(s) > 64 {
			s = s[:64] + "..."
		}
		return strconv.Quote(s)
	case map[string]any, []any, nil:
		return describeConfigKind(v)
	default:
		s, _ := configScalarText(v)
		return s
	}
}
