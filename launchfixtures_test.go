package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests in this file run the fixture sensors of testdata/packs for
// real, with the environment sensorEnv builds and a token issued by the
// fake API through sensorTokenClient, and check the events they post.

func fixturePacksDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "packs"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// fixtureEnviron is a plausible agent environment: what the interpreters
// need (PATH, HOME, a UTF-8 locale) plus secrets that must not leak.
func fixtureEnviron() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LANG=C.UTF-8",
		"ATTUNE__DATABASE__URL=postgres://attune:dbpass@db/attune", "ATTUNE__SECURITY__JWT_SECRET=" + fakeAPISecret}
}

// fixtureSpec is a testpack sensor with two rules on two triggers and a
// third trigger without rules.
func fixtureSpec(entrypoint, execConfig string) sensorSpec {
	name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(entrypoint, ".py"), ".js"), ".sh")
	return sensorSpec{
		ID: 7, Ref: "testpack." + name, PackRef: "testpack", Entrypoint: entrypoint, RuntimeName: "Fixture",
		ExecutionConfig: json.RawMessage(execConfig),
		Rules: []sensorRule{
			{ID: 11, Ref: "testpack.rule_a", TriggerRef: "testpack.trigger_a", Params: json.RawMessage(`{"interval": 5}`)},
			{ID: 12, Ref: "testpack.rule_b", TriggerRef: "testpack.trigger_b"},
		},
		TriggerRefs: []string{"testpack.trigger_a", "testpack.trigger_b", "testpack.trigger_c"},
	}
}

// requireFixtureTool fails (never skips) when an interpreter the fixture
// needs is missing: the tests would otherwise prove nothing.
func requireFixtureTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is required to run this fixture sensor: %v", name, err)
	}
}

// issueFixtureToken gets a real sensor token from the fake API.
func issueFixtureToken(t testing.TB, api *fakeAttuneAPI, spec sensorSpec) sensorToken {
	t.Helper()
	signer, err := newWorkerJWTSigner(fakeAPISecret)
	if err != nil {
		t.Fatal(err)
	}
	req, err := newSensorTokenRequest(spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	tok, err := newSensorTokenClient(api.URL(), signer).issue(ctx, req)
	if err != nil {
		t.Fatalf("issue sensor token: %v", err)
	}
	return tok
}

// fixtureProc is a running fixture sensor in its own process group.
type fixtureProc struct {
	cmd            *exec.Cmd
	stdout, stderr fixtureOutputBuffer
	done           chan error
}

func startFixtureSensor(t testing.TB, plan launchPlan, env []string) *fixtureProc {
	t.Helper()
	p := &fixtureProc{done: make(chan error, 1)}
	p.cmd = exec.Command(plan.Path, plan.Args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", plan.Path, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) })
	return p
}

// stop sends SIGTERM to the group and requires a clean exit 0.
func (p *fixtureProc) stop(t testing.TB) {
	t.Helper()
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("sensor did not exit cleanly on SIGTERM: %v\nstdout: %s\nstderr: %s", err, p.stdout.String(), p.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("sensor still running 15 s after SIGTERM\nstderr: %s", p.stderr.String())
	}
}

func TestFixtureSensorsEmitEvents(t *testing.T) {
	tests := []struct {
		name, tool, entrypoint, execConfig, language string
	}{
		{"python", "python3", "python_sensor.py", `{"interpreter": {"binary": "python3", "args": ["-u"], "file_extension": ".py"}}`, "python"},
		{"node", "node", "node_sensor.js", `{"interpreter": {"binary": "node", "file_extension": ".js"}}`, "node"},
		{"shell", "bash", "shell_sensor.sh", `{"interpreter": {"binary": "/bin/bash", "file_extension": ".sh"}}`, "shell"},
		{"native", "bash", "native_sensor", `{"interpreter": {"binary": ""}}`, "native"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			requireFixtureTool(t, tc.tool)
			api := newFakeAttuneAPI(t)
			api.preLeaseAPI() // these tests exercise the unfenced (pre-lease) token path
			spec := fixtureSpec(tc.entrypoint, tc.execConfig)
			set := testLaunchSettings(t, fixturePacksDir(t), fixtureEnviron()...)
			set.APIURL = api.URL()
			plan, err := planLaunch(spec, set)
			if err != nil {
				t.Fatalf("planLaunch: %v", err)
			}
			tok := issueFixtureToken(t, api, spec)
			env, _ := sensorEnv(spec, plan, set, tok.Token)
			proc := startFixtureSensor(t, plan, env)

			events := api.waitEvents(t, 2, 30*time.Second)
			proc.stop(t)
			if got := api.eventsSnapshot(); len(got) != 2 {
				t.Fatalf("got %d events, want exactly 2 (one per rule): %v", len(got), got)
			}
			byInstance := map[string]fakeEvent{}
			for _, e := range events {
				byInstance[e.TriggerInstanceID] = e
				if e.Token != tok.Token || e.SensorRef != spec.Ref {
					t.Errorf("%v: posted with token of %q, want the token issued to %s", e, e.SensorRef, spec.Ref)
				}
				if e.Payload["sensor"] != spec.Ref || e.Payload["language"] != tc.language {
					t.Errorf("%v: payload %v", e, e.Payload)
				}
			}
			for _, r := range spec.Rules {
				e, ok := byInstance[fmt.Sprintf("rule_%d", r.ID)]
				if !ok || e.TriggerRef != r.TriggerRef || e.Payload["rule_ref"] != r.Ref {
					t.Errorf("rule %s: event %v (payload %v), want trigger %s", r.Ref, e, e.Payload, r.TriggerRef)
				}
			}
		})
	}
}

func TestFixtureEnvdumpSeesExactlyTheBuiltEnvironment(t *testing.T) {
	requireFixtureTool(t, "python3")
	// A real interpreter, not a pyenv shim, so nothing is added on the way.
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Fatalf("locate python3: %v", err)
	}
	python := strings.TrimSpace(string(out))
	dump := filepath.Join(t.TempDir(), "env.json")
	spec := fixtureSpec("envdump.py", `{"interpreter": {"binary": "`+python+`", "args": ["-u"]},
		"env_vars": {"FIXTURE_FROM_RUNTIME": "{pack_dir}"}}`)
	spec.Config = json.RawMessage(`{"dump_path": "` + dump + `"}`)
	api := newFakeAttuneAPI(t)
	api.preLeaseAPI() // these tests exercise the unfenced (pre-lease) token path
	set := testLaunchSettings(t, fixturePacksDir(t), append(fixtureEnviron(), "FIXTURE_PASSTHROUGH=through", "NOT_PASSED=no")...)
	set.APIURL = api.URL()
	set.Passthrough = []string{"FIXTURE_PASSTHROUGH"}
	plan, err := planLaunch(spec, set)
	if err != nil {
		t.Fatalf("planLaunch: %v", err)
	}
	env, _ := sensorEnv(spec, plan, set, issueFixtureToken(t, api, spec).Token)
	proc := startFixtureSensor(t, plan, env)

	var data []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		if data, err = os.ReadFile(dump); err == nil || !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("envdump wrote nothing: %v\nstderr: %s", err, proc.stderr.String())
	}
	proc.stop(t)
	var got map[string]string
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("envdump output: %v", err)
	}
	want := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		want[k] = v
	}
	if !maps.Equal(got, want) {
		t.Errorf("the sensor saw a different environment:\n got %v\nwant %v", got, want)
	}
	if got["FIXTURE_PASSTHROUGH"] != "through" || got["FIXTURE_FROM_RUNTIME"] != plan.PackDir || got["NOT_PASSED"] != "" {
		t.Errorf("passthrough/runtime variables wrong: %v", got)
	}
}

// fixtureOutputBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type fixtureOutputBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *fixtureOutputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *fixtureOutputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
