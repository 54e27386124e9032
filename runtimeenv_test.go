package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// shimExecConfig is a runtime whose "environment" is made by /bin/sh: the
// create command writes an interpreter shim into {env_dir}/bin and records
// its environment and working directory; the install command (run through
// that shim) records its own environment.
const shimExecConfig = `{
  "interpreter": {"binary": "sh", "args": ["-e"]},
  "environment": {"env_type": "shim", "interpreter_path": "{env_dir}/bin/shim",
    "create_command": ["sh", "-c", "mkdir -p {env_dir}/bin && printf '#!/bin/sh\\nexec /bin/sh \"$@\"\\n' > {env_dir}/bin/shim && chmod +x {env_dir}/bin/shim && env > {env_dir}/create.env && pwd > {env_dir}/create.pwd && echo created >> {env_dir}/runs"]},
  "dependencies": {"manifest_file": "deps.txt",
    "install_command": ["{interpreter}", "-c", "env > {env_dir}/install.env; echo installed >> {env_dir}/runs"]},
  "env_vars": {"SHIM_HOME": "{env_dir}", "PATH": {"value": "{env_dir}/bin", "operation": "prepend"}}
}`

func shimSetup(t *testing.T, config string) (sensorSpec, launchSettings) {
	t.Helper()
	packs := t.TempDir()
	writeLaunchFile(t, filepath.Join(packs, "shimpack", "sensors", "s.sh"), "exit 0\n", 0o644)
	writeLaunchFile(t, filepath.Join(packs, "shimpack", "deps.txt"), "dep\n", 0o644)
	set := testLaunchSettings(t, packs, "PATH=/usr/bin:/bin", "HOME=/root", "DATABASE_URL=postgres://u:dbpass@db/x")
	spec := sensorSpec{ID: 1, Ref: "shimpack.s", PackRef: "shimpack", Entrypoint: "s.sh", RuntimeName: "Shim",
		ExecutionConfig: json.RawMessage(config), TriggerRefs: []string{"shimpack.t"}}
	return spec, set
}

func readLaunchFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func TestPrepareRuntimeEnvCreatesOnceThenInstalls(t *testing.T) {
	spec, set := shimSetup(t, shimExecConfig)
	run := &fakeSetupRunner{t: t}
	plan, err := prepareLaunch(t.Context(), run, spec, set)
	if err != nil {
		t.Fatalf("prepareLaunch: %v", err)
	}
	if len(plan.Warnings) != 0 {
		t.Errorf("warnings: %q", plan.Warnings)
	}
	env := plan.EnvDir
	if want := filepath.Join(set.RuntimeEnvsDir, "shimpack", "shim"); env != want {
		t.Fatalf("EnvDir %q, want %q", env, want)
	}
	if plan.Path != filepath.Join(env, "bin", "shim") || !slices.Equal(plan.Args, []string{"-e", plan.Script}) {
		t.Errorf("command %q %q does not use the environment's interpreter", plan.Path, plan.Args)
	}
	if got := readLaunchFile(t, filepath.Join(env, "create.pwd")); strings.TrimSpace(got) != plan.PackDir {
		t.Errorf("create ran in %q, want the pack dir %q", got, plan.PackDir)
	}
	if readLaunchFile(t, filepath.Join(env, runtimeEnvMarker)) != "ok" {
		t.Errorf("marker content wrong")
	}
	home := filepath.Join(env, runtimeEnvSetupHome)
	for _, file := range []string{"create.env", "install.env"} {
		setupEnv := strings.Split(readLaunchFile(t, filepath.Join(env, file)), "\n")
		for _, want := range []string{"HOME=" + home, "XDG_CONFIG_HOME=" + home + "/config", "XDG_CACHE_HOME=" + home + "/cache",
			"PIP_CACHE_DIR=" + home + "/cache/pip", "PIP_CONFIG_FILE=/dev/null", "SHIM_HOME=" + env, "PATH=" + env + "/bin:/usr/bin:/bin"} {
			if !slices.Contains(setupEnv, want) {
				t.Errorf("%s lacks %s", file, want)
			}
		}
		if strings.Contains(strings.Join(setupEnv, "\n"), "dbpass") {
			t.Errorf("%s carries the agent's database URL", file)
		}
	}
	for _, d := range []string{"config", "cache/pip"} {
		if st, err := os.Stat(filepath.Join(home, d)); err != nil || !st.IsDir() {
			t.Errorf("setup HOME dir %s missing", d)
		}
	}
	// Again: nothing is re-created or re-installed.
	if _, err := prepareLaunch(t.Context(), run, spec, set); err != nil {
		t.Fatal(err)
	}
	if got := readLaunchFile(t, filepath.Join(env, "runs")); got != "created\ninstalled\n" {
		t.Errorf("setup runs = %q, want one create and one install", got)
	}
	if n := len(run.calls()); n != 2 {
		t.Errorf("%d setup commands ran, want 2", n)
	}
	// A removed marker means install again, without creating again.
	os.Remove(filepath.Join(env, runtimeEnvMarker))
	if err := prepareRuntimeEnv(t.Context(), run, spec, plan, set); err != nil {
		t.Fatal(err)
	}
	if got := readLaunchFile(t, filepath.Join(env, "runs")); got != "created\ninstalled\ninstalled\n" {
		t.Errorf("setup runs = %q after removing the marker", got)
	}
}

func TestPrepareRuntimeEnvSkips(t *testing.T) {
	tests := []struct {
		name, config string
		noManifest   bool
		wantCalls    int
	}{
		{name: "no environment", config: `{"interpreter": {"binary": "sh"}}`, wantCalls: 0},
		{name: "env_type none", config: `{"interpreter": {"binary": "sh"}, "environment": {"env_type": "none", "create_command": ["false"]}}`, wantCalls: 0},
		{name: "manifest absent: create only", config: shimExecConfig, noManifest: true, wantCalls: 1},
		{name: "no install command: create only", config: strings.Replace(shimExecConfig, `"install_command"`, `"unused"`, 1), wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, set := shimSetup(t, tc.config)
			if tc.noManifest {
				os.Remove(filepath.Join(set.PacksBaseDir, "shimpack", "deps.txt"))
			}
			run := &fakeSetupRunner{t: t}
			plan, err := prepareLaunch(t.Context(), run, spec, set)
			if err != nil || len(plan.Warnings) != 0 {
				t.Fatalf("prepareLaunch: %v, warnings %q", err, plan.Warnings)
			}
			if n := len(run.calls()); n != tc.wantCalls {
				t.Errorf("%d setup commands ran, want %d", n, tc.wantCalls)
			}
			if _, err := os.Stat(filepath.Join(plan.EnvDir, runtimeEnvMarker)); err == nil {
				t.Errorf("marker written although nothing was installed")
			}
		})
	}
}

func TestPrepareRuntimeEnvFailureFallsBackToSystemInterpreter(t *testing.T) {
	failing := strings.Replace(shimExecConfig, `"create_command": ["sh", "-c", "`, `"create_command": ["sh", "-c", "echo boom >&2; exit 3; `, 1)
	spec, set := shimSetup(t, failing)
	run := &fakeSetupRunner{t: t}
	base, err := planLaunchBase(spec, set)
	if err != nil {
		t.Fatal(err)
	}
	err = prepareRuntimeEnv(t.Context(), run, spec, base, set)
	if err == nil || !strings.Contains(err.Error(), "exit 3") || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "shimpack.s") {
		t.Fatalf("error = %v, want exit 3 with the stderr tail and the sensor", err)
	}
	if _, err := os.Stat(base.EnvDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half-made env dir left behind: %v", err)
	}
	plan, err := prepareLaunch(t.Context(), run, spec, set)
	if err != nil {
		t.Fatalf("prepareLaunch must not fail on a setup failure: %v", err)
	}
	if sh, _ := launchLookPath("sh", "/usr/bin:/bin"); plan.Path != sh {
		t.Errorf("Path = %q, want the system sh %q", plan.Path, sh)
	}
	if len(plan.Warnings) == 0 || !strings.Contains(plan.Warnings[0], "runtime environment setup failed") {
		t.Errorf("warnings = %q", plan.Warnings)
	}
	missing := strings.Replace(shimExecConfig, `"create_command"`, `"unused"`, 1)
	spec.ExecutionConfig = json.RawMessage(missing)
	if plan, _ := prepareLaunch(t.Context(), run, spec, set); len(plan.Warnings) == 0 || !strings.Contains(plan.Warnings[0], "needs create_command") {
		t.Errorf("missing create_command: warnings %q", plan.Warnings)
	}
}

func TestPrepareRuntimeEnvRedoesAnUnfinishedCreate(t *testing.T) {
	spec, set := shimSetup(t, shimExecConfig)
	base, _ := planLaunchBase(spec, set)
	// An agent killed after making the setup HOME but before create finished.
	os.MkdirAll(filepath.Join(base.EnvDir, runtimeEnvSetupHome, "cache"), 0o755)
	if err := prepareRuntimeEnv(t.Context(), &fakeSetupRunner{t: t}, spec, base, set); err != nil {
		t.Fatal(err)
	}
	if readLaunchFile(t, filepath.Join(base.EnvDir, "runs")) != "created\ninstalled\n" {
		t.Errorf("create was not redone")
	}
}

func TestPrepareRuntimeEnvSerialisesOneEnvDir(t *testing.T) {
	spec, set := shimSetup(t, shimExecConfig)
	run := &fakeSetupRunner{t: t}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			plan, err := prepareLaunch(t.Context(), run, spec, set)
			if err == nil && len(plan.Warnings) > 0 {
				err = errors.New(strings.Join(plan.Warnings, "; "))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if max := run.maxConcurrent.Load(); max != 1 {
		t.Errorf("%d setup commands ran at once on one env dir, want 1", max)
	}
	if n := len(run.calls()); n != 2 {
		t.Errorf("%d setup commands ran, want one create and one install", n)
	}
}

func TestPrepareRuntimeEnvWaitHonoursContext(t *testing.T) {
	spec, set := shimSetup(t, shimExecConfig)
	base, _ := planLaunchBase(spec, set)
	unlock, err := lockRuntimeEnvDir(t.Context(), base.EnvDir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := prepareRuntimeEnv(ctx, &fakeSetupRunner{t: t}, spec, base, set); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want the wait to end with the context", err)
	}
}

func TestWithVenvCopies(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"python3", "-m", "venv", "{env_dir}"}, []string{"python3", "-m", "venv", "--copies", "{env_dir}"}},
		{[]string{"python3", "-m", "venv", "--copies", "{env_dir}"}, []string{"python3", "-m", "venv", "--copies", "{env_dir}"}},
		{[]string{"python3.12", "-I", "-m", "venv", "--upgrade-deps", "{env_dir}"}, []string{"python3.12", "-I", "-m", "venv", "--copies", "--upgrade-deps", "{env_dir}"}},
		{[]string{"npm", "install"}, []string{"npm", "install"}},
		{[]string{"python3", "-m", "virtualenv", "{env_dir}"}, []string{"python3", "-m", "virtualenv", "{env_dir}"}},
	}
	for _, tc := range tests {
		if got := withVenvCopies(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("withVenvCopies(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestPrepareLaunchRealVirtualenv runs the venvpack fixture end to end: a
// real `python3 -m venv` (without --copies in the config, so the agent adds
// it), pip install of a comments-only requirements.txt, and the sensor
// posting from inside the venv with its lib/ on PYTHONPATH.
func TestPrepareLaunchRealVirtualenv(t *testing.T) {
	requireFixtureTool(t, "python3")
	api := newFakeAttuneAPI(t)
	api.preLeaseAPI() // these tests exercise the unfenced (pre-lease) token path
	set := testLaunchSettings(t, fixturePacksDir(t), fixtureEnviron()...)
	set.APIURL = api.URL()
	spec := sensorSpec{ID: 3, Ref: "venvpack.venv_sensor", PackRef: "venvpack", Entrypoint: "venv_sensor.py", RuntimeName: "Python",
		ExecutionConfig: json.RawMessage(`{
		  "interpreter": {"binary": "python3", "args": ["-u"]},
		  "environment": {"env_type": "virtualenv", "create_command": ["python3", "-m", "venv", "{env_dir}"], "interpreter_path": "{env_dir}/bin/python3"},
		  "dependencies": {"manifest_file": "requirements.txt", "install_command": ["{interpreter}", "-m", "pip", "install", "-r", "{manifest_path}"]},
		  "env_vars": {"PYTHONPATH": {"value": "{pack_dir}/lib", "operation": "prepend"}, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}}`),
		Rules:       []sensorRule{{ID: 21, Ref: "venvpack.rule", TriggerRef: "venvpack.trigger"}},
		TriggerRefs: []string{"venvpack.trigger"},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	plan, err := prepareLaunch(ctx, &fakeSetupRunner{t: t}, spec, set)
	if err != nil || len(plan.Warnings) != 0 {
		t.Fatalf("prepareLaunch: %v, warnings %q", err, plan.Warnings)
	}
	venvPython := filepath.Join(plan.EnvDir, "bin", "python3")
	if plan.Path != venvPython {
		t.Fatalf("Path = %q, want the venv's %q", plan.Path, venvPython)
	}
	if fi, err := os.Lstat(venvPython); err != nil || fi.Mode()&os.ModeSymlink != 0 {
		t.Errorf("venv python is a symlink or missing (--copies not applied): %v", err)
	}
	if _, err := os.Stat(filepath.Join(plan.EnvDir, runtimeEnvMarker)); err != nil {
		t.Errorf("dependency marker missing: %v", err)
	}
	env, _ := sensorEnv(spec, plan, set, issueFixtureToken(t, api, spec).Token)
	proc := startFixtureSensor(t, plan, env)
	events := api.waitEvents(t, 1, 30*time.Second)
	proc.stop(t)
	p := events[0].Payload
	if exe, _ := p["executable"].(string); !strings.HasPrefix(exe, plan.EnvDir+"/") || p["helper"] != "venvpack-helper" || p["prefix"] != plan.EnvDir {
		t.Errorf("sensor did not run inside the venv with its lib on PYTHONPATH: %v", p)
	}
	if events[0].TriggerInstanceID != "rule_21" {
		t.Errorf("event %v", events[0])
	}
}

// fakeSetupRunner executes setup commands for real with os/exec (no
// process-group or reaper concerns: setup commands are short). It checks
// that every call carries a deadline and records the specs and the highest
// number of commands running at once.
type fakeSetupRunner struct {
	t             testing.TB
	mu            sync.Mutex
	specs         []procSpec
	running       atomic.Int32
	maxConcurrent atomic.Int32
}

func (r *fakeSetupRunner) runToCompletion(ctx context.Context, spec procSpec) (exitStatus, error) {
	if _, ok := ctx.Deadline(); !ok {
		r.t.Errorf("setup command %s run without a deadline", spec.Path)
	}
	r.mu.Lock()
	r.specs = append(r.specs, spec)
	r.mu.Unlock()
	n := r.running.Add(1)
	defer r.running.Add(-1)
	for m := r.maxConcurrent.Load(); n > m && !r.maxConcurrent.CompareAndSwap(m, n); m = r.maxConcurrent.Load() {
	}
	cmd := exec.CommandContext(ctx, spec.Path, spec.Args...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = spec.Env, spec.Dir, spec.Stdout, spec.Stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		st := exitStatus{Code: exitErr.ExitCode(), At: time.Now()}
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			st.Signal = ws.Signal()
		}
		return st, nil
	}
	return exitStatus{At: time.Now()}, err
}

func (r *fakeSetupRunner) calls() []procSpec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.specs)
}
