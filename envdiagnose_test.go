package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeVenv lays out a Python venv the way `python -m venv` leaves it:
// pyvenv.cfg (home, version) and bin/python3, a file or a symlink to link.
func writeVenv(t *testing.T, dir, home, version, link string) {
	t.Helper()
	cfg := ""
	if home != "" {
		cfg += "home = " + home + "\n"
	}
	cfg += "include-system-site-packages = false\n"
	if version != "" {
		cfg += "version = " + version + "\n"
	}
	writeLaunchFile(t, filepath.Join(dir, "pyvenv.cfg"), cfg, 0o644)
	switch link {
	case "":
		writeLaunchFile(t, filepath.Join(dir, "bin", "python3"), "#!/bin/sh\n", 0o755)
	case "none":
	default:
		os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
		if err := os.Symlink(link, filepath.Join(dir, "bin", "python3")); err != nil {
			t.Fatal(err)
		}
	}
}

// unusableEnvsRoot builds a runtime_envs_dir with one environment of each
// kind the diagnostic judges, plus ones it must leave alone.
func unusableEnvsRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	home := t.TempDir() // the base interpreter directory "of this image"
	writeVenv(t, filepath.Join(root, "okpack", "python"), home, "3.11.7", "")
	writeVenv(t, filepath.Join(root, "linkpack", "python"), home, "3.11.7", "/usr/local/bin/python3-from-another-image")
	writeVenv(t, filepath.Join(root, "homepack", "python-3.12"), "/opt/another-image/bin", "3.12.1", "")
	writeVenv(t, filepath.Join(root, "emptypack", "python"), home, "3.11.7", "none")
	key := strings.Repeat("e", 64)
	writeVenv(t, filepath.Join(root, "sha256", key), home, "3.12.4", "")
	writeLaunchFile(t, filepath.Join(root, "sha256", key, runtimePackRefMarker), "verpack", 0o644)
	writeVenv(t, filepath.Join(root, "sha256", "."+key+".0123.tmp"), "/gone", "2.7", "none") // a temporary: not an environment
	writeLaunchFile(t, filepath.Join(root, "nodepack", "node", "node_modules", "x", "index.js"), "", 0o644)
	return root
}

func TestDiagnoseRuntimeEnvs(t *testing.T) {
	root := unusableEnvsRoot(t)
	py311 := []Interpreter{{Name: "python", Path: "/usr/bin/python3", Version: "3.11.2"}}
	got := diagnoseRuntimeEnvs(root, py311)
	var lines []string
	for _, p := range got.Unusable {
		lines = append(lines, strings.TrimPrefix(p.Path, root+"/")+" "+p.Pack+" "+p.Problem)
	}
	want := []string{
		"emptypack/python emptypack interpreter missing",
		"homepack/python-3.12 homepack interpreter missing",
		"linkpack/python linkpack broken venv link",
		"sha256/" + strings.Repeat("e", 64) + " verpack wrong version",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	for _, p := range got.Unusable {
		if p.Detail == "" {
			t.Errorf("%s: no detail", p.Path)
		}
	}
	if d := got.Unusable[2].Detail; !strings.Contains(d, "python3-from-another-image") {
		t.Errorf("broken link detail %q does not name the target", d)
	}
	if d := got.Unusable[3].Detail; !strings.Contains(d, "3.12") || !strings.Contains(d, "3.11.2") {
		t.Errorf("version detail %q does not name both versions", d)
	}

	// Without python every venv that records a version is unusable.
	noPy := diagnoseRuntimeEnvs(root, nil)
	if len(noPy.Unusable) != 5 || noPy.Unusable[4].Problem != envProblemMissing {
		t.Errorf("without python: %+v", noPy.Unusable)
	}
	if d := diagnoseRuntimeEnvs(filepath.Join(root, "absent"), py311); d.Unusable == nil || len(d.Unusable) != 0 {
		t.Errorf("missing root: %+v, want an empty list", d)
	}
}

// diagnosisExample is a fixed diagnosis for the report goldens.
var diagnosisExample = runtimeEnvDiagnosis{Dir: "/opt/attune/runtime_envs", Unusable: []runtimeEnvProblem{
	{Path: "/opt/attune/runtime_envs/mypack/python-3.12", Pack: "mypack", Problem: envProblemVersion,
		Detail: "the venv is python 3.12; this image has python 3.11.2"},
	{Path: "/opt/attune/runtime_envs/sha256/" + strings.Repeat("e", 64), Problem: envProblemBroken,
		Detail: "bin/python3 -> /usr/local/bin/python3, which this image does not have"},
}}

func TestDetectReportWithUnusableEnvironments(t *testing.T) {
	var out bytes.Buffer
	if err := writeDetectReport(&out, contractExampleDetection(t), false, diagnosisExample); err != nil {
		t.Fatal(err)
	}
	assertGolden(t, out.Bytes())
	var without bytes.Buffer
	writeDetectReport(&without, contractExampleDetection(t), false, runtimeEnvDiagnosis{Dir: "/x", Unusable: []runtimeEnvProblem{}})
	if !bytes.HasPrefix(out.Bytes(), without.Bytes()) || strings.Contains(without.String(), "cannot run") {
		t.Error("with no unusable environment the report must be the reference's, and the section must only be appended")
	}
}

func TestDetectJSONWithUnusableEnvironments(t *testing.T) {
	var out bytes.Buffer
	if err := writeDetectJSON(&out, contractExampleDetection(t), nil, diagnosisExample); err != nil {
		t.Fatal(err)
	}
	assertGolden(t, out.Bytes())
}

func TestLoadDetectOnlyConfig(t *testing.T) {
	dir := t.TempDir()
	named := filepath.Join(dir, "agent.yaml")
	writeLaunchFile(t, named, "sensor:\n  passthrough_env: [HTTP_PROXY, NO_PROXY]\nruntime_envs_dir: /srv/envs\ndatabase: {url: 5}\n", 0o644)
	writeLaunchFile(t, filepath.Join(dir, "config.yaml"), "sensor: {passthrough_env: [FROM_WORKDIR]}\n", 0o644)
	writeLaunchFile(t, filepath.Join(dir, "bad.yaml"), "sensor: {passthrough_env: [ATTUNE_SECRET]}\n", 0o644)
	for _, tc := range []struct {
		name    string
		environ []string
		want    string // "passthrough|envs dir", or "error: substring"
	}{
		{"nothing named: defaults, the working directory's config.yaml is not read", nil, "[]|/opt/attune/runtime_envs"},
		{"nothing named: the variable", []string{"ATTUNE__SENSOR__PASSTHROUGH_ENV=HTTPS_PROXY,LD_LIBRARY_PATH"}, "[HTTPS_PROXY LD_LIBRARY_PATH]|/opt/attune/runtime_envs"},
		{"named file (unrelated keys not judged)", []string{"ATTUNE_CONFIG=agent.yaml"}, "[HTTP_PROXY NO_PROXY]|/srv/envs"},
		{"variables over the named file", []string{"ATTUNE_CONFIG=" + named, "ATTUNE__RUNTIME_ENVS_DIR=/other"}, "[HTTP_PROXY NO_PROXY]|/other"},
		{"named file missing", []string{"ATTUNE_CONFIG=nope.yaml"}, "error: does not exist"},
		{"invalid passthrough in the file", []string{"ATTUNE_CONFIG=bad.yaml"}, "error: reserved"},
		{"invalid passthrough in the variable", []string{"ATTUNE__SENSOR__PASSTHROUGH_ENV=BAD*"}, "error: invalid passthrough"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadDetectOnlyConfig(tc.environ, dir)
			if strings.HasPrefix(tc.want, "error: ") {
				if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(tc.want, "error: ")) {
					t.Errorf("err = %v, want one containing %q", err, strings.TrimPrefix(tc.want, "error: "))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprintf("%v|%s", nonNilStrings(got.Passthrough), got.RuntimeEnvsDir); s != tc.want {
				t.Errorf("got %s, want %s", s, tc.want)
			}
		})
	}
}

// TestDetectOnlyBinaryDiagnosesEnvironments runs the real binary: with a
// named config it reads passthrough and runtime_envs_dir, shows the
// unusable environments in both formats, and exits 0; an invalid
// passthrough in the named config exits 1.
func TestDetectOnlyBinaryDiagnosesEnvironments(t *testing.T) {
	bin := buildAgent(t)
	dir := t.TempDir()
	root := unusableEnvsRoot(t)
	cfg := filepath.Join(dir, "agent.yaml")
	writeLaunchFile(t, cfg, "runtime_envs_dir: "+root+"\nsensor: {passthrough_env: [PROBE_MARK]}\n", 0o644)
	fake := t.TempDir() // a python3 whose version shows whether PROBE_MARK reached the probe
	writeLaunchFile(t, filepath.Join(fake, "python3"), "#!/bin/sh\necho \"Python 3.11.$PROBE_MARK\"\n", 0o755)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=" + fake + ":/usr/bin:/bin", "HOME=" + dir, "PROBE_MARK=7"}
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	text, code := run("--detect-only", "-c", cfg)
	if code != 0 || !strings.Contains(text, "Shared runtime environments this image cannot run ("+root+")") ||
		!strings.Contains(text, filepath.Join(root, "linkpack", "python")+" (linkpack)") || strings.Contains(text, "okpack") {
		t.Errorf("exit %d, text report:\n%s", code, text)
	}
	js, code := run("--detect-only", "--json", "-c", cfg)
	var doc detectJSONReport
	if err := json.Unmarshal([]byte(js), &doc); err != nil || code != 0 {
		t.Fatalf("exit %d, json %q: %v", code, js, err)
	}
	if doc.RuntimeEnvs.Dir != root || len(doc.RuntimeEnvs.Unusable) < 3 {
		t.Errorf("runtime_envs %+v", doc.RuntimeEnvs)
	}
	for _, in := range doc.Runtimes {
		if in.Name == "python" && in.Version != "3.11.7" {
			t.Errorf("python probed as %q, want 3.11.7: the named config's passthrough must reach the probe", in.Version)
		}
	}
	writeLaunchFile(t, filepath.Join(dir, "plain.yaml"), "runtime_envs_dir: "+root+"\n", 0o644)
	js, _ = run("--detect-only", "--json", "-c", filepath.Join(dir, "plain.yaml"))
	if !strings.Contains(js, `"version":"3.11"`) {
		t.Errorf("without passthrough the probe saw PROBE_MARK: %s", js)
	}
	writeLaunchFile(t, cfg, "sensor: {passthrough_env: [\"not a name\"]}\n", 0o644)
	if out, code := run("--detect-only", "-c", cfg); code != 1 || out != "" {
		t.Errorf("invalid passthrough: exit %d, stdout %q; want 1 and no report", code, out)
	}
	if _, code := run("--detect-only", "-c", filepath.Join(dir, "missing.yaml")); code != 1 {
		t.Errorf("missing named config: exit %d, want 1", code)
	}
}

// TestStartupLogsUnusableEnvironments: the agent's start-up log names a
// shared environment this image cannot run, before any sensor needs it.
func TestStartupLogsUnusableEnvironments(t *testing.T) {
	requireServices(t)
	s := newTestStack(t, "legacy")
	env := filepath.Join(s.dir, "runtime_envs", "testpack", "python")
	writeVenv(t, env, t.TempDir(), "3.11.7", "/usr/local/bin/python3-from-another-image")
	a := s.start()
	a.waitLog(`"msg":"runtime environment unusable in this image","path":"`+env+`","pack":"testpack","problem":"broken venv link"`, 30*time.Second)
}
