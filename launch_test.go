package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeLaunchFile writes content at path, creating parents.
func writeLaunchFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// fakeInterpreterDir makes a directory holding executable stubs with the
// given names, to stand in for a PATH.
func fakeInterpreterDir(t testing.TB, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		writeLaunchFile(t, filepath.Join(dir, n), "#!/bin/sh\nexit 0\n", 0o755)
	}
	return dir
}

func testLaunchSettings(t testing.TB, packs string, environ ...string) launchSettings {
	return launchSettings{
		PacksBaseDir: packs, RuntimeEnvsDir: t.TempDir(), ArtifactsDir: "/opt/attune/artifacts",
		APIURL: "http://api.test:8080", NotifierWSURL: "ws://127.0.0.1:8081/ws",
		LogLevel: "info", LogFormat: "json", Environ: environ,
	}
}

func TestSensorScriptPathSafety(t *testing.T) {
	root := t.TempDir()
	pack := filepath.Join(root, "packs", "mypack")
	writeLaunchFile(t, filepath.Join(pack, "sensors", "ok.py"), "print(1)\n", 0o644)
	writeLaunchFile(t, filepath.Join(pack, "lib", "helper.py"), "", 0o644)
	writeLaunchFile(t, filepath.Join(pack, "pack.yaml"), "ref: mypack\n", 0o644)
	writeLaunchFile(t, filepath.Join(root, "outside.py"), "", 0o644)
	os.MkdirAll(filepath.Join(pack, "sensors", "sub"), 0o755)
	for link, target := range map[string]string{
		"escape_abs.py": "/bin/sh",
		"escape_rel.py": "../../../outside.py",
		"inside.py":     "../lib/helper.py",
		"dangling.py":   "/nonexistent/x.py",
	} {
		if err := os.Symlink(target, filepath.Join(pack, "sensors", link)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		entrypoint string
		want       string // script path relative to the pack dir when accepted
		wantErr    error
	}{
		{entrypoint: "ok.py", want: "sensors/ok.py"},
		{entrypoint: "sub/../ok.py", want: "sensors/ok.py"},
		{entrypoint: "./ok.py", want: "sensors/ok.py"},
		{entrypoint: "inside.py", want: "sensors/inside.py"},
		{entrypoint: "../../bin/sh", wantErr: ErrUnsafeEntrypoint},
		{entrypoint: "../pack.yaml", wantErr: ErrUnsafeEntrypoint},
		{entrypoint: "sub/../../lib/helper.py", wantErr: ErrUnsafeEntrypoint},
		{entrypoint: "/bin/sh", wantErr: ErrUnsafeEntrypoint},
		{entrypoint: "http://x", wantErr: ErrUnsafeEntrypoint},
		{entrypoint: "internal://timer", wantErr: ErrUnsafeEntrypoint},
		{entrypoint: "", wantErr: ErrUnsafeEntrypoint},
		{entrypoint: ".", wantErr: ErrUnsafeEntrypoint},
		{entrypoint: "ok\x00.py", wantErr: ErrUnsafeEntrypoint},
		{entrypoint: "escape_abs.py", wantErr: ErrUnsafeEntrypoint},
		{entrypoint: "escape_rel.py", wantErr: ErrUnsafeEntrypoint},
		{entrypoint: "missing.py", wantErr: ErrSensorScriptMissing},
		{entrypoint: "dangling.py", wantErr: ErrSensorScriptMissing},
		{entrypoint: "sub", wantErr: ErrSensorScriptMissing},
	}
	for _, tc := range tests {
		t.Run(tc.entrypoint, func(t *testing.T) {
			spec := sensorSpec{Ref: "mypack.the_sensor", PackRef: "mypack", Entrypoint: tc.entrypoint}
			got, err := sensorScriptPath(spec, pack)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), `"mypack.the_sensor"`) {
					t.Fatalf("error = %v, want %v naming the sensor", err, tc.wantErr)
				}
				if errors.Is(err, ErrSensorScriptMissing) && !strings.Contains(err.Error(), filepath.Join(pack, "sensors")) {
					t.Errorf("missing-script error %q does not name the path", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if want := filepath.Join(pack, tc.want); got != want {
				t.Errorf("script = %q, want %q", got, want)
			}
		})
	}
}

func TestSensorPackDir(t *testing.T) {
	packs := t.TempDir()
	digest := strings.Repeat("ab", 32)
	release := filepath.Join(packs, ".releases", "sha256", digest, "pack")
	os.MkdirAll(release, 0o755)
	volume := filepath.Join(packs, "mypack")
	tests := []struct {
		name, digest, want string
		wantWarning        bool
	}{
		{name: "no active release: volume layout", digest: "", want: volume},
		{name: "active release present", digest: digest, want: release},
		{name: "sha256: prefix accepted", digest: "sha256:" + digest, want: release},
		{name: "release dir absent: volume layout", digest: strings.Repeat("cd", 32), want: volume},
		{name: "malformed digest: volume layout and a warning", digest: "../../etc", want: volume, wantWarning: true},
		{name: "upper-case digest is malformed", digest: strings.ToUpper(digest), want: volume, wantWarning: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, warn := sensorPackDir(sensorSpec{PackRef: "mypack", PackActiveReleaseDigest: tc.digest}, packs)
			if got != tc.want || (warn != "") != tc.wantWarning {
				t.Errorf("sensorPackDir = %q, warning %q; want %q, warning %v", got, warn, tc.want, tc.wantWarning)
			}
		})
	}
}

func TestPlanLaunchRejectsBadPackRef(t *testing.T) {
	for _, ref := range []string{"../etc", "", "Pack", "a", "a/b"} {
		_, err := planLaunch(sensorSpec{Ref: "x.s", PackRef: ref, Entrypoint: "s.py"}, testLaunchSettings(t, t.TempDir()))
		if !errors.Is(err, ErrInvalidPackRef) {
			t.Errorf("pack ref %q: error = %v, want ErrInvalidPackRef", ref, err)
		}
	}
}

func TestPlanLaunchCommand(t *testing.T) {
	packs := t.TempDir()
	pack := filepath.Join(packs, "mypack")
	writeLaunchFile(t, filepath.Join(pack, "sensors", "s.py"), "", 0o644)
	writeLaunchFile(t, filepath.Join(pack, "sensors", "native_bin"), "#!/bin/sh\n", 0o755)
	writeLaunchFile(t, filepath.Join(pack, "sensors", "not_exec"), "#!/bin/sh\n", 0o644)
	bin := fakeInterpreterDir(t, "python3", "python3.12")
	environ := []string{"PATH=/nonexistent:" + bin}
	python := pythonExecConfig
	versioned := []runtimeVersionRow{{Version: "3.12", IsDefault: true, Available: true,
		ExecutionConfig: json.RawMessage(`{"interpreter":{"binary":"python3.12","args":["-u","-X","dev"]}}`)}}

	tests := []struct {
		name        string
		entrypoint  string
		config      string
		versions    []runtimeVersionRow
		envPython   string // "file", "broken" or "" to shape {env_dir}/bin/python3
		wantPath    string // "{script}", "{env}" or a literal
		wantArgs    []string
		wantEnvName string
		wantWarning string
		wantErr     error
	}{
		{name: "native: the script runs itself", entrypoint: "native_bin", config: `{"interpreter":{"binary":""}}`,
			wantPath: "{script}", wantArgs: nil, wantEnvName: "python"},
		{name: "native via NULL config", entrypoint: "native_bin", config: ``, wantPath: "{script}", wantEnvName: "python"},
		{name: "native spelled none", entrypoint: "native_bin", config: `{"interpreter":{"binary":"none"}}`, wantPath: "{script}", wantEnvName: "python"},
		{name: "native script must be executable", entrypoint: "not_exec", config: ``, wantErr: errors.New("not executable")},
		{name: "system interpreter from the child PATH", entrypoint: "s.py", config: python,
			wantPath: filepath.Join(bin, "python3"), wantArgs: []string{"-u", "{script}"}, wantEnvName: "python"},
		{name: "environment interpreter when it exists", entrypoint: "s.py", config: python, envPython: "file",
			wantPath: "{env}/bin/python3", wantArgs: []string{"-u", "{script}"}, wantEnvName: "python"},
		{name: "broken environment link falls back with a warning", entrypoint: "s.py", config: python, envPython: "broken",
			wantPath: filepath.Join(bin, "python3"), wantArgs: []string{"-u", "{script}"}, wantEnvName: "python", wantWarning: "broken symlink"},
		{name: "absolute interpreter", entrypoint: "s.py", config: `{"interpreter":{"binary":"/bin/sh","args":["-e"]}}`,
			wantPath: "/bin/sh", wantArgs: []string{"-e", "{script}"}, wantEnvName: "python"},
		{name: "interpreter not on PATH", entrypoint: "s.py", config: `{"interpreter":{"binary":"ruby"}}`, wantErr: ErrInterpreterNotFound},
		{name: "selected runtime version replaces the config and names the env dir", entrypoint: "s.py", config: python, versions: versioned,
			wantPath: filepath.Join(bin, "python3.12"), wantArgs: []string{"-u", "-X", "dev", "{script}"}, wantEnvName: "python-3.12"},
		{name: "bad execution_config fails the plan", entrypoint: "s.py", config: `{"interpreter":{"args":"-u"}}`, wantErr: ErrExecConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set := testLaunchSettings(t, packs, environ...)
			set.AdvertisedVersions = map[string][]string{"python": {"3.12.4"}}
			spec := sensorSpec{ID: 1, Ref: "mypack.s", PackRef: "mypack", Entrypoint: tc.entrypoint, RuntimeName: "Python",
				ExecutionConfig: json.RawMessage(tc.config), RuntimeVersions: tc.versions, TriggerRefs: []string{"mypack.t"}}
			envDir := filepath.Join(set.RuntimeEnvsDir, "mypack", "python")
			switch tc.envPython {
			case "file":
				writeLaunchFile(t, filepath.Join(envDir, "bin", "python3"), "#!/bin/sh\n", 0o755)
			case "broken":
				os.MkdirAll(filepath.Join(envDir, "bin"), 0o755)
				os.Symlink("/usr/local/bin/python3-from-another-image", filepath.Join(envDir, "bin", "python3"))
			}
			plan, err := planLaunch(spec, set)
			if tc.wantErr != nil {
				if err == nil || !(errors.Is(err, tc.wantErr) || strings.Contains(err.Error(), tc.wantErr.Error())) || !strings.Contains(err.Error(), "mypack.s") {
					t.Fatalf("error = %v, want %v naming the sensor", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("planLaunch: %v", err)
			}
			script := filepath.Join(pack, "sensors", tc.entrypoint)
			expand := func(s string) string {
				return strings.NewReplacer("{script}", script, "{env}", plan.EnvDir).Replace(s)
			}
			var wantArgs []string
			for _, a := range tc.wantArgs {
				wantArgs = append(wantArgs, expand(a))
			}
			if plan.Path != expand(tc.wantPath) || !slices.Equal(plan.Args, wantArgs) {
				t.Errorf("command = %q %q, want %q %q", plan.Path, plan.Args, expand(tc.wantPath), wantArgs)
			}
			if want := filepath.Join(set.RuntimeEnvsDir, "mypack", tc.wantEnvName); plan.EnvDir != want {
				t.Errorf("EnvDir = %q, want %q", plan.EnvDir, want)
			}
			if plan.PackDir != pack || plan.Script != script {
				t.Errorf("PackDir, Script = %q, %q", plan.PackDir, plan.Script)
			}
			warned := strings.Join(plan.Warnings, "\n")
			if (tc.wantWarning == "") != (warned == "") || !strings.Contains(warned, tc.wantWarning) {
				t.Errorf("warnings = %q, want %q", plan.Warnings, tc.wantWarning)
			}
			if slices.ContainsFunc(plan.Env, func(kv string) bool { return strings.HasPrefix(kv, "ATTUNE_API_TOKEN=") }) {
				t.Errorf("plan.Env holds ATTUNE_API_TOKEN")
			}
		})
	}
}

// envTestSpec is a sensor with rules on two triggers, a third trigger with
// no rule, params that need canonical ordering and a big integer, and a
// config with characters Go would HTML-escape by default.
func envTestSpec() sensorSpec {
	return sensorSpec{
		ID: 42, Ref: "mypack.watcher", PackRef: "mypack", Entrypoint: "w.sh", RuntimeName: "Shell",
		Config: json.RawMessage(`{"b": 1, "a": "<x&y>", "cache_permission_set_refs": ["standard"]}`),
		ExecutionConfig: json.RawMessage(`{"interpreter": {"binary": "/bin/sh"}, "env_vars": {
			"PYTHONPATH": {"value": "{pack_dir}/lib", "operation": "prepend"},
			"PATH": {"value": "{env_dir}/bin", "operation": "prepend"},
			"NODE_PATH": "{env_dir}/node_modules",
			"ATTUNE_API_URL": "http://evil.example"}}`),
		Rules: []sensorRule{
			{ID: 9, Ref: "mypack.r9", TriggerRef: "mypack.t2", Params: json.RawMessage(`{"z": 12345678901234567890, "a": {"y": 2, "x": [1, 2.50]}}`)},
			{ID: 3, Ref: "mypack.r3", TriggerRef: "mypack.t1"},
		},
		TriggerRefs: []string{"mypack.t2", "mypack.t1", "mypack.t3", "mypack.t1", " "},
	}
}

// envTestEnviron is an agent environment full of things that must not leak.
var envTestEnviron = []string{
	"PATH=/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8", "TZ=UTC", "LC_ALL=C.UTF-8",
	"MY_PASSTHROUGH=yes",
	"DATABASE_URL=postgres://attune:dbpass@db/attune",
	"ATTUNE__DATABASE__URL=postgres://attune:dbpass@db/attune",
	"ATTUNE__MESSAGE_QUEUE__URL=amqp://guest:mqpass@mq:5672/%2f",
	"ATTUNE__SECURITY__JWT_SECRET=jwt-topsecret",
	"ATTUNE_MQ_URL=amqp://guest:mqpass@mq:5672/%2f",
	"ATTUNE_API_URL=http://agent-view-of-api",
	"ATTUNE_CONFIG=/opt/attune/config/config.yaml",
	"ATTUNE_SENSOR_RUNTIMES=shell,python",
	"ATTUNE_SENSOR_AGENT_MODE=true",
	"AWS_SECRET_ACCESS_KEY=aws-topsecret",
}

func envTestPlan(t *testing.T) (sensorSpec, launchPlan, launchSettings) {
	t.Helper()
	packs := t.TempDir()
	writeLaunchFile(t, filepath.Join(packs, "mypack", "sensors", "w.sh"), "", 0o644)
	set := testLaunchSettings(t, packs, envTestEnviron...)
	set.Passthrough = []string{"MY_PASSTHROUGH", "NOT_SET_ANYWHERE"}
	spec := envTestSpec()
	plan, err := planLaunch(spec, set)
	if err != nil {
		t.Fatalf("planLaunch: %v", err)
	}
	return spec, plan, set
}

func TestSensorEnvExact(t *testing.T) {
	spec, plan, set := envTestPlan(t)
	got, warns := sensorEnv(spec, plan, set, "tok-123")
	want := []string{
		"PATH=" + plan.EnvDir + "/bin:/usr/bin:/bin",
		"HOME=/root",
		"LANG=C.UTF-8",
		"TZ=UTC",
		"LC_ALL=C.UTF-8",
		"MY_PASSTHROUGH=yes",
		"ATTUNE_API_URL=http://api.test:8080",
		"ATTUNE_API_TOKEN=tok-123",
		"ATTUNE_PACK_REF=mypack",
		"ATTUNE_SENSOR_ID=42",
		"ATTUNE_SENSOR_REF=mypack.watcher",
		`ATTUNE_SENSOR_TRIGGERS=[{"config":{},"id":3,"ref":"mypack.r3","trigger_ref":"mypack.t1"},` +
			`{"config":{"a":{"x":[1,2.50],"y":2},"z":12345678901234567890},"id":9,"ref":"mypack.r9","trigger_ref":"mypack.t2"}]`,
		`ATTUNE_SENSOR_TRIGGER_TYPES=["mypack.t1","mypack.t2","mypack.t3"]`,
		`ATTUNE_SENSOR_CONFIG_JSON={"a":"<x&y>","b":1,"cache_permission_set_refs":["standard"]}`,
		"ATTUNE_ARTIFACTS_DIR=/opt/attune/artifacts",
		"ATTUNE_LOG_LEVEL=info",
		"ATTUNE_LOG_FORMAT=json",
		"ATTUNE_NOTIFIER_WS_URL=ws://127.0.0.1:8081/ws",
		"ATTUNE_ALLOW_INSECURE_NOTIFIER_WS=false",
		"NODE_PATH=" + plan.EnvDir + "/node_modules",
		"PYTHONPATH=" + plan.PackDir + "/lib",
	}
	if !slices.Equal(got, want) {
		t.Errorf("sensorEnv mismatch:\n got %q\nwant %q", got, want)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "ATTUNE_API_URL") {
		t.Errorf("warnings = %q, want one about the reserved ATTUNE_API_URL", warns)
	}
	// planLaunch keeps the same environment minus the token, and its warnings.
	wantPlanEnv := slices.DeleteFunc(slices.Clone(want), func(kv string) bool { return strings.HasPrefix(kv, "ATTUNE_API_TOKEN=") })
	if !slices.Equal(plan.Env, wantPlanEnv) {
		t.Errorf("plan.Env:\n got %q\nwant %q", plan.Env, wantPlanEnv)
	}
	if !slices.Contains(plan.Warnings, warns[0]) {
		t.Errorf("plan.Warnings %q lacks %q", plan.Warnings, warns[0])
	}
}

func TestSensorEnvEdgeValues(t *testing.T) {
	spec, plan, set := envTestPlan(t)
	spec.Config = nil
	spec.Rules = nil
	spec.TriggerRefs = nil
	set.AllowInsecureNotifierWS = true
	got, _ := sensorEnv(spec, plan, set, "")
	for _, want := range []string{"ATTUNE_SENSOR_CONFIG_JSON=null", "ATTUNE_SENSOR_TRIGGERS=[]", "ATTUNE_SENSOR_TRIGGER_TYPES=[]", "ATTUNE_ALLOW_INSECURE_NOTIFIER_WS=true"} {
		if !slices.Contains(got, want) {
			t.Errorf("env lacks %q: %q", want, got)
		}
	}
	spec.Config = json.RawMessage(`{not json`)
	spec.Rules = []sensorRule{{ID: 1, Ref: "p.r", TriggerRef: "p.t", Params: json.RawMessage(`null`)}, {ID: 2, Ref: "p.q", TriggerRef: "p.t", Params: json.RawMessage(`{bad`)}}
	got, warns := sensorEnv(spec, plan, set, "")
	for _, want := range []string{"ATTUNE_SENSOR_CONFIG_JSON=null", `ATTUNE_SENSOR_TRIGGERS=[{"config":null,"id":1,"ref":"p.r","trigger_ref":"p.t"},{"config":{},"id":2,"ref":"p.q","trigger_ref":"p.t"}]`} {
		if !slices.Contains(got, want) {
			t.Errorf("env lacks %q: %q", want, got)
		}
	}
	if len(warns) < 3 { // reserved env var + bad config + bad params
		t.Errorf("warnings = %q, want the invalid config and params reported", warns)
	}
}

func TestSensorEnvKeepsAgentSecretsOut(t *testing.T) {
	spec, plan, set := envTestPlan(t)
	got, _ := sensorEnv(spec, plan, set, "tok")
	allowed := map[string]bool{"PATH": true, "HOME": true, "LANG": true, "TZ": true, "LC_ALL": true, "MY_PASSTHROUGH": true, "NODE_PATH": true, "PYTHONPATH": true}
	for _, kv := range got {
		k, v, _ := strings.Cut(kv, "=")
		if !allowed[k] && !(strings.HasPrefix(k, "ATTUNE_") && !strings.HasPrefix(k, "ATTUNE__")) {
			t.Errorf("unexpected variable %s reached the sensor", k)
		}
		for _, secret := range []string{"dbpass", "mqpass", "jwt-topsecret", "aws-topsecret", "amqp://", "postgres://", "agent-view-of-api"} {
			if strings.Contains(v, secret) {
				t.Errorf("%s carries agent secret %q", k, secret)
			}
		}
	}
	for _, name := range []string{"ATTUNE_MQ_URL", "ATTUNE_CONFIG", "ATTUNE_SENSOR_RUNTIMES", "ATTUNE_SENSOR_AGENT_MODE", "DATABASE_URL", "AWS_SECRET_ACCESS_KEY"} {
		if launchEnvValue(got, name) != "" {
			t.Errorf("%s reached the sensor", name)
		}
	}
}

func TestApplyRuntimeEnvVars(t *testing.T) {
	tmpl := map[string]string{"pack_dir": "/packs/p", "env_dir": "/envs/p/python"}
	tests := []struct {
		name     string
		existing []string
		vars     []runtimeEnvVar
		want     []string
		warnings int
	}{
		{name: "set replaces", existing: []string{"A=old"}, vars: []runtimeEnvVar{{Name: "A", Value: "{env_dir}", Operation: "set", Separator: ":"}}, want: []string{"A=/envs/p/python"}},
		{name: "prepend joins before", existing: []string{"A=/usr/bin"}, vars: []runtimeEnvVar{{Name: "A", Value: "{pack_dir}/bin", Operation: "prepend", Separator: ":"}}, want: []string{"A=/packs/p/bin:/usr/bin"}},
		{name: "append joins after", existing: []string{"A=x"}, vars: []runtimeEnvVar{{Name: "A", Value: "y", Operation: "append", Separator: ";"}}, want: []string{"A=x;y"}},
		{name: "prepend to nothing", vars: []runtimeEnvVar{{Name: "A", Value: "v", Operation: "prepend", Separator: ":"}}, want: []string{"A=v"}},
		{name: "append to empty value", existing: []string{"A="}, vars: []runtimeEnvVar{{Name: "A", Value: "v", Operation: "append", Separator: ":"}}, want: []string{"A=v"}},
		{name: "empty value appended keeps the old one", existing: []string{"A=x"}, vars: []runtimeEnvVar{{Name: "A", Value: "", Operation: "append", Separator: ":"}}, want: []string{"A=x"}},
		{name: "multi-character separator", existing: []string{"A=x"}, vars: []runtimeEnvVar{{Name: "A", Value: "y", Operation: "append", Separator: " -- "}}, want: []string{"A=x -- y"}},
		{name: "operations chain in name order", vars: []runtimeEnvVar{
			{Name: "A", Value: "1", Operation: "set", Separator: ":"}, {Name: "B", Value: "2", Operation: "append", Separator: ":"}},
			existing: []string{"B=0"}, want: []string{"B=0:2", "A=1"}},
		{name: "ATTUNE_ names are reserved, any case", vars: []runtimeEnvVar{
			{Name: "ATTUNE_API_TOKEN", Value: "x", Operation: "set"}, {Name: "attune_api_url", Value: "x", Operation: "set"}}, warnings: 2},
		{name: "bad names and NUL values are skipped", vars: []runtimeEnvVar{
			{Name: "A=B", Value: "x", Operation: "set"}, {Name: "", Value: "x", Operation: "set"},
			{Name: "N\x00UL", Value: "x", Operation: "set"}, {Name: "V", Value: "a\x00b", Operation: "set"}}, warnings: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b launchEnvBuilder
			for _, kv := range tc.existing {
				k, v, _ := strings.Cut(kv, "=")
				b.set(k, v)
			}
			warns := applyRuntimeEnvVars(&b, tc.vars, tmpl)
			if got := b.environ(); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("env = %q, want %q", got, tc.want)
			}
			if len(warns) != tc.warnings {
				t.Errorf("warnings = %q, want %d", warns, tc.warnings)
			}
		})
	}
}
