package main

// launchplan.go decides how one sensor runs (CONTRACT §6): resolveLaunch
// (pure, from the spec) then locate and finish (on disk, once the pack is
// local and its runtime environment prepared). sensorlaunch.go runs these
// steps in order; sensorenv.go builds the child environment.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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

	spec sensorSpec // the spec resolved (the workload snapshot under a lease), read by every later step

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

// resolveLaunch is the first step of a launch (sensorlaunch.go) and the
// only one that reads the spec's rows: pack directory, lexical entrypoint
// check, runtime version, execution config and the legacy environment
// directory. It is pure: nothing on disk is read or written, so it can
// refuse a sensor before anything about it exists.
func resolveLaunch(spec sensorSpec, set launchSettings) (launchPlan, error) {
	plan := launchPlan{spec: spec}
	if !launchPackRefPattern.MatchString(spec.PackRef) {
		return plan, fmt.Errorf("sensor %q: pack ref %q: %w", spec.Ref, spec.PackRef, ErrInvalidPackRef)
	}
	var warn string
	var err error
	plan.PackDir, warn = sensorPackDir(spec, set.PacksBaseDir)
	if warn != "" {
		plan.Warnings = append(plan.Warnings, warn)
	}
	if spec.Release != nil { // newest generation: only the pinned release
		if plan.PackDir, err = releasePackDir(set.PacksBaseDir, spec.PackRef, *spec.Release); err != nil {
			return launchPlan{}, fmt.Errorf("sensor %q: %w", spec.Ref, err)
		}
	}
	if plan.Script, err = sensorScriptLexical(spec, plan.PackDir); err != nil {
		return launchPlan{}, err
	}
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
	return plan, nil
}

// locate is the part of preparing that reads the pack on disk: the script
// must exist inside the pack, and on the newest generation the shared
// environment's key hashes the dependency manifest. It fills the template
// variables. Call it once the pack directory is local.
func (p *launchPlan) locate(set launchSettings) error {
	if err := checkSensorScript(p.spec, p.PackDir, p.Script); err != nil {
		return err
	}
	if p.spec.Release != nil {
		var err error
		if p.EnvDir, p.cacheKey, err = cachedRuntimeEnvDir(p.spec, *p, set); err != nil {
			return err
		}
	}
	p.vars = map[string]string{"pack_dir": p.PackDir, "env_dir": p.EnvDir}
	if dep := p.exec.Dependencies; dep != nil {
		p.vars["manifest_path"] = filepath.Join(p.PackDir, dep.ManifestFile)
	}
	return nil
}

// finish is the last part of preparing, once the runtime environment is in
// place: the interpreter (inside the environment when there is one) and the
// child environment without its token.
func (p *launchPlan) finish(set launchSettings) error {
	if err := p.resolveCommand(set); err != nil {
		return err
	}
	env, warns := sensorEnv(p.spec, *p, set, "")
	p.Env = env
	p.Warnings = append(p.Warnings, warns...)
	return nil
}

// planLaunchBase is resolve and locate: everything the runtime environment
// setup needs even when no interpreter exists yet (tests plan with it).
func planLaunchBase(spec sensorSpec, set launchSettings) (launchPlan, error) {
	plan, err := resolveLaunch(spec, set)
	if err != nil {
		return launchPlan{}, err
	}
	if err := plan.locate(set); err != nil {
		return launchPlan{}, err
	}
	return plan, nil
}

// planLaunch is a whole plan without preparing anything on disk: what the
// launch would run if the runtime environment were as it is now.
func planLaunch(spec sensorSpec, set launchSettings) (launchPlan, error) {
	plan, err := planLaunchBase(spec, set)
	if err != nil {
		return launchPlan{}, err
	}
	if err := plan.finish(set); err != nil {
		return launchPlan{}, err
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
// stays inside the pack: lexically inside sensors/ (sensorScriptLexical),
// and, once symlinks are resolved, inside the (resolved) pack directory
// (checkSensorScript). Nothing is executed when it fails.
func sensorScriptPath(spec sensorSpec, packDir string) (string, error) {
	script, err := sensorScriptLexical(spec, packDir)
	if err != nil {
		return "", err
	}
	return script, checkSensorScript(spec, packDir, script)
}

// sensorScriptLexical is the check on the entrypoint text alone: not empty,
// not a URL, no NUL, not absolute, and inside sensors/ once cleaned.
func sensorScriptLexical(spec sensorSpec, packDir string) (string, error) {
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
	return script, nil
}

// checkSensorScript is the check on disk: the script is a file, and with
// symlinks resolved it is still inside the resolved pack directory.
func checkSensorScript(spec sensorSpec, packDir, script string) error {
	st, err := os.Stat(script)
	if err != nil {
		return fmt.Errorf("sensor %q: script %s: %w (%v)", spec.Ref, script, ErrSensorScriptMissing, err)
	}
	if st.IsDir() {
		return fmt.Errorf("sensor %q: script %s is a directory: %w", spec.Ref, script, ErrSensorScriptMissing)
	}
	realScript, err1 := filepath.EvalSymlinks(script)
	realPack, err2 := filepath.EvalSymlinks(packDir)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("sensor %q: resolve script %s: %w", spec.Ref, script, err)
	}
	if !strings.HasPrefix(realScript, realPack+string(filepath.Separator)) {
		return fmt.Errorf("sensor %q: entrypoint %q is a symlink that resolves outside the pack directory: %w", spec.Ref, spec.Entrypoint, ErrUnsafeEntrypoint)
	}
	return nil
}

// resolveCommand picks the interpreter and fills Path, Args, Native and the
// {interpreter} template variable.
func (p *launchPlan) resolveCommand(set launchSettings) error {
	spec := p.spec
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
