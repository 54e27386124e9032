package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// capabilityJSON marshals buildCapabilities' result; keys come out sorted.
func capabilityJSON(t *testing.T, in capabilityInput) string {
	t.Helper()
	b, err := json.Marshal(buildCapabilities(in))
	if err != nil {
		t.Fatalf("marshal capabilities: %v", err)
	}
	return string(b)
}

// pickCapabilities returns the JSON of some keys of the capabilities, in a fixed order,
// so that each case states only what it is about.
func pickCapabilities(t *testing.T, in capabilityInput, keys ...string) string {
	t.Helper()
	caps := buildCapabilities(in)
	var parts []string
	for _, k := range keys {
		v, ok := caps[k]
		if !ok {
			parts = append(parts, k+"=<absent>")
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("marshal %s: %v", k, err)
		}
		parts = append(parts, k+"="+string(b))
	}
	return strings.Join(parts, " ")
}

func TestBuildCapabilitiesRuntimes(t *testing.T) {
	python := Interpreter{Name: "python", Path: "/usr/local/bin/python3", Version: "3.12.1"}
	shell := Interpreter{Name: "shell", Path: "/bin/bash", Version: "5.2.15"}
	keys := []string{"runtimes", "runtime_versions", "detected_interpreters"}
	tests := []struct {
		name string
		in   capabilityInput
		want string
	}{
		{
			name: "nothing detected advertises native only",
			in:   capabilityInput{},
			want: `runtimes=["native"] runtime_versions={} detected_interpreters=[]`,
		},
		{
			name: "python only",
			in:   capabilityInput{Interpreters: []Interpreter{python}},
			want: `runtimes=["python","native"] runtime_versions={"python":["3.12.1"]} detected_interpreters=[{"name":"python","path":"/usr/local/bin/python3","version":"3.12.1"}]`,
		},
		{
			name: "detected names are sorted before native",
			in:   capabilityInput{Interpreters: []Interpreter{shell, python}},
			want: `runtimes=["python","shell","native"] runtime_versions={"python":["3.12.1"],"shell":["5.2.15"]} detected_interpreters=[{"name":"shell","path":"/bin/bash","version":"5.2.15"},{"name":"python","path":"/usr/local/bin/python3","version":"3.12.1"}]`,
		},
		{
			name: "override shell,python,native lists the override names sorted",
			in:   capabilityInput{Interpreters: []Interpreter{python}, Override: []string{"shell", "python", "native"}},
			want: `runtimes=["native","python","shell"] runtime_versions={"python":["3.12.1"]} detected_interpreters=[{"name":"python","path":"/usr/local/bin/python3","version":"3.12.1"}]`,
		},
		{
			name: "override filters the detected interpreters",
			in:   capabilityInput{Interpreters: []Interpreter{shell, python}, Override: []string{"python"}},
			want: `runtimes=["python","native"] runtime_versions={"python":["3.12.1"]} detected_interpreters=[{"name":"python","path":"/usr/local/bin/python3","version":"3.12.1"}]`,
		},
		{
			name: "override naming nothing detected keeps its names",
			in:   capabilityInput{Override: []string{"node", "node"}},
			want: `runtimes=["node","native"] runtime_versions={} detected_interpreters=[]`,
		},
		{
			name: "empty override behaves as unset",
			in:   capabilityInput{Interpreters: []Interpreter{python}, Override: []string{}},
			want: `runtimes=["python","native"] runtime_versions={"python":["3.12.1"]} detected_interpreters=[{"name":"python","path":"/usr/local/bin/python3","version":"3.12.1"}]`,
		},
		{
			name: "unknown version is null and not listed",
			in:   capabilityInput{Interpreters: []Interpreter{{Name: "ruby", Path: "/usr/bin/ruby"}}},
			want: `runtimes=["ruby","native"] runtime_versions={} detected_interpreters=[{"name":"ruby","path":"/usr/bin/ruby","version":null}]`,
		},
		{
			name: "versions are sorted and de-duplicated",
			in: capabilityInput{Interpreters: []Interpreter{
				{Name: "python", Path: "/b/python3", Version: "3.9.2"},
				{Name: "python", Path: "/a/python3", Version: "3.12.1"},
				{Name: "python", Path: "/c/python", Version: "3.9.2"},
			}},
			want: `runtimes=["python","native"] runtime_versions={"python":["3.12.1","3.9.2"]} detected_interpreters=[{"name":"python","path":"/b/python3","version":"3.9.2"},{"name":"python","path":"/a/python3","version":"3.12.1"},{"name":"python","path":"/c/python","version":"3.9.2"}]`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pickCapabilities(t, tc.in, keys...); got != tc.want {
				t.Errorf("capabilities:\n want %s\n  got %s", tc.want, got)
			}
		})
	}
}

func TestBuildCapabilitiesAgentAndPlacement(t *testing.T) {
	keys := []string{"agent_mode", "agent_binary_name", "agent_binary_version", "labels", "taints"}
	tests := []struct {
		name string
		in   capabilityInput
		want string
	}{
		{
			name: "agent variables as the agent sets them",
			in:   capabilityInput{AgentMode: "true", AgentBinaryName: "attune-sensor-agent", AgentBinaryVersion: "1.2.3"},
			want: `agent_mode=true agent_binary_name="attune-sensor-agent" agent_binary_version="1.2.3" labels=<absent> taints=<absent>`,
		},
		{
			name: "mode 1 and padded values are trimmed",
			in:   capabilityInput{AgentMode: " 1 ", AgentBinaryName: " agent ", AgentBinaryVersion: " 2.0.0\n"},
			want: `agent_mode=true agent_binary_name="agent" agent_binary_version="2.0.0" labels=<absent> taints=<absent>`,
		},
		{
			name: "mode false and blank names are left out",
			in:   capabilityInput{AgentMode: "false", AgentBinaryName: "  "},
			want: `agent_mode=<absent> agent_binary_name=<absent> agent_binary_version=<absent> labels=<absent> taints=<absent>`,
		},
		{
			name: "valid labels and taints, default effect filled in",
			in: capabilityInput{
				Labels: map[string]string{"zone": "local-a", "gpu": "no"},
				Taints: []Taint{{Key: "dedicated", Value: "sensors"}, {Key: "slow", Effect: "prefer_no_schedule"}},
			},
			want: `agent_mode=<absent> agent_binary_name=<absent> agent_binary_version=<absent> labels={"gpu":"no","zone":"local-a"} taints=[{"key":"dedicated","value":"sensors","effect":"no_schedule"},{"key":"slow","effect":"prefer_no_schedule"}]`,
		},
		{
			name: "a blank label value drops all labels",
			in:   capabilityInput{Labels: map[string]string{"zone": "a", "rack": " "}},
			want: `agent_mode=<absent> agent_binary_name=<absent> agent_binary_version=<absent> labels=<absent> taints=<absent>`,
		},
		{
			name: "a bad taint drops all taints",
			in:   capabilityInput{Taints: []Taint{{Key: "ok"}, {Key: " "}}},
			want: `agent_mode=<absent> agent_binary_name=<absent> agent_binary_version=<absent> labels=<absent> taints=<absent>`,
		},
		{
			name: "an unknown effect drops all taints",
			in:   capabilityInput{Taints: []Taint{{Key: "a", Effect: "no_execute"}}},
			want: `agent_mode=<absent> agent_binary_name=<absent> agent_binary_version=<absent> labels=<absent> taints=<absent>`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pickCapabilities(t, tc.in, keys...); got != tc.want {
				t.Errorf("capabilities:\n want %s\n  got %s", tc.want, got)
			}
		})
	}
}

// TestBuildCapabilitiesFullObject pins the whole object, key set included:
// exactly the keys of CONTRACT §4 and nothing else.
func TestBuildCapabilitiesFullObject(t *testing.T) {
	in := capabilityInput{
		Interpreters:         []Interpreter{{Name: "shell", Path: "/bin/bash", Version: "5.2.15"}},
		Labels:               map[string]string{"zone": "local-a"},
		Taints:               []Taint{{Key: "dedicated", Value: "sensors", Effect: "no_schedule"}},
		MaxConcurrentSensors: 10,
		AgentMode:            "true",
		AgentBinaryName:      "attune-sensor-agent",
		AgentBinaryVersion:   "0.3.0",
		SensorVersion:        "0.3.0",
		Counters:             heartbeatCounters{Monitored: 3, Running: 2, ActiveRules: 5},
	}
	want := `{"active_rules":5,"agent_binary_name":"attune-sensor-agent","agent_binary_version":"0.3.0","agent_mode":true,` +
		`"detected_interpreters":[{"name":"shell","path":"/bin/bash","version":"5.2.15"}],"labels":{"zone":"local-a"},` +
		`"max_concurrent_sensors":10,"runtime_versions":{"shell":["5.2.15"]},"runtimes":["shell","native"],` +
		`"sensor_processes_monitored":3,"sensor_processes_running":2,"sensor_version":"0.3.0",` +
		`"taints":[{"key":"dedicated","value":"sensors","effect":"no_schedule"}]}`
	if got := capabilityJSON(t, in); got != want {
		t.Errorf("capabilities:\n want %s\n  got %s", want, got)
	}
	var keys []string
	for k := range buildCapabilities(in) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	contract := []string{"active_rules", "agent_binary_name", "agent_binary_version", "agent_mode", "detected_interpreters",
		"labels", "max_concurrent_sensors", "runtime_versions", "runtimes", "sensor_processes_monitored",
		"sensor_processes_running", "sensor_version", "taints"}
	if !slices.Equal(keys, contract) {
		t.Errorf("keys: want %v, got %v", contract, keys)
	}
}

func TestCapabilityProblems(t *testing.T) {
	tests := []struct {
		name string
		in   capabilityInput
		want []string
	}{
		{name: "nothing configured", in: capabilityInput{}},
		{name: "valid", in: capabilityInput{Labels: map[string]string{"a": "b"}, Taints: []Taint{{Key: "k"}}}},
		{
			name: "both wrong",
			in:   capabilityInput{Labels: map[string]string{"": "x"}, Taints: []Taint{{Key: "k", Value: " "}}},
			want: []string{"sensor.labels: a label key is empty", `sensor.taints: taint "k" value must be non-empty when provided`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, err := range capabilityProblems(tc.in) {
				got = append(got, err.Error())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems: want %q, got %q", tc.want, got)
			}
		})
	}
}

func TestNewCapabilityInputReadsAgentVariables(t *testing.T) {
	env := map[string]string{
		"ATTUNE_SENSOR_AGENT_MODE":           "true",
		"ATTUNE_SENSOR_AGENT_BINARY_NAME":    "attune-sensor-agent",
		"ATTUNE_SENSOR_AGENT_BINARY_VERSION": "9.9.9",
	}
	sc := SensorConfig{MaxConcurrentSensors: 7, Labels: map[string]string{"zone": "z"}}
	in := newCapabilityInput(sc, nil, nil, func(k string) string { return env[k] }, "9.9.9")
	got := pickCapabilities(t, in, "agent_mode", "agent_binary_name", "agent_binary_version", "sensor_version", "max_concurrent_sensors", "labels", "active_rules")
	want := `agent_mode=true agent_binary_name="attune-sensor-agent" agent_binary_version="9.9.9" sensor_version="9.9.9" max_concurrent_sensors=7 labels={"zone":"z"} active_rules=0`
	if got != want {
		t.Errorf("capabilities:\n want %s\n  got %s", want, got)
	}
}
