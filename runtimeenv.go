package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// setupRunner runs one setup command (create_command, install_command) to
// completion; runner.go supplies the real one, tests a fake that execs.
type setupRunner interface {
	runToCompletion(ctx context.Context, spec procSpec) (exitStatus, error)
}

const (
	// runtimeEnvMarker is written after a successful dependency install; the
	// name is the reference's, so an environment is never installed twice.
	runtimeEnvMarker = ".attune_sensor_deps_installed"
	// runtimeEnvSetupHome is the setup HOME inside the env dir, so pip and
	// npm caches land on the runtime_envs volume, not in the image.
	runtimeEnvSetupHome = ".attune-setup"
	// runtimeEnvSetupTimeout bounds one prepare (the reference bounds a whole
	// start at 840 s); a hung pip never blocks a sensor forever.
	runtimeEnvSetupTimeout = 10 * time.Minute
	// runtimeEnvOutputTail is how much setup output an error quotes.
	runtimeEnvOutputTail = 2048
)

// prepareLaunch is resolve then prepare, for callers that have no release
// to fetch (tests, and the launcher's steps after ensureLocal).
func prepareLaunch(ctx context.Context, run setupRunner, spec sensorSpec, set launchSettings) (launchPlan, error) {
	plan, err := resolveLaunch(spec, set)
	if err != nil {
		return launchPlan{}, err
	}
	if err := prepareOnDisk(ctx, run, &plan, set); err != nil {
		return launchPlan{}, err
	}
	return plan, nil
}

// prepareOnDisk is the prepare step of a launch once the pack directory is
// local: locate the script (and the shared environment's key), build or
// reuse the runtime environment, then pick the interpreter inside it. A
// setup failure is not fatal (§6): it becomes the first warning and the
// sensor starts with the system interpreter.
func prepareOnDisk(ctx context.Context, run setupRunner, plan *launchPlan, set launchSettings) error {
	if err := plan.locate(set); err != nil {
		return err
	}
	setup := prepareRuntimeEnv
	if plan.cacheKey != "" {
		setup = prepareCachedRuntimeEnv // newest generation: shared, content-addressed
	}
	setupErr := setup(ctx, run, plan.spec, *plan, set)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sensor %q: prepare launch: %w", plan.spec.Ref, err)
	}
	if err := plan.finish(set); err != nil {
		if setupErr != nil {
			return fmt.Errorf("%w (runtime environment setup failed too: %v)", err, setupErr)
		}
		return err
	}
	if setupErr != nil {
		plan.Warnings = append([]string{fmt.Sprintf("runtime environment setup failed, starting with the system interpreter: %v", setupErr)}, plan.Warnings...)
	}
	return nil
}

// prepareRuntimeEnv makes sure the sensor's runtime environment exists:
// created once with create_command (cwd = pack dir), then install_command
// when the manifest exists and the marker is absent, then the marker.
// Prepares of the same env dir are serialised. The caller logs a returned
// error as a warning and starts the sensor anyway.
func prepareRuntimeEnv(ctx context.Context, run setupRunner, spec sensorSpec, plan launchPlan, set launchSettings) error {
	env := plan.exec.Environment
	if env == nil || env.EnvType == "none" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, runtimeEnvSetupTimeout)
	defer cancel()
	unlock, err := lockRuntimeEnvDir(ctx, plan.EnvDir)
	if err != nil {
		return fmt.Errorf("sensor %q: wait for runtime environment %s: %w", spec.Ref, plan.EnvDir, err)
	}
	defer unlock()
	return runRuntimeEnvSteps(ctx, run, spec, plan, set)
}

// runRuntimeEnvSteps are the setup steps in plan.EnvDir, whose lock the
// caller holds: create when not populated, then install when the manifest
// exists and the marker is absent. runtimecache.go runs them in a
// temporary directory before publishing it.
func runRuntimeEnvSteps(ctx context.Context, run setupRunner, spec sensorSpec, plan launchPlan, set launchSettings) error {
	env := plan.exec.Environment
	home := filepath.Join(plan.EnvDir, runtimeEnvSetupHome)
	vars := maps.Clone(plan.vars)
	if !runtimeEnvPopulated(plan.EnvDir) {
		if len(env.CreateCommand) == 0 {
			return fmt.Errorf("sensor %q: runtime environment %q needs create_command, none is configured", spec.Ref, env.EnvType)
		}
		if err := makeRuntimeSetupHome(home); err != nil {
			return fmt.Errorf("sensor %q: create runtime environment %s: %w", spec.Ref, plan.EnvDir, err)
		}
		vars["interpreter"], _, _ = resolveLaunchInterpreter(plan.exec, vars, set.Environ)
		argv := withVenvCopies(env.CreateCommand)
		if err := runRuntimeSetupStep(ctx, run, spec, plan, set, "create", argv, vars); err != nil {
			os.RemoveAll(plan.EnvDir) // a half-made environment would be taken as ready next time
			return err
		}
	}
	dep := plan.exec.Dependencies
	if dep == nil || len(dep.InstallCommand) == 0 {
		return nil
	}
	manifest := filepath.Join(plan.PackDir, dep.ManifestFile)
	if !strings.HasPrefix(manifest, plan.PackDir+string(filepath.Separator)) {
		return fmt.Errorf("sensor %q: dependencies.manifest_file %q leaves the pack directory", spec.Ref, dep.ManifestFile)
	}
	marker := filepath.Join(plan.EnvDir, runtimeEnvMarker)
	if _, err := os.Stat(manifest); err != nil {
		return nil // nothing to install
	}
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	if err := makeRuntimeSetupHome(home); err != nil {
		return fmt.Errorf("sensor %q: runtime environment %s: %w", spec.Ref, plan.EnvDir, err)
	}
	vars["interpreter"], _, _ = resolveLaunchInterpreter(plan.exec, vars, set.Environ)
	if err := runRuntimeSetupStep(ctx, run, spec, plan, set, "install", dep.InstallCommand, vars); err != nil {
		return err
	}
	if err := os.WriteFile(marker, []byte("ok"), 0o644); err != nil {
		return fmt.Errorf("sensor %q: write dependency marker: %w", spec.Ref, err)
	}
	return nil
}

// runRuntimeSetupStep runs one templated setup command in the pack dir with
// the setup environment and turns a failure into an error quoting the tail
// of its output.
func runRuntimeSetupStep(ctx context.Context, run setupRunner, spec sensorSpec, plan launchPlan, set launchSettings, step string, argv []string, vars map[string]string) error {
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = expandLaunchTemplate(a, vars)
	}
	env := runtimeSetupEnv(plan, set, vars)
	prog := args[0]
	if !strings.Contains(prog, "/") {
		p, ok := launchLookPath(prog, launchEnvValue(env, "PATH"))
		if !ok {
			return fmt.Errorf("sensor %q: runtime environment %s command %q: not on PATH", spec.Ref, step, prog)
		}
		prog = p
	}
	var stdout, stderr runtimeSetupTail
	st, err := run.runToCompletion(ctx, procSpec{
		Ref: spec.Ref, Path: prog, Args: args[1:], Env: env, Dir: plan.PackDir,
		Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil {
		return fmt.Errorf("sensor %q: runtime environment %s command %q: %w", spec.Ref, step, args[0], err)
	}
	if st.Code != 0 || st.Signal != 0 {
		out := cmp.Or(strings.TrimSpace(stderr.String()), strings.TrimSpace(stdout.String()))
		return fmt.Errorf("sensor %q: runtime environment %s command %q failed (exit %d, signal %d): %s", spec.Ref, step, args[0], st.Code, int(st.Signal), out)
	}
	return nil
}

// runtimeSetupEnv is the environment of setup commands: baseline, runtime
// env_vars, and a HOME with XDG and pip locations inside the env dir, with
// no user pip configuration.
func runtimeSetupEnv(plan launchPlan, set launchSettings, vars map[string]string) []string {
	var b launchEnvBuilder
	for _, kv := range baselineEnv(set.Environ, set.Passthrough) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			b.set(k, v)
		}
	}
	applyRuntimeEnvVars(&b, plan.exec.EnvVars, vars) // warnings were already reported by planLaunch
	home := filepath.Join(plan.EnvDir, runtimeEnvSetupHome)
	b.set("HOME", home)
	b.set("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	b.set("XDG_CACHE_HOME", filepath.Join(home, "cache"))
	b.set("PIP_CACHE_DIR", filepath.Join(home, "cache", "pip"))
	b.set("PIP_CONFIG_FILE", "/dev/null")
	return b.environ()
}

// makeRuntimeSetupHome creates the setup HOME with its config and pip cache
// directories, which some tools expect to exist.
func makeRuntimeSetupHome(home string) error {
	for _, d := range []string{filepath.Join(home, "config"), filepath.Join(home, "cache", "pip")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// runtimeEnvPopulated reports whether the env dir holds anything besides
// the setup HOME: a dir holding only .attune-setup is a create that never
// finished (agent killed mid-way) and must be redone.
func runtimeEnvPopulated(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.Name() != runtimeEnvSetupHome {
			return true
		}
	}
	return false
}

// withVenvCopies adds --copies to a `-m venv` create command that lacks
// it: a venv whose python is a symlink into one image's prefix breaks in
// another image sharing the runtime_envs volume. The reference carries the
// flag in its bundled runtime definitions; older rows may not.
func withVenvCopies(argv []string) []string {
	out := slices.Clone(argv)
	if slices.Contains(out, "--copies") {
		return out
	}
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "-m" && out[i+1] == "venv" {
			return slices.Insert(out, i+2, "--copies")
		}
	}
	return out
}

// runtimeEnvLocks serialises prepares per env dir inside this agent. A lock
// is a 1-slot channel so a waiter can give up when its ctx ends.
var runtimeEnvLocks = struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}{m: map[string]chan struct{}{}}

// lockRuntimeEnvDir takes the lock of dir, or gives up when ctx ends.
func lockRuntimeEnvDir(ctx context.Context, dir string) (unlock func(), err error) {
	runtimeEnvLocks.mu.Lock()
	ch, ok := runtimeEnvLocks.m[dir]
	if !ok {
		ch = make(chan struct{}, 1)
		runtimeEnvLocks.m[dir] = ch
	}
	runtimeEnvLocks.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// runtimeSetupTail keeps the last runtimeEnvOutputTail bytes written to it.
type runtimeSetupTail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *runtimeSetupTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - runtimeEnvOutputTail; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *runtimeSetupTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
