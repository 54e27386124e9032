package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRuntimeCacheKeyGolden pins the key to values computed outside this
// code from the reference's rules (sha256 over "1", release digest,
// dependency digest, runtime name, version, platform, image format, each
// preceded by its length as a little-endian u64), by a separate Python
// one-liner; a change of order, length encoding or format breaks sharing
// with Rust workers and fails here.
func TestRuntimeCacheKeyGolden(t *testing.T) {
	a, b, c := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	empty := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" // sha256 of nothing
	for _, tc := range []struct {
		args [6]string
		want string
	}{
		{[6]string{a, b, "python", "3.12", "linux:x86_64:gnu", "worker-v1"}, "62593c8858f03daa0a617f885feb7161af36d9c0f2212f38d75996e5d1390ca1"},
		{[6]string{c, empty, "python", "default", "linux:aarch64:musl", "0.6.0"}, "92b99995bac2790eb96848ce71a87d1496e7bbdd0e38e77e32d8fd03b5913340"},
	} {
		got, err := runtimeCacheKey(tc.args[0], tc.args[1], tc.args[2], tc.args[3], tc.args[4], tc.args[5])
		if err != nil || got != tc.want {
			t.Errorf("runtimeCacheKey%v = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
	// Every input is part of the key (the reference's own test).
	base, _ := runtimeCacheKey(a, b, "python", "3.12", "p", "worker-v1")
	for i, args := range [][6]string{{c, b, "python", "3.12", "p", "worker-v1"}, {a, c, "python", "3.12", "p", "worker-v1"},
		{a, b, "node", "3.12", "p", "worker-v1"}, {a, b, "python", "3.13", "p", "worker-v1"},
		{a, b, "python", "3.12", "q", "worker-v1"}, {a, b, "python", "3.12", "p", "worker-v2"},
		{a, b, "python3", ".12", "p", "worker-v1"}} { // length prefixes keep the split points apart
		if k, _ := runtimeCacheKey(args[0], args[1], args[2], args[3], args[4], args[5]); k == base {
			t.Errorf("case %d: key did not change", i)
		}
	}
	for _, bad := range []string{strings.Repeat("A", 64), "sha256:" + a[:57], a[:63], strings.Repeat("g", 64)} {
		if _, err := runtimeCacheKey(bad, b, "python", "3.12", "p", "x"); err == nil || !strings.Contains(err.Error(), "release digest") {
			t.Errorf("release digest %q: err = %v, want a refusal naming the release digest", bad, err)
		}
		if _, err := runtimeCacheKey(a, bad, "python", "3.12", "p", "x"); err == nil || !strings.Contains(err.Error(), "dependency digest") {
			t.Errorf("dependency digest %q: err = %v, want a refusal naming the dependency digest", bad, err)
		}
	}
	if p := runtimeCachePlatform(); !strings.HasPrefix(p, "linux:") || strings.Count(p, ":") != 2 {
		t.Errorf("platform %q, want linux:<rust arch>:<libc>", p)
	}
}

// cachedShimSetup is shimSetup for a sensor pinned to a release: the pack
// lives in the release tree, the image format version is pinned.
func cachedShimSetup(t testing.TB, packs, envs string) (sensorSpec, launchSettings, string) {
	t.Helper()
	digest := strings.Repeat("d", 64)
	packDir := filepath.Join(packs, ".releases", "sha256", digest, "pack")
	writeLaunchFile(t, filepath.Join(packDir, "sensors", "s.sh"), "exit 0\n", 0o644)
	writeLaunchFile(t, filepath.Join(packDir, "deps.txt"), "dep\n", 0o644)
	set := testLaunchSettings(t, packs, "PATH=/usr/bin:/bin", "HOME=/root", runtimeImageFormatEnv+"=0.6.0")
	set.RuntimeEnvsDir = envs
	spec := sensorSpec{ID: 1, Ref: "shimpack.s", PackRef: "shimpack", Entrypoint: "s.sh", RuntimeName: "Shim",
		ExecutionConfig: json.RawMessage(shimExecConfig), TriggerRefs: []string{"shimpack.t"},
		Release: &packRelease{ID: 7, Digest: digest}}
	key, err := runtimeCacheKey(digest, "a8a3ea3ddbea6b521e4c0e8f2cca8405e75c042b2a7ed848baaa03e867355bc2", // sha256("dep\n")
		"shim", "default", runtimeCachePlatform(), "0.6.0")
	if err != nil {
		t.Fatal(err)
	}
	return spec, set, key
}

func TestRuntimeCacheBuildsOncePublishesAndReuses(t *testing.T) {
	spec, set, key := cachedShimSetup(t, t.TempDir(), t.TempDir())
	dest := filepath.Join(set.RuntimeEnvsDir, "sha256", key)
	run := &fakeSetupRunner{t: t}
	plan, err := prepareLaunch(context.Background(), run, spec, set)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Warnings) > 0 {
		t.Fatalf("warnings: %v", plan.Warnings)
	}
	if plan.EnvDir != dest || plan.Path != filepath.Join(dest, "bin", "shim") {
		t.Errorf("env dir %s, interpreter %s; want %s and its bin/shim", plan.EnvDir, plan.Path, dest)
	}
	if got := readLaunchFile(t, filepath.Join(dest, runtimeReadyMarker)); got != key {
		t.Errorf("ready marker %q, want the key", got)
	}
	if got := readLaunchFile(t, filepath.Join(dest, runtimePackRefMarker)); got != "shimpack" {
		t.Errorf("pack ref marker %q", got)
	}
	if got := readLaunchFile(t, filepath.Join(dest, "runs")); got != "created\ninstalled\n" {
		t.Errorf("setup runs %q, want one create and one install", got)
	}
	assertNoRuntimeCacheTemps(t, filepath.Dir(dest))
	if _, err := prepareLaunch(context.Background(), run, spec, set); err != nil {
		t.Fatal(err)
	}
	if n := len(run.calls()); n != 2 {
		t.Errorf("%d setup commands after a second prepare, want the first build's 2", n)
	}
	if legacy := filepath.Join(set.RuntimeEnvsDir, "shimpack"); fileExists(legacy) {
		t.Errorf("legacy layout %s written for a released sensor", legacy)
	}
}

// TestRuntimeCacheUsesRustBuiltEnvironment: a directory laid out as a Rust
// worker leaves it (ready marker holding the key, no pack-ref marker yet)
// is used as it is: no setup command runs, its interpreter is chosen.
func TestRuntimeCacheUsesRustBuiltEnvironment(t *testing.T) {
	spec, set, key := cachedShimSetup(t, t.TempDir(), t.TempDir())
	dest := filepath.Join(set.RuntimeEnvsDir, "sha256", key)
	writeLaunchFile(t, filepath.Join(dest, "bin", "shim"), "#!/bin/sh\nexec /bin/sh \"$@\"\n", 0o755)
	writeLaunchFile(t, filepath.Join(dest, runtimeReadyMarker), key+"\n", 0o644) // trimmed, as the reference reads it
	writeLaunchFile(t, filepath.Join(dest, runtimeEnvMarker), "ok", 0o644)
	run := &fakeSetupRunner{t: t}
	plan, err := prepareLaunch(context.Background(), run, spec, set)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(run.calls()); n != 0 {
		t.Errorf("%d setup commands ran on a ready environment", n)
	}
	if plan.Path != filepath.Join(dest, "bin", "shim") || len(plan.Warnings) > 0 {
		t.Errorf("interpreter %s (warnings %v), want the prebuilt %s/bin/shim", plan.Path, plan.Warnings, dest)
	}
	if got := readLaunchFile(t, filepath.Join(dest, runtimePackRefMarker)); got != "shimpack" {
		t.Errorf("pack ref marker %q, want shimpack", got)
	}
}

// TestRuntimeCacheRefusesUnmarkedDestination: a directory under the key
// without a valid marker (half-built by a killed process, or of another
// key) is neither used nor replaced; the sensor starts with the system
// interpreter and the warning says why.
func TestRuntimeCacheRefusesUnmarkedDestination(t *testing.T) {
	for _, marker := range []string{"", "0123"} {
		t.Run(fmt.Sprintf("marker %q", marker), func(t *testing.T) {
			spec, set, key := cachedShimSetup(t, t.TempDir(), t.TempDir())
			dest := filepath.Join(set.RuntimeEnvsDir, "sha256", key)
			writeLaunchFile(t, filepath.Join(dest, "bin", "shim"), "#!/bin/sh\n", 0o755)
			if marker != "" {
				writeLaunchFile(t, filepath.Join(dest, runtimeReadyMarker), marker, 0o644)
			}
			run := &fakeSetupRunner{t: t}
			plan, err := prepareLaunch(context.Background(), run, spec, set)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Warnings) == 0 || !strings.Contains(plan.Warnings[0], ErrRuntimeCacheCorrupt.Error()) {
				t.Errorf("warnings %v, want the unmarked destination named", plan.Warnings)
			}
			if plan.Path != "/usr/bin/sh" && plan.Path != "/bin/sh" {
				t.Errorf("interpreter %s, want the system sh", plan.Path)
			}
			if n := len(run.calls()); n != 0 || fileExists(filepath.Join(dest, runtimePackRefMarker)) {
				t.Errorf("%d setup commands ran / pack ref written into a directory that is not ours", n)
			}
		})
	}
}

func TestRuntimeCacheFailedBuildPublishesNothing(t *testing.T) {
	spec, set, key := cachedShimSetup(t, t.TempDir(), t.TempDir())
	spec.ExecutionConfig = json.RawMessage(`{"interpreter": {"binary": "sh"},
		"environment": {"env_type": "shim", "interpreter_path": "{env_dir}/bin/shim", "create_command": ["sh", "-c", "mkdir -p {env_dir}/lib"]}}`)
	plan, err := prepareLaunch(context.Background(), &fakeSetupRunner{t: t}, spec, set)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Warnings) == 0 || !strings.Contains(plan.Warnings[0], "interpreter") || !strings.Contains(plan.Warnings[0], "missing") {
		t.Errorf("warnings %v, want the validation failure", plan.Warnings)
	}
	_ = key
	ents, _ := os.ReadDir(filepath.Join(set.RuntimeEnvsDir, "sha256"))
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".lock") {
			t.Errorf("left behind after a failed build: %s", e.Name())
		}
	}
}

func TestRuntimeCacheLegacyLayoutWithoutRelease(t *testing.T) {
	spec, set, _ := cachedShimSetup(t, t.TempDir(), t.TempDir())
	spec.Release = nil
	writeLaunchFile(t, filepath.Join(set.PacksBaseDir, "shimpack", "sensors", "s.sh"), "exit 0\n", 0o644)
	plan, err := prepareLaunch(context.Background(), &fakeSetupRunner{t: t}, spec, set)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(set.RuntimeEnvsDir, "shimpack", "shim"); plan.EnvDir != want || plan.PackDir != filepath.Join(set.PacksBaseDir, "shimpack") {
		t.Errorf("env dir %s, pack dir %s; want the legacy %s", plan.EnvDir, plan.PackDir, want)
	}
	if fileExists(filepath.Join(plan.EnvDir, runtimeReadyMarker)) || fileExists(filepath.Join(set.RuntimeEnvsDir, "sha256")) {
		t.Error("legacy layout got content-addressed markers")
	}
}

// TestRuntimeCacheRacingProcessesBuildOnce runs two separate processes
// (re-execs of this test binary) that prepare the same environment at the
// same moment; the create command is slow and counts its runs in a file
// outside the environment. Exactly one build happens, both end with the
// published environment's interpreter, and no temporary is left.
func TestRuntimeCacheRacingProcessesBuildOnce(t *testing.T) {
	packs, envs := t.TempDir(), t.TempDir()
	spec, set, _ := cachedShimSetup(t, packs, envs)
	spec.ExecutionConfig = json.RawMessage(racingShimExecConfig)
	base, err := planLaunchBase(spec, set)
	if err != nil {
		t.Fatal(err)
	}
	dest, key := base.EnvDir, base.cacheKey
	gate := filepath.Join(t.TempDir(), "go")
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i := range outs {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), helperEnv+"=runtimecache-prepare",
				"RC_PACKS="+packs, "RC_ENVS="+envs, "RC_GATE="+gate)
			out, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(out), err
		})
	}
	time.Sleep(200 * time.Millisecond) // both processes are started and polling the gate
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil || strings.TrimSpace(outs[i]) != filepath.Join(dest, "bin", "shim") {
			t.Errorf("process %d: %v, output %q; want the published interpreter", i, errs[i], outs[i])
		}
	}
	if got := readLaunchFile(t, filepath.Join(packs, "builds")); got != "build\n" {
		t.Errorf("builds %q, want exactly one", got)
	}
	if !runtimeCacheReady(dest, key) {
		t.Error("environment not ready after the race")
	}
	assertNoRuntimeCacheTemps(t, filepath.Dir(dest))
}

// racingShimExecConfig is a slow create command that counts its runs in
// {packs_base_dir}/builds (four levels above a release's pack dir).
const racingShimExecConfig = `{"interpreter": {"binary": "sh"},
	"environment": {"env_type": "shim", "interpreter_path": "{env_dir}/bin/shim",
	"create_command": ["sh", "-c", "echo build >> {pack_dir}/../../../../builds; sleep 1; mkdir -p {env_dir}/bin && printf '#!/bin/sh\\n' > {env_dir}/bin/shim && chmod +x {env_dir}/bin/shim"]}}`

func init() {
	// runtimecache-prepare: wait for the gate file, then prepare the
	// released shim sensor with a slow, counted create command and print
	// the interpreter chosen (exit 1 on an error or a warning).
	testHelpers["runtimecache-prepare"] = func() int {
		for !fileExists(os.Getenv("RC_GATE")) {
			time.Sleep(5 * time.Millisecond)
		}
		spec, set, _ := cachedShimSetup(helperTB{}, os.Getenv("RC_PACKS"), os.Getenv("RC_ENVS"))
		spec.ExecutionConfig = json.RawMessage(racingShimExecConfig)
		plan, err := prepareLaunch(context.Background(), execSetupRunner{}, spec, set)
		if err != nil || len(plan.Warnings) > 0 {
			fmt.Println("error:", err, plan.Warnings)
			return 1
		}
		fmt.Println(plan.Path)
		return 0
	}
}

// execSetupRunner runs setup commands plainly, for helper processes.
type execSetupRunner struct{}

func (execSetupRunner) runToCompletion(ctx context.Context, spec procSpec) (exitStatus, error) {
	cmd := exec.CommandContext(ctx, spec.Path, spec.Args...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = spec.Env, spec.Dir, spec.Stdout, spec.Stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitStatus{Code: exitErr.ExitCode(), At: time.Now()}, nil
	}
	return exitStatus{At: time.Now()}, err
}

// helperTB is the testing.TB of a helper process: failures end it.
type helperTB struct{ testing.TB }

func (helperTB) Helper() {}
func (helperTB) TempDir() string {
	d, err := os.MkdirTemp("", "rc-helper")
	if err != nil {
		panic(err)
	}
	return d
}
func (helperTB) Fatal(args ...any)                 { fmt.Println(args...); os.Exit(1) }
func (helperTB) Fatalf(format string, args ...any) { fmt.Printf(format+"\n", args...); os.Exit(1) }

func assertNoRuntimeCacheTemps(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary sibling left behind: %s", e.Name())
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
