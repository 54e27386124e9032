package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// launchSettings is the slice of the agent's configuration that launching
// needs. Environ is the agent's own environment (os.Environ form): only the
// baseline and passthrough names are ever copied from it into a child.
type launchSettings struct {
	PacksBaseDir, RuntimeEnvsDir, ArtifactsDir, APIURL, NotifierWSURL, LogLevel, LogFormat string
	AllowInsecureNotifierWS                                                                bool
	Passthrough                                                                            []string
	Environ                                                                                []string
	// AdvertisedVersions are this worker's advertised runtime versions by
	// canonical name (advertisedRuntimeVersions); they decide the version.
	AdvertisedVersions map[string][]string
}

// launchPlan is the decided command line of one sensor. Args are the
// arguments after Path (exec.Command(Path, Args...) convention, argv[0] not
// included). Env is the child environment without ATTUNE_API_TOKEN, so it is
// safe to log; sensorEnv builds the real one once a token has been issued.
type launchPlan struct {
	Path           string
	Args           []string
	Env            []string
	PackDir        string
	EnvDir         string
	Script         string
	Native         bool
	RuntimeVersion string // the selected runtime_version, "" when the runtime's own config is used
	Warnings       []string

	cacheKey string // content-addressed environment key (runtimecache.go); "" on the legacy layout

	exec execConfig        // the execution_config in force (runtime or selected version)
	vars map[string]string // template variables: pack_dir, env_dir, interpreter, manifest_path
}

var (
	// ErrUnsafeEntrypoint refuses an entrypoint that could run something
	// outside {pack_dir}/sensors: a URL, an absolute path, a path that
	// climbs out, or a symlink that resolves outside the pack.
	ErrUnsafeEntrypoint = errors.New("unsafe sensor entrypoint")
	// ErrSensorScriptMissing means the entrypoint names no file in the pack.
	ErrSensorScriptMissing = errors.New("sensor script not found")
	// ErrInterpreterNotFound means interpreter.binary is not on the child PATH.
	ErrInterpreterNotFound = errors.New("sensor interpreter not found")
	// ErrInvalidPackRef refuses a pack ref that is not a plain directory name.
	ErrInvalidPackRef = errors.New("invalid pack ref")
)

// launchPackRefPattern is the reference's pack ref rule; anything else could
// turn {packs_base_dir}/{pack_ref} into a path outside the packs volume.
var launchPackRefPattern = regexp.MustCompile(`^[a-z][a-z0-9_-]+$`)

// planLaunch decides how to run one sensor: pack directory, script, runtime
// configuration, environment directory, interpreter and the child
// environment (without token). It executes nothing. The interpreter it picks
// depends on whether the runtime environment exists, so call it again after
// prepareRuntimeEnv (prepareLaunch does both).
func planLaunch(spec sensorSpec, set launchSettings) (launchPlan, error) {
	plan, err := planLaunchBase(spec, set)
	if err != nil {
		return launchPlan{}, err
	}
	if err := plan.resolveCommand(spec, set); err != nil {
		return launchPlan{}, err
	}
	env, warns := sensorEnv(spec, plan, set, "")
	plan.Env = env
	plan.Warnings = append(plan.Warnings, warns...)
	return plan, nil
}

// planLaunchBase is planLaunch up to, but not including, the interpreter:
// everything prepareRuntimeEnv needs even when no interpreter exists yet.
func planLaunchBase(spec sensorSpec, set launchSettings) (launchPlan, error) {
	var plan launchPlan
	if !launchPackRefPattern.MatchString(spec.PackRef) {
		return plan, fmt.Errorf("sensor %q: pack ref %q: %w", spec.Ref, spec.PackRef, ErrInvalidPackRef)
	}
	var warn string
	var err error
	plan.PackDir, warn = sensorPackDir(spec, set.PacksBaseDir)
	if warn != "" {
		plan.Warnings = append(plan.Warnings, warn)
	}
	if spec.Release != nil {
		if plan.PackDir, err = releasePackDir(spec, set.PacksBaseDir); err != nil {
			return launchPlan{}, err
		}
	}
	script, err := sensorScriptPath(spec, plan.PackDir)
	if err != nil {
		return launchPlan{}, err
	}
	plan.Script = script

	raw := spec.ExecutionConfig
	selected, eligible, reason := selectRuntimeVersion(spec, set.AdvertisedVersions)
	if !eligible {
		return launchPlan{}, runtimeVersionError(spec, reason)
	}
	envName := strings.ToLower(strings.TrimSpace(spec.RuntimeName))
	if selected != nil {
		raw = selected.ExecutionConfig
		plan.RuntimeVersion = selected.Version
		envName += "-" + selected.Version
	}
	if plan.exec, err = parseExecConfig(spec.Ref, raw); err != nil {
		return launchPlan{}, err
	}
	if envName == "" || envName == "." || envName == ".." || strings.ContainsAny(envName, "/\x00") {
		return launchPlan{}, fmt.Errorf("sensor %q: runtime name %q cannot name an environment directory", spec.Ref, envName)
	}
	plan.EnvDir = filepath.Join(set.RuntimeEnvsDir, spec.PackRef, envName)
	if spec.Release != nil {
		if plan.EnvDir, plan.cacheKey, err = cachedRuntimeEnvDir(spec, plan, set); err != nil {
			return launchPlan{}, err
		}
	}
	plan.vars = map[string]string{"pack_dir": plan.PackDir, "env_dir": plan.EnvDir}
	if dep := plan.exec.Dependencies; dep != nil {
		plan.vars["manifest_path"] = filepath.Join(plan.PackDir, dep.ManifestFile)
	}
	return plan, nil
}

// sensorPackDir picks the volume layout {packs}/{pack_ref}, or the current
// generation's release tree when the pack has an active release whose
// directory is present. A malformed digest is reported and ignored.
func sensorPackDir(spec sensorSpec, packsBaseDir string) (dir, warning string) {
	volume := filepath.Join(packsBaseDir, spec.PackRef)
	if spec.Release != nil && launchIsSHA256Hex(spec.Release.Digest) {
		return filepath.Join(packsBaseDir, ".releases", "sha256", spec.Release.Digest, "pack"), ""
	}
	digest := strings.TrimPrefix(spec.PackActiveReleaseDigest, "sha256:")
	if digest == "" {
		return volume, ""
	}
	if !launchIsSHA256Hex(digest) {
		return volume, fmt.Sprintf("pack %q active release digest %q is not a lower-case sha256; using %s", spec.PackRef, spec.PackActiveReleaseDigest, volume)
	}
	release := filepath.Join(packsBaseDir, ".releases", "sha256", digest, "pack")
	if st, err := os.Stat(release); err == nil && st.IsDir() {
		return release, ""
	}
	return volume, ""
}

// launchIsSHA256Hex accepts exactly the reference's digest form: 64
// lower-case hex digits (which also rules out any path trickery).
func launchIsSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// sensorScriptPath returns {pack_dir}/sensors/{entrypoint} after proving it
// stays inside the pack: lexically inside sensors/, and, once symlinks are
// resolved, inside the (resolved) pack directory. Nothing is executed when
// it fails.
func sensorScriptPath(spec sensorSpec, packDir string) (string, error) {
	ep := spec.Entrypoint
	unsafe := func(why string) error {
		return fmt.Errorf("sensor %q: entrypoint %q %s: %w", spec.Ref, ep, why, ErrUnsafeEntrypoint)
	}
	switch {
	case strings.TrimSpace(ep) == "":
		return "", unsafe("is empty")
	case strings.Contains(ep, "://"):
		return "", unsafe("is a URL, not a file in the pack")
	case strings.ContainsRune(ep, 0):
		return "", unsafe("contains a NUL byte")
	case filepath.IsAbs(ep):
		return "", unsafe("is absolute")
	}
	sensorsDir := filepath.Join(packDir, "sensors")
	script := filepath.Join(sensorsDir, ep)
	if !strings.HasPrefix(script, sensorsDir+string(filepath.Separator)) {
		return "", unsafe("leaves the pack's sensors directory")
	}
	st, err := os.Stat(script)
	if err != nil {
		return "", fmt.Errorf("sensor %q: script %s: %w (%v)", spec.Ref, script, ErrSensorScriptMissing, err)
	}
	if st.IsDir() {
		return "", fmt.Errorf("sensor %q: script %s is a directory: %w", spec.Ref, script, ErrSensorScriptMissing)
	}
	realScript, err1 := filepath.EvalSymlinks(script)
	realPack, err2 := filepath.EvalSymlinks(packDir)
	if err := errors.Join(err1, err2); err != nil {
		return "", fmt.Errorf("sensor %q: resolve script %s: %w", spec.Ref, script, err)
	}
	if !strings.HasPrefix(realScript, realPack+string(filepath.Separator)) {
		return "", unsafe("is a symlink that resolves outside the pack directory")
	}
	return script, nil
}

// resolveCommand picks the interpreter and fills Path, Args, Native and the
// {interpreter} template variable.
func (p *launchPlan) resolveCommand(spec sensorSpec, set launchSettings) error {
	interp, warn, err := resolveLaunchInterpreter(p.interpreterConfig(), p.vars, set.Environ)
	if warn != "" {
		p.Warnings = append(p.Warnings, warn)
	}
	bin := p.exec.Interpreter.Binary
	p.Native = bin == "" || bin == "native" || bin == "none"
	if p.Native {
		if st, err := os.Stat(p.Script); err == nil && st.Mode()&0o111 == 0 {
			return fmt.Errorf("sensor %q: native script %s is not executable", spec.Ref, p.Script)
		}
		p.vars["interpreter"] = interp
		p.Path, p.Args = p.Script, nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("sensor %q: %w", spec.Ref, err)
	}
	p.vars["interpreter"] = interp
	p.Path = interp
	p.Args = append(append([]string{}, p.exec.Interpreter.Args...), p.Script)
	return nil
}

// sensorEnv builds the child environment of §6 from nothing: the baseline
// and passthrough names of the agent's environment, then every ATTUNE_*
// variable, then the runtime's env_vars (which may not touch ATTUNE_*).
// Nothing else of the agent's environment (database or broker URL, JWT
// secret, ATTUNE__* keys) can reach a sensor. With token "" the
// ATTUNE_API_TOKEN entry is left out, which is what launchPlan.Env holds.
// The second result lists what was skipped, for the caller to log.
func sensorEnv(spec sensorSpec, plan launchPlan, set launchSettings, token string) ([]string, []string) {
	var b launchEnvBuilder
	for _, kv := range baselineEnv(set.Environ, set.Passthrough) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			b.set(k, v)
		}
	}
	triggers, warns := sensorTriggersJSON(spec)
	config := "null"
	if len(spec.Config) > 0 {
		v, err := decodeLaunchJSON(spec.Config)
		if err != nil {
			warns = append(warns, fmt.Sprintf("sensor config is not valid JSON (%v); ATTUNE_SENSOR_CONFIG_JSON is null", err))
		} else {
			config = encodeLaunchJSON(v)
		}
	}
	b.set("ATTUNE_API_URL", set.APIURL)
	if token != "" {
		b.set("ATTUNE_API_TOKEN", token)
	}
	b.set("ATTUNE_PACK_REF", spec.PackRef)
	b.set("ATTUNE_SENSOR_ID", fmt.Sprint(spec.ID))
	b.set("ATTUNE_SENSOR_REF", spec.Ref)
	b.set("ATTUNE_SENSOR_TRIGGERS", triggers)
	b.set("ATTUNE_SENSOR_TRIGGER_TYPES", encodeLaunchJSON(canonicalSensorRefs(spec.TriggerRefs)))
	b.set("ATTUNE_SENSOR_CONFIG_JSON", config)
	b.set("ATTUNE_ARTIFACTS_DIR", set.ArtifactsDir)
	b.set("ATTUNE_LOG_LEVEL", set.LogLevel)
	b.set("ATTUNE_LOG_FORMAT", set.LogFormat)
	b.set("ATTUNE_NOTIFIER_WS_URL", set.NotifierWSURL)
	b.set("ATTUNE_ALLOW_INSECURE_NOTIFIER_WS", fmt.Sprint(set.AllowInsecureNotifierWS))
	if f := spec.Fence; f != nil { // the lease this process runs under (CONTRACT §12)
		b.set("ATTUNE_SENSOR_WORKLOAD_ID", fmt.Sprint(f.WorkloadID))
		b.set("ATTUNE_SENSOR_ASSIGNMENT_GENERATION", fmt.Sprint(f.Generation))
	}
	warns = append(warns, applyRuntimeEnvVars(&b, plan.exec.EnvVars, plan.vars)...)
	return b.environ(), warns
}

// sensorTriggersJSON renders ATTUNE_SENSOR_TRIGGERS exactly as the reference
// does (serde_json without preserve_order): compact, object keys sorted
// ("config", "id", "ref", "trigger_ref"), nested config keys sorted too.
// Rules are ordered by trigger ref, then id, so the value is stable.
func sensorTriggersJSON(spec sensorSpec) (string, []string) {
	type triggerInstance struct {
		Config     any    `json:"config"`
		ID         int64  `json:"id"`
		Ref        string `json:"ref"`
		TriggerRef string `json:"trigger_ref"`
	}
	rules := slices.Clone(spec.Rules)
	slices.SortStableFunc(rules, func(a, b sensorRule) int {
		return cmp.Or(strings.Compare(a.TriggerRef, b.TriggerRef), cmp.Compare(a.ID, b.ID))
	})
	var warns []string
	out := make([]triggerInstance, 0, len(rules))
	for _, r := range rules {
		var cfg any = map[string]any{}
		if len(r.Params) > 0 {
			v, err := decodeLaunchJSON(r.Params)
			if err != nil {
				warns = append(warns, fmt.Sprintf("rule %q trigger_params are not valid JSON (%v); using {}", r.Ref, err))
			} else {
				cfg = v
			}
		}
		out = append(out, triggerInstance{Config: cfg, ID: r.ID, Ref: r.Ref, TriggerRef: r.TriggerRef})
	}
	return encodeLaunchJSON(out), warns
}

// applyRuntimeEnvVars applies the runtime's env_vars, in name order, to b:
// set replaces, prepend/append join with the separator against the value
// built so far. Names that are empty, contain '=' or NUL, or start with
// ATTUNE_ (any case), and values containing NUL, are skipped with a warning.
func applyRuntimeEnvVars(b *launchEnvBuilder, vars []runtimeEnvVar, tmpl map[string]string) []string {
	var warns []string
	for _, ev := range vars {
		switch {
		case ev.Name == "" || strings.ContainsAny(ev.Name, "=\x00"):
			warns = append(warns, fmt.Sprintf("runtime env_vars name %q is not a valid variable name; skipped", ev.Name))
			continue
		case strings.HasPrefix(strings.ToUpper(ev.Name), "ATTUNE_"):
			warns = append(warns, fmt.Sprintf("runtime env_vars may not set reserved variable %s; skipped", ev.Name))
			continue
		}
		val := expandLaunchTemplate(ev.Value, tmpl)
		if strings.ContainsRune(val, 0) {
			warns = append(warns, fmt.Sprintf("runtime env_vars value of %s contains a NUL byte; skipped", ev.Name))
			continue
		}
		old, _ := b.get(ev.Name)
		switch ev.Operation {
		case "prepend":
			val = joinLaunchEnvValues(val, old, ev.Separator)
		case "append":
			val = joinLaunchEnvValues(old, val, ev.Separator)
		}
		b.set(ev.Name, val)
	}
	return warns
}

// joinLaunchEnvValues joins with sep, dropping an empty side (reference
// join_env_var_values).
func joinLaunchEnvValues(left, right, sep string) string {
	switch {
	case left == "":
		return right
	case right == "":
		return left
	}
	return left + sep + right
}

// launchEnvBuilder is an ordered environment: a later set of the same name
// replaces the value in place, so the result never holds duplicates.
type launchEnvBuilder struct {
	keys []string
	vals map[string]string
}

func (b *launchEnvBuilder) set(k, v string) {
	if b.vals == nil {
		b.vals = map[string]string{}
	}
	if _, ok := b.vals[k]; !ok {
		b.keys = append(b.keys, k)
	}
	b.vals[k] = v
}

func (b *launchEnvBuilder) get(k string) (string, bool) {
	v, ok := b.vals[k]
	return v, ok
}

func (b *launchEnvBuilder) environ() []string {
	out := make([]string, 0, len(b.keys))
	for _, k := range b.keys {
		out = append(out, k+"="+b.vals[k])
	}
	return out
}

// decodeLaunchJSON decodes keeping numbers as written (json.Number), so a
// big integer in a rule's params is not rounded through float64.
func decodeLaunchJSON(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON value")
	}
	return v, nil
}

// encodeLaunchJSON is compact JSON with sorted object keys and without
// Go's HTML escaping of <, > and &, which serde_json does not do either.
func encodeLaunchJSON(v any) string {
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "null" // unreachable for the decoded values and plain structs used here
	}
	return strings.TrimSuffix(sb.String(), "\n")
}

// canonicalSensorRefs trims, drops empties, sorts and de-duplicates refs;
// the result is never nil so it encodes as [] rather than null.
func canonicalSensorRefs(refs []string) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
