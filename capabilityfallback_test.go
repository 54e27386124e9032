package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// scriptedVerifier answers verification commands from a table keyed by
// "binary args..."; unknown commands did not run.
type scriptedVerifier map[string]struct {
	code int
	out  string
}

func (s scriptedVerifier) verify(_ context.Context, bin string, args []string) (int, string, bool) {
	r, ok := s[strings.TrimSpace(bin+" "+strings.Join(args, " "))]
	return r.code, r.out, ok
}

func TestDecideCapabilityFallbackTiers(t *testing.T) {
	rows := []runtimeRow{
		{Ref: "core.native", Name: "Native", Distributions: json.RawMessage(`{"verification": {"always_available": true}}`)},
		{Ref: "core.python", Name: "Python", Distributions: json.RawMessage(`{"verification": {"commands": [{"binary": "python3", "args": ["--version"], "pattern": "Python 3\\."}]}}`)},
		{Ref: "core.shell", Name: "Shell", Distributions: json.RawMessage(`{"verification": {"check_required": false}}`)},
	}
	distroless := scriptedVerifier{}
	withPython := scriptedVerifier{"python3 --version": {0, "Python 3.11.7\n"}}
	cfgCaps := map[string]any{"runtimes": []any{"Python", "Shell"}, "gpu": 1.0}
	for _, tc := range []struct {
		name         string
		override     string
		set          bool
		cfg          map[string]any
		verify       scriptedVerifier
		want, source string
	}{
		{"override matching nothing wins, lower-cased, no native added", " Ruby ,,PERL", true, cfgCaps, withPython, "[ruby perl]", "override"},
		{"empty override: no runtimes", "", true, cfgCaps, withPython, "[]", "override"},
		{"config runtimes", "", false, cfgCaps, withPython, "[python shell]", "config"},
		{"empty config runtimes fall through to the database", "", false, map[string]any{"runtimes": []any{}}, withPython, "[native python shell]", "database"},
		{"distroless: only what needs no binary", "", false, nil, distroless, "[native shell]", "database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fallbackNeedsDatabase(tc.set, tc.cfg); got != (tc.source == "database") {
				t.Errorf("fallbackNeedsDatabase = %v for source %s", got, tc.source)
			}
			fb := decideCapabilityFallback(context.Background(), tc.override, tc.set, tc.cfg, rows, tc.verify.verify)
			if fmt.Sprint(fb.Runtimes) != tc.want || fb.Source != tc.source || fb.Runtimes == nil {
				t.Errorf("runtimes %v from %s, want %s from %s", fb.Runtimes, fb.Source, tc.want, tc.source)
			}
			if tc.cfg != nil && tc.cfg["gpu"] != nil && fb.Extra["gpu"] != 1.0 {
				t.Errorf("extra %v, want gpu merged", fb.Extra)
			}
			if _, ok := fb.Extra["runtimes"]; ok {
				t.Error("runtimes leaked into the merged keys")
			}
		})
	}
}

func TestVerifyRuntimeRow(t *testing.T) {
	v := scriptedVerifier{
		"a": {0, "alpha 1.0"}, "b": {3, "beta"}, "c": {0, "gamma 2.1"},
	}
	for _, tc := range []struct {
		dist string
		want bool
	}{
		{`{}`, false},
		{`{"verification": {}}`, false},
		{`not json`, false},
		{`{"verification": {"always_available": false, "commands": []}}`, false},
		{`{"verification": {"commands": [{"binary": "missing"}]}}`, false},
		{`{"verification": {"commands": [{"binary": "a"}]}}`, true},
		{`{"verification": {"commands": [{"binary": "b"}]}}`, false},
		{`{"verification": {"commands": [{"binary": "b", "exit_code": 3}]}}`, true},
		{`{"verification": {"commands": [{"binary": "a", "pattern": "^beta"}]}}`, false},
		{`{"verification": {"commands": [{"binary": "a", "pattern": "alpha \\d"}]}}`, true},
		{`{"verification": {"commands": [{"binary": "a", "pattern": "("}]}}`, false},
		// priority order: the first passing command in priority order decides;
		// a pattern mismatch ends the search, as in the reference.
		{`{"verification": {"commands": [{"binary": "c", "priority": 2}, {"binary": "a", "pattern": "nope", "priority": 1}]}}`, false},
		{`{"verification": {"commands": [{"binary": "a", "pattern": "nope", "priority": 2}, {"binary": "c", "priority": 1}]}}`, true},
		{`{"verification": {"commands": [{"args": ["x"]}, {"binary": "missing"}, {"binary": "c"}]}}`, true},
	} {
		if got := verifyRuntimeRow(context.Background(), runtimeRow{Name: "x", Distributions: json.RawMessage(tc.dist)}, v.verify); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.dist, got, tc.want)
		}
	}
}

func TestCommandRuntimeVerifier(t *testing.T) {
	verify := commandRuntimeVerifier([]string{"PATH=/usr/bin:/bin", "SECRET_MARK=1"}, 5*time.Second)
	code, out, ok := verify(context.Background(), "sh", []string{"-c", "echo v3.1; echo err >&2; [ -z \"$AGENT_ONLY\" ] || exit 9; exit 3"})
	if !ok || code != 3 || !strings.Contains(out, "v3.1") || !strings.Contains(out, "err") {
		t.Errorf("got (%d, %q, %v), want exit 3 with both streams", code, out, ok)
	}
	if _, _, ok := verify(context.Background(), "no-such-binary-xyz", nil); ok {
		t.Error("a missing binary counted as run")
	}
	if _, _, ok := verify(context.Background(), "/bin/sh", []string{"-c", "kill -9 $$"}); ok {
		t.Error("a command killed by a signal counted as run")
	}
	short := commandRuntimeVerifier([]string{"PATH=/usr/bin:/bin"}, 100*time.Millisecond)
	start := time.Now()
	if _, _, ok := short(context.Background(), "sleep", []string{"30"}); ok || time.Since(start) > 10*time.Second {
		t.Errorf("a hung command: ok=%v after %s, want a timeout", ok, time.Since(start))
	}
}

func TestBuildCapabilitiesFallbackPath(t *testing.T) {
	in := capabilityInput{
		MaxConcurrentSensors: 10, SensorVersion: "0.1.0", AgentMode: "true", AgentBinaryName: "attune-sensor-agent", AgentBinaryVersion: "0.1.0",
		Interpreters: []Interpreter{{Name: "python", Path: "/x", Version: "3.1"}}, // ignored on this path
		Counters:     heartbeatCounters{Monitored: 2, Running: 1, ActiveRules: 5},
		Fallback: &capabilityFallback{Runtimes: []string{"native", "shell"},
			Extra: map[string]any{"gpu": 1.0, "max_concurrent_sensors": 3.0, "active_rules": 99.0}},
	}
	caps := buildCapabilities(in)
	for _, k := range []string{"detected_interpreters", "runtime_versions"} {
		if _, ok := caps[k]; ok {
			t.Errorf("%s present on the fallback path", k)
		}
	}
	if !slices.Equal(caps["runtimes"].([]string), []string{"native", "shell"}) {
		t.Errorf("runtimes %v", caps["runtimes"])
	}
	if caps["gpu"] != 1.0 || caps["max_concurrent_sensors"] != 3.0 {
		t.Errorf("config capabilities not merged over the base keys: %v", caps)
	}
	if caps["active_rules"] != 5 || caps["sensor_processes_running"] != 1 || caps["agent_mode"] != true || caps["sensor_version"] != "0.1.0" {
		t.Errorf("heartbeat counters or agent keys wrong: %v", caps)
	}
}

func TestSemanticVersion(t *testing.T) {
	file := strings.TrimSpace(versionFile)
	if !semverPattern.MatchString(file) {
		t.Fatalf("VERSION %q is not a semantic version", file)
	}
	for stamped, want := range map[string]string{
		"v1.2.3": "1.2.3", "1.2.3": "1.2.3", "0.0.0-test": "0.0.0-test", "2.0.0-rc.1+build.5": "2.0.0-rc.1+build.5",
		"v1.2.3-4-gabc1234":       file, // git describe after a tag
		"v1.2.3-4-gabc1234-dirty": file,
		"v1.2.3-dirty":            file,
		"f6593b3":                 file, // --always without tags
		"0.0.0-dev":               file, // the unstamped default says nothing about the build
		"":                        file,
		"1.2":                     file,
	} {
		if got := semanticVersion(stamped); got != want {
			t.Errorf("semanticVersion(%q) = %q, want %q", stamped, got, want)
		}
	}
}

// TestCapabilityFallbackOnDatabase verifies the runtime rows of a real
// database with real commands: a row whose binary this machine lacks is
// left out, one that always passes and one whose command passes are in.
func TestCapabilityFallbackOnDatabase(t *testing.T) {
	requireServices(t)
	dbURL := newTestDB(t, "current")
	db := newSeedDB(t, dbURL)
	db.exec(`INSERT INTO runtime (ref, name, distributions) VALUES
		('core.native', 'Native', '{"verification": {"always_available": true}}'),
		('core.shell', 'Shell', '{"verification": {"commands": [{"binary": "sh", "args": ["-c", "echo GNU bash"], "pattern": "bash"}]}}'),
		('core.zzz', 'Zzz', '{"verification": {"commands": [{"binary": "no-such-interpreter-zzz", "args": ["--version"]}]}}'),
		('core.python', 'Python', '{}')`)
	rows, err := loadRuntimeRows(context.Background(), db.pool)
	if err != nil {
		t.Fatal(err)
	}
	fb := decideCapabilityFallback(context.Background(), "", false, nil, rows,
		commandRuntimeVerifier([]string{"PATH=/usr/bin:/bin"}, 5*time.Second))
	if fmt.Sprint(fb.Runtimes) != "[native shell]" {
		t.Errorf("runtimes %v, want [native shell]", fb.Runtimes)
	}
}

// TestAgentFallbackCapabilitiesEndToEnd: an override that matches nothing
// sends the real agent down the fallback path; its worker row carries the
// override's names, the merged sensor.capabilities and semantic versions,
// and no interpreter keys.
func TestAgentFallbackCapabilitiesEndToEnd(t *testing.T) {
	requireServices(t)
	s := newTestStack(t, "legacy")
	a := s.start("ATTUNE_SENSOR_RUNTIMES=ruby", "ATTUNE__SENSOR__CAPABILITIES__GPU=1")
	a.waitLog("Attune Sensor Agent is ready", 30*time.Second)
	_, caps, _ := s.workerRow()
	if fmt.Sprint(caps["runtimes"]) != "[ruby]" || caps["gpu"] != 1.0 {
		t.Errorf("runtimes %v gpu %v, want [ruby] and 1", caps["runtimes"], caps["gpu"])
	}
	for _, k := range []string{"detected_interpreters", "runtime_versions"} {
		if _, ok := caps[k]; ok {
			t.Errorf("%s present on the fallback path", k)
		}
	}
	for _, k := range []string{"sensor_version", "agent_binary_version"} {
		if v, _ := caps[k].(string); !semverPattern.MatchString(v) {
			t.Errorf("%s = %v, want a semantic version", k, caps[k])
		}
	}
}
