package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// execConfig is the typed form of a runtime's execution_config JSONB
// (CONTRACT §6): how to run a sensor script and how to prepare its
// isolated environment.
type execConfig struct {
	Interpreter  interpreterConfig
	Environment  *environmentConfig // nil when absent
	Dependencies *dependencyConfig  // nil when absent
	EnvVars      []runtimeEnvVar    // sorted by name, so application order is stable
}

// interpreterConfig is execution_config.interpreter; Binary "" (the
// reference default), "native" or "none" means the script runs itself.
type interpreterConfig struct {
	Binary        string
	Args          []string
	FileExtension string
}

// environmentConfig is execution_config.environment (virtualenv,
// node_modules, ...); EnvType "none" disables it.
type environmentConfig struct {
	EnvType         string
	DirName         string // only a legacy pack-relative fallback in the reference; unused here
	CreateCommand   []string
	InterpreterPath string
}

// dependencyConfig is execution_config.dependencies.
type dependencyConfig struct {
	ManifestFile   string
	InstallCommand []string
}

// runtimeEnvVar is one execution_config.env_vars entry; the string form is
// shorthand for operation "set".
type runtimeEnvVar struct {
	Name, Value, Operation, Separator string
}

// ErrExecConfig marks a runtime execution_config (or runtime_version one)
// that cannot be used; the message names the sensor and the field.
var ErrExecConfig = errors.New("invalid runtime execution_config")

// parseExecConfig decodes execution_config tolerantly: unknown keys are
// ignored and JSON null counts as absent, but a field of the wrong JSON type
// is an error naming the sensor and the field (the reference silently falls
// back to an all-default config, which would run an interpreted sensor as a
// native executable). NULL or empty input is the default (native) config.
func parseExecConfig(sensorRef string, raw json.RawMessage) (execConfig, error) {
	var cfg execConfig
	if len(strings.TrimSpace(string(raw))) == 0 {
		return cfg, nil
	}
	p := execConfigParser{sensor: sensorRef}
	root, err := decodeLaunchJSON(raw)
	if err != nil {
		return cfg, p.fail("", "not valid JSON: %v", err)
	}
	top, err := p.object(root, "")
	if err != nil || top == nil {
		return cfg, err
	}
	if in, err := p.object(top["interpreter"], "interpreter"); err != nil {
		return cfg, err
	} else if in != nil {
		if cfg.Interpreter.Binary, err = p.str(in, "interpreter", "binary", false); err != nil {
			return cfg, err
		}
		if cfg.Interpreter.Args, err = p.strs(in, "interpreter", "args"); err != nil {
			return cfg, err
		}
		if cfg.Interpreter.FileExtension, err = p.str(in, "interpreter", "file_extension", false); err != nil {
			return cfg, err
		}
	}
	if env, err := p.object(top["environment"], "environment"); err != nil {
		return cfg, err
	} else if env != nil {
		e := &environmentConfig{DirName: ".venv"}
		if e.EnvType, err = p.str(env, "environment", "env_type", true); err != nil {
			return cfg, err
		}
		if d, err := p.str(env, "environment", "dir_name", false); err != nil {
			return cfg, err
		} else if d != "" {
			e.DirName = d
		}
		if e.CreateCommand, err = p.strs(env, "environment", "create_command"); err != nil {
			return cfg, err
		}
		if e.InterpreterPath, err = p.str(env, "environment", "interpreter_path", false); err != nil {
			return cfg, err
		}
		cfg.Environment = e
	}
	if dep, err := p.object(top["dependencies"], "dependencies"); err != nil {
		return cfg, err
	} else if dep != nil {
		d := &dependencyConfig{}
		if d.ManifestFile, err = p.str(dep, "dependencies", "manifest_file", true); err != nil {
			return cfg, err
		}
		if d.InstallCommand, err = p.strs(dep, "dependencies", "install_command"); err != nil {
			return cfg, err
		}
		cfg.Dependencies = d
	}
	cfg.EnvVars, err = p.envVars(top["env_vars"])
	return cfg, err
}

// execConfigParser walks the decoded JSON and turns every type mismatch into
// an ErrExecConfig naming the sensor and the dotted field path.
type execConfigParser struct{ sensor string }

// fail builds the ErrExecConfig for one field path.
func (p execConfigParser) fail(path, format string, args ...any) error {
	field := ""
	if path != "" {
		field = fmt.Sprintf(" field %q", path)
	}
	return fmt.Errorf("sensor %q: runtime execution_config%s: %s: %w", p.sensor, field, fmt.Sprintf(format, args...), ErrExecConfig)
}

// object accepts a JSON object or null (absent).
func (p execConfigParser) object(v any, path string) (map[string]any, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return t, nil
	}
	return nil, p.fail(path, "want an object, got %s", execConfigJSONType(v))
}

// str reads m[key] as a string; null or missing is "" unless required.
func (p execConfigParser) str(m map[string]any, path, key string, required bool) (string, error) {
	full := path + "." + key
	switch t := m[key].(type) {
	case nil:
		if required {
			return "", p.fail(full, "is required")
		}
		return "", nil
	case string:
		return t, nil
	}
	return "", p.fail(full, "want a string, got %s", execConfigJSONType(m[key]))
}

// strs reads m[key] as an array of strings; null or missing is nil.
func (p execConfigParser) strs(m map[string]any, path, key string) ([]string, error) {
	full := path + "." + key
	switch t := m[key].(type) {
	case nil:
		return nil, nil
	case []any:
		out := make([]string, 0, len(t))
		for i, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, p.fail(fmt.Sprintf("%s[%d]", full, i), "want a string, got %s", execConfigJSONType(e))
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, p.fail(full, "want an array of strings, got %s", execConfigJSONType(m[key]))
}

// envVars reads env_vars: NAME → "template" | {value, operation, separator},
// defaulting operation to set and separator to ":".
func (p execConfigParser) envVars(v any) ([]runtimeEnvVar, error) {
	m, err := p.object(v, "env_vars")
	if err != nil || m == nil {
		return nil, err
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]runtimeEnvVar, 0, len(m))
	for _, name := range names {
		ev := runtimeEnvVar{Name: name, Operation: "set", Separator: ":"}
		path := "env_vars." + name
		switch t := m[name].(type) {
		case string:
			ev.Value = t
		case map[string]any:
			if ev.Value, err = p.str(t, path, "value", true); err != nil {
				return nil, err
			}
			op, err := p.str(t, path, "operation", false)
			if err != nil {
				return nil, err
			}
			switch op {
			case "", "set", "prepend", "append":
				ev.Operation = cmp.Or(op, "set")
			default:
				return nil, p.fail(path+".operation", "want set, prepend or append, got %q", op)
			}
			if _, present := t["separator"]; present && t["separator"] != nil {
				if ev.Separator, err = p.str(t, path, "separator", false); err != nil {
					return nil, err
				}
			}
		default:
			return nil, p.fail(path, "want a string or {value, operation, separator}, got %s", execConfigJSONType(m[name]))
		}
		out = append(out, ev)
	}
	return out, nil
}

// execConfigJSONType names a decoded JSON value's type for error messages.
func execConfigJSONType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// resolveLaunchInterpreter returns environment.interpreter_path (templated)
// when that file exists, else interpreter.binary resolved on the PATH of
// environ (the child's PATH, not the agent's view of it). A broken symlink at
// interpreter_path, typical of a venv made in another image without
// --copies, is reported as a warning and skipped. A native runtime resolves
// to "".
func resolveLaunchInterpreter(cfg execConfig, vars map[string]string, environ []string) (path, warning string, err error) {
	if env := cfg.Environment; env != nil && env.InterpreterPath != "" {
		p := expandLaunchTemplate(env.InterpreterPath, vars)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, "", nil
		}
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			warning = fmt.Sprintf("environment interpreter %s is a broken symlink (to %s); falling back to %q", p, target, cfg.Interpreter.Binary)
		}
	}
	bin := cfg.Interpreter.Binary
	if bin == "" || bin == "native" || bin == "none" {
		return "", warning, nil
	}
	if strings.Contains(bin, "/") {
		if _, err := os.Stat(bin); err != nil {
			return "", warning, fmt.Errorf("interpreter %s: %w", bin, ErrInterpreterNotFound)
		}
		return bin, warning, nil
	}
	if p, ok := launchLookPath(bin, launchEnvValue(environ, "PATH")); ok {
		return p, warning, nil
	}
	return "", warning, fmt.Errorf("interpreter %q is not on PATH: %w", bin, ErrInterpreterNotFound)
}

// launchLookPath finds an executable regular file named name in pathList.
// Empty PATH entries (meaning the working directory) are ignored: a sensor
// must not run whatever happens to sit in the agent's working directory.
func launchLookPath(name, pathList string) (string, bool) {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// launchEnvValue returns the first value of key in an os.Environ-style list.
func launchEnvValue(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// expandLaunchTemplate replaces {pack_dir}, {env_dir}, {interpreter} and
// {manifest_path} in one pass; unknown placeholders are left as they are,
// as the reference does.
func expandLaunchTemplate(s string, vars map[string]string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	pairs := make([]string, 0, 2*len(vars))
	for _, k := range []string{"pack_dir", "env_dir", "interpreter", "manifest_path"} {
		if v, ok := vars[k]; ok {
			pairs = append(pairs, "{"+k+"}", v)
		}
	}
	return strings.NewReplacer(pairs...).Replace(s)
}
