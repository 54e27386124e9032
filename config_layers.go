package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// envText is a leaf set by an ATTUNE__ variable. It keeps the variable's
// text untouched: the typed decoder converts it to a number or boolean only
// where the key wants one, so a string key never loses leading zeros or
// trailing ".0" the way an eager conversion would.
type envText string

// attuneEnvPrefix is the (case-insensitive) prefix of the nested overrides.
const attuneEnvPrefix = "attune__"

// loadConfigTree reads and merges the three layers that the reference feeds
// to its config builder: base file, environment file, ATTUNE__ variables.
// The result is a generic tree of map[string]any, []any, scalars and
// envText, decoded into typed values afterwards.
func loadConfigTree(env map[string]string, environ []string, workDir string) (tree map[string]any, files, warnings []string, err error) {
	tree = map[string]any{}

	base, explicit := env[envConfigPath], true
	if base == "" {
		base, explicit = "config.yaml", false
	}
	base = configPathIn(workDir, base)
	layer, found, err := readConfigFile(base)
	if err != nil {
		return nil, nil, nil, err
	}
	if found {
		mergeConfigTree(tree, layer)
		files = append(files, base)
	} else if explicit {
		warnings = append(warnings, fmt.Sprintf("%s: config file %s does not exist; using defaults and environment only", envConfigPath, base))
	}

	// The reference picks the environment file from ATTUNE__ENVIRONMENT
	// only (not from the `environment` key) and looks it up relative to the
	// working directory, even when ATTUNE_CONFIG points elsewhere.
	envName := env[envEnvironment]
	if envName == "" {
		envName = "development"
	}
	envFile := configPathIn(workDir, "config."+envName+".yaml")
	layer, found, err = readConfigFile(envFile)
	if err != nil {
		return nil, nil, nil, err
	}
	if found {
		mergeConfigTree(tree, layer)
		files = append(files, envFile)
	}

	warnings = append(warnings, applyEnvOverrides(tree, environ)...)
	return tree, files, warnings, nil
}

// configPathIn resolves a relative config path against workDir (the
// reference resolves it against its working directory).
func configPathIn(workDir, path string) string {
	if filepath.IsAbs(path) || workDir == "" {
		return path
	}
	return filepath.Join(workDir, path)
}

// readConfigFile parses one YAML file into a tree. A missing file is not an
// error (found=false); an unreadable file, a syntax error (with yaml's line
// number), several documents or a non-mapping top level are.
func readConfigFile(path string) (tree map[string]any, found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, &configError{where: path, msg: "cannot read config file: " + describeFSError(err), cause: err}
	}
	tree, err = parseConfigYAML(path, data)
	return tree, true, err
}

// describeFSError drops the path that *PathError repeats, since configError
// already names the file.
func describeFSError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// parseConfigYAML decodes exactly one YAML document whose top level is a
// mapping (or empty). yaml/v3 resolves anchors, aliases and merge keys and
// bounds alias expansion, so hostile files cannot blow up memory.
func parseConfigYAML(path string, data []byte) (map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc any
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return map[string]any{}, nil
		}
		return nil, yamlConfigError(path, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlConfigError(path, err)
		}
		return nil, newConfigError(path, "contains more than one YAML document; expected one")
	}
	switch root := normalizeYAMLValue(doc).(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any:
		return root, nil
	default:
		return nil, newConfigError(path, "top level must be a mapping, got "+describeConfigKind(root))
	}
}

// yamlConfigError turns a yaml/v3 error ("yaml: line 3: ...", or a multi-line
// "unmarshal errors" list) into one line that names the file and the line.
func yamlConfigError(path string, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	msg = strings.TrimPrefix(msg, "yaml: ")
	parts := strings.Split(msg, "\n")
	for i := range parts {
		p := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(parts[i]), "yaml: "))
		// yaml/v3 leaves out "line N" when the problem is on the first
		// line (its line counter is zero there).
		if !strings.HasPrefix(p, "line ") && !strings.Contains(p, "aliasing") {
			p = "line 1: " + p
		}
		parts[i] = p
	}
	return &configError{where: path, msg: "invalid YAML: " + strings.Join(parts, "; "), cause: err}
}

// normalizeYAMLValue converts the map[any]any that yaml/v3 produces for
// mappings with non-string keys into map[string]any (keys formatted as
// text, as the reference's config crate does), recursively.
func normalizeYAMLValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeYAMLValue(e)
		}
		return t
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[fmt.Sprint(k)] = normalizeYAMLValue(e)
		}
		return out
	case []any:
		for i, e := range t {
			t[i] = normalizeYAMLValue(e)
		}
		return t
	default:
		return v
	}
}

// mergeConfigTree deep-merges src into dst: mappings merge key by key, and
// anything else (scalar, list, null) in src replaces what dst had.
func mergeConfigTree(dst, src map[string]any) {
	for k, sv := range src {
		if sm, ok := sv.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeConfigTree(dm, sm)
				continue
			}
		}
		dst[k] = sv
	}
}

// applyEnvOverrides sets one tree path per ATTUNE__ variable. As in the
// reference's config crate, the prefix matches in any case, the whole name
// is lower-cased (so map keys such as ATTUNE__SENSOR__LABELS__Zone become
// "zone") and "__" separates levels. Variables are applied in sorted order
// so that, of ATTUNE__SENSOR and ATTUNE__SENSOR__X, the deeper one wins
// deterministically. It returns warnings for names it cannot use.
func applyEnvOverrides(tree map[string]any, environ []string) (warnings []string) {
	type override struct {
		name string
		path []string
		val  string
	}
	var list []override
	seen := map[string]bool{}
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || seen[name] {
			continue
		}
		seen[name] = true
		lower := strings.ToLower(name)
		if !strings.HasPrefix(lower, attuneEnvPrefix) {
			continue
		}
		path := strings.Split(lower[len(attuneEnvPrefix):], "__")
		if emptyConfigSegment(path) {
			warnings = append(warnings, fmt.Sprintf("%s: ignored: empty key segment in an ATTUNE__ variable name", name))
			continue
		}
		list = append(list, override{name: name, path: path, val: val})
	}
	sort.Slice(list, func(i, j int) bool {
		return strings.Join(list[i].path, "\x00") < strings.Join(list[j].path, "\x00")
	})
	for _, o := range list {
		setConfigPath(tree, o.path, envText(o.val))
	}
	return warnings
}

// emptyConfigSegment reports whether a split variable name has an empty
// level ("ATTUNE__", "ATTUNE__SENSOR__", "ATTUNE__A____B").
func emptyConfigSegment(path []string) bool {
	for _, p := range path {
		if p == "" {
			return true
		}
	}
	return false
}

// setConfigPath stores v at path, replacing any non-mapping on the way by a
// fresh mapping (an override always creates its section).
func setConfigPath(tree map[string]any, path []string, v any) {
	m := tree
	for _, seg := range path[:len(path)-1] {
		next, ok := m[seg].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[seg] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}
