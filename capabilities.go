package main

import (
	_ "embed"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// versionFile is the agent's semantic version (VERSION at the repository
// root), the equivalent of the reference's crate version.
//
//go:embed VERSION
var versionFile string

// semverPattern is semver.org's grammar (without the leading v).
var semverPattern = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// gitDescribePattern recognises what `git describe --always --dirty` adds
// to a tag (-<n>-g<hash>, -dirty), or a bare abbreviated hash.
var gitDescribePattern = regexp.MustCompile(`-\d+-g[0-9a-f]{4,}|-dirty$|^[0-9a-f]{7,40}$`)

// semanticVersion is what sensor_version, agent_binary_version and
// ATTUNE_SENSOR_AGENT_BINARY_VERSION carry: the stamped version (a leading v
// dropped) when it is a plain semantic version such as a release tag, else
// the VERSION file (also for the unstamped default 0.0.0-dev of plain `go
// build` and the Dockerfile). Consumers parse these keys as semver, so a
// `git describe` string (which --version still prints) never reaches them.
func semanticVersion(stamped string) string {
	v := strings.TrimPrefix(strings.TrimSpace(stamped), "v")
	if semverPattern.MatchString(v) && !gitDescribePattern.MatchString(v) && v != "0.0.0-dev" {
		return v
	}
	return strings.TrimSpace(versionFile)
}

// capabilityInput is everything the worker row's capabilities object is made
// of. It is plain data so that buildCapabilities stays a pure function: the
// service gathers it once (config, detection, the agent's own environment
// variables) and the heartbeat only swaps Counters.
type capabilityInput struct {
	// Interpreters are the detected runtimes that passed the
	// ATTUNE_SENSOR_RUNTIMES filter, canonical names.
	Interpreters []Interpreter
	// Override holds the alias-normalised ATTUNE_SENSOR_RUNTIMES names; nil
	// (or empty) when the variable is unset or names nothing.
	Override []string

	Labels               map[string]string // sensor.labels
	Taints               []Taint           // sensor.taints
	MaxConcurrentSensors int               // sensor.max_concurrent_sensors

	// Raw values of ATTUNE_SENSOR_AGENT_MODE, ATTUNE_SENSOR_AGENT_BINARY_NAME
	// and ATTUNE_SENSOR_AGENT_BINARY_VERSION (the agent sets them at start).
	AgentMode          string
	AgentBinaryName    string
	AgentBinaryVersion string

	SensorVersion string // the agent's own semantic version (reference: the sensor crate version)

	// Fallback is set when bootstrap selected no runtime: the capabilities
	// then follow the reference's non-agent path (capabilityfallback.go)
	// and Interpreters and Override are not used.
	Fallback *capabilityFallback

	Counters heartbeatCounters
}

// detectedInterpreterJSON is one entry of detected_interpreters; Version is
// null when the version could not be read.
type detectedInterpreterJSON struct {
	Name    string  `json:"name"`
	Path    string  `json:"path"`
	Version *string `json:"version"`
}

// buildCapabilities returns the worker's capabilities object with exactly the
// keys of CONTRACT §4. Labels and taints are included only when non-empty
// and valid (capabilityProblems reports why they were dropped, for the one
// start-up warning). sensor.capabilities from config is merged only on the
// fallback path (in.Fallback): the reference does not merge it in agent mode.
func buildCapabilities(in capabilityInput) map[string]any {
	caps := map[string]any{
		"max_concurrent_sensors":     in.MaxConcurrentSensors,
		"sensor_processes_monitored": in.Counters.Monitored,
		"sensor_processes_running":   in.Counters.Running,
		"active_rules":               in.Counters.ActiveRules,
		"sensor_version":             in.SensorVersion,
	}
	if agentModeEnabled(in.AgentMode) {
		caps["agent_mode"] = true
	}
	if v := strings.TrimSpace(in.AgentBinaryName); v != "" {
		caps["agent_binary_name"] = v
	}
	if v := strings.TrimSpace(in.AgentBinaryVersion); v != "" {
		caps["agent_binary_version"] = v
	}
	if len(in.Labels) > 0 && validateCapabilityLabels(in.Labels) == nil {
		caps["labels"] = in.Labels
	}
	if len(in.Taints) > 0 && validateCapabilityTaints(in.Taints) == nil {
		caps["taints"] = normaliseCapabilityTaints(in.Taints)
	}

	if fb := in.Fallback; fb != nil {
		for k, v := range fb.Extra {
			switch k {
			case "sensor_processes_monitored", "sensor_processes_running", "active_rules":
				// the heartbeat owns these, as in the reference
			default:
				caps[k] = v // sensor.capabilities is merged over the base keys, as the reference does
			}
		}
		caps["runtimes"] = slices.Clone(fb.Runtimes)
		return caps
	}

	override := map[string]bool{}
	for _, name := range in.Override {
		if name = strings.TrimSpace(name); name != "" {
			override[name] = true
		}
	}
	interpreters := []detectedInterpreterJSON{}
	versions := map[string][]string{}
	var detected []string
	for _, it := range in.Interpreters {
		if len(override) > 0 && !override[it.Name] {
			continue
		}
		entry := detectedInterpreterJSON{Name: it.Name, Path: it.Path}
		if it.Version != "" {
			v := it.Version
			entry.Version = &v
		}
		interpreters = append(interpreters, entry)
		if strings.TrimSpace(it.Version) != "" {
			versions[it.Name] = append(versions[it.Name], it.Version)
		}
		if !slices.Contains(detected, it.Name) {
			detected = append(detected, it.Name)
		}
	}
	for name, vs := range versions {
		slices.Sort(vs)
		versions[name] = slices.Compact(vs)
	}

	var runtimes []string
	if len(override) > 0 {
		for name := range override {
			runtimes = append(runtimes, name)
		}
	} else {
		runtimes = detected
	}
	slices.Sort(runtimes)
	if !slices.Contains(runtimes, "native") {
		runtimes = append(runtimes, "native")
	}

	caps["detected_interpreters"] = interpreters
	caps["runtime_versions"] = versions
	caps["runtimes"] = runtimes
	return caps
}

// agentModeEnabled applies the reference's reading of
// ATTUNE_SENSOR_AGENT_MODE: "1" or "true", any case, surrounding space ignored.
func agentModeEnabled(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true":
		return true
	}
	return false
}

// capabilityProblems explains, once at start-up, why configured labels or
// taints will be left out of the capabilities (the reference warns and drops
// them instead of refusing to start).
func capabilityProblems(in capabilityInput) []error {
	var problems []error
	if err := validateCapabilityLabels(in.Labels); err != nil {
		problems = append(problems, err)
	}
	if err := validateCapabilityTaints(in.Taints); err != nil {
		problems = append(problems, err)
	}
	return problems
}

// validateCapabilityLabels applies the reference's label rules: every key and
// every value must be non-blank.
func validateCapabilityLabels(labels map[string]string) error {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys) // stable message when several are wrong
	for _, k := range keys {
		if strings.TrimSpace(k) == "" {
			return fmt.Errorf("sensor.labels: a label key is empty")
		}
		if strings.TrimSpace(labels[k]) == "" {
			return fmt.Errorf("sensor.labels[%q] must be a non-empty string", k)
		}
	}
	return nil
}

// validateCapabilityTaints applies the reference's taint rules: a non-blank
// key, a value that is absent or non-blank, and an effect of no_schedule or
// prefer_no_schedule (empty means the default, no_schedule).
func validateCapabilityTaints(taints []Taint) error {
	for _, t := range taints {
		if strings.TrimSpace(t.Key) == "" {
			return fmt.Errorf("sensor.taints: a taint key is empty")
		}
		if t.Value != "" && strings.TrimSpace(t.Value) == "" {
			return fmt.Errorf("sensor.taints: taint %q value must be non-empty when provided", t.Key)
		}
		switch t.Effect {
		case "", "no_schedule", "prefer_no_schedule":
		default:
			return fmt.Errorf("sensor.taints: taint %q effect %q is not no_schedule or prefer_no_schedule", t.Key, t.Effect)
		}
	}
	return nil
}

// normaliseCapabilityTaints fills the default effect, as the reference's
// serialisation always writes one.
func normaliseCapabilityTaints(taints []Taint) []Taint {
	out := make([]Taint, len(taints))
	for i, t := range taints {
		if t.Effect == "" {
			t.Effect = "no_schedule"
		}
		out[i] = t
	}
	return out
}

// newCapabilityInput gathers the capability inputs from the sensor config,
// the detection result and the agent's environment (getenv is os.Getenv in
// production), leaving Counters at zero as the reference registers them.
func newCapabilityInput(sc SensorConfig, interpreters []Interpreter, override []string, getenv func(string) string, sensorVersion string) capabilityInput {
	return capabilityInput{
		Interpreters:         interpreters,
		Override:             override,
		Labels:               sc.Labels,
		Taints:               sc.Taints,
		MaxConcurrentSensors: sc.MaxConcurrentSensors,
		AgentMode:            getenv("ATTUNE_SENSOR_AGENT_MODE"),
		AgentBinaryName:      getenv("ATTUNE_SENSOR_AGENT_BINARY_NAME"),
		AgentBinaryVersion:   getenv("ATTUNE_SENSOR_AGENT_BINARY_VERSION"),
		SensorVersion:        sensorVersion,
	}
}
