package main

// sensorenv.go builds a sensor's child environment (CONTRACT §6): the
// baseline and passthrough names, every ATTUNE_* variable (the lease's
// included), then the runtime's env_vars; nothing else of the agent's
// environment can reach a sensor.

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// sensorEnv builds the child environment of §6 from nothing: the baseline
// and passthrough names of the agent's environment, then every ATTUNE_*
// variable, then the runtime's env_vars (which may not touch ATTUNE_*).
// Nothing else of the agent's environment (database or broker URL, JWT
// secret, ATTUNE__* keys) can reach a sensor. With token "" the
// ATTUNE_API_TOKEN entry is left out, which is what launchPlan.Env holds.
// The second result lists what was skipped, for the caller to log.
func sensorEnv(spec sensorSpec, plan launchPlan, set launchSettings, token string) ([]string, []string) {
	var b launchEnvBuilder
	for _, kv := range baselineEnv(set.Environ, set.Passthrough) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			b.set(k, v)
		}
	}
	triggers, warns := sensorTriggersJSON(spec)
	config := "null"
	if len(spec.Config) > 0 {
		v, err := decodeLaunchJSON(spec.Config)
		if err != nil {
			warns = append(warns, fmt.Sprintf("sensor config is not valid JSON (%v); ATTUNE_SENSOR_CONFIG_JSON is null", err))
		} else {
			config = encodeLaunchJSON(v)
		}
	}
	b.set("ATTUNE_API_URL", set.APIURL)
	if token != "" {
		b.set("ATTUNE_API_TOKEN", token)
	}
	b.set("ATTUNE_PACK_REF", spec.PackRef)
	b.set("ATTUNE_SENSOR_ID", fmt.Sprint(spec.ID))
	b.set("ATTUNE_SENSOR_REF", spec.Ref)
	b.set("ATTUNE_SENSOR_TRIGGERS", triggers)
	b.set("ATTUNE_SENSOR_TRIGGER_TYPES", encodeLaunchJSON(canonicalSensorRefs(spec.TriggerRefs)))
	b.set("ATTUNE_SENSOR_CONFIG_JSON", config)
	b.set("ATTUNE_ARTIFACTS_DIR", set.ArtifactsDir)
	b.set("ATTUNE_LOG_LEVEL", set.LogLevel)
	b.set("ATTUNE_LOG_FORMAT", set.LogFormat)
	b.set("ATTUNE_NOTIFIER_WS_URL", set.NotifierWSURL)
	b.set("ATTUNE_ALLOW_INSECURE_NOTIFIER_WS", fmt.Sprint(set.AllowInsecureNotifierWS))
	if f := spec.Fence; f != nil { // the lease this process runs under (CONTRACT §12)
		b.set("ATTUNE_SENSOR_WORKLOAD_ID", fmt.Sprint(f.WorkloadID))
		b.set("ATTUNE_SENSOR_ASSIGNMENT_GENERATION", fmt.Sprint(f.Generation))
	}
	warns = append(warns, applyRuntimeEnvVars(&b, plan.exec.EnvVars, plan.vars)...)
	return b.environ(), warns
}

// sensorTriggersJSON renders ATTUNE_SENSOR_TRIGGERS exactly as the reference
// does (serde_json without preserve_order): compact, object keys sorted
// ("config", "id", "ref", "trigger_ref"), nested config keys sorted too.
// Rules are ordered by trigger ref, then id, so the value is stable.
func sensorTriggersJSON(spec sensorSpec) (string, []string) {
	type triggerInstance struct {
		Config     any    `json:"config"`
		ID         int64  `json:"id"`
		Ref        string `json:"ref"`
		TriggerRef string `json:"trigger_ref"`
	}
	rules := slices.Clone(spec.Rules)
	slices.SortStableFunc(rules, func(a, b sensorRule) int {
		return cmp.Or(strings.Compare(a.TriggerRef, b.TriggerRef), cmp.Compare(a.ID, b.ID))
	})
	var warns []string
	out := make([]triggerInstance, 0, len(rules))
	for _, r := range rules {
		var cfg any = map[string]any{}
		if len(r.Params) > 0 {
			v, err := decodeLaunchJSON(r.Params)
			if err != nil {
				warns = append(warns, fmt.Sprintf("rule %q trigger_params are not valid JSON (%v); using {}", r.Ref, err))
			} else {
				cfg = v
			}
		}
		out = append(out, triggerInstance{Config: cfg, ID: r.ID, Ref: r.Ref, TriggerRef: r.TriggerRef})
	}
	return encodeLaunchJSON(out), warns
}

// applyRuntimeEnvVars applies the runtime's env_vars, in name order, to b:
// set replaces, prepend/append join with the separator against the value
// built so far. Names that are empty, contain '=' or NUL, or start with
// ATTUNE_ (any case), and values containing NUL, are skipped with a warning.
func applyRuntimeEnvVars(b *launchEnvBuilder, vars []runtimeEnvVar, tmpl map[string]string) []string {
	var warns []string
	for _, ev := range vars {
		switch {
		case ev.Name == "" || strings.ContainsAny(ev.Name, "=\x00"):
			warns = append(warns, fmt.Sprintf("runtime env_vars name %q is not a valid variable name; skipped", ev.Name))
			continue
		case strings.HasPrefix(strings.ToUpper(ev.Name), "ATTUNE_"):
			warns = append(warns, fmt.Sprintf("runtime env_vars may not set reserved variable %s; skipped", ev.Name))
			continue
		}
		val := expandLaunchTemplate(ev.Value, tmpl)
		if strings.ContainsRune(val, 0) {
			warns = append(warns, fmt.Sprintf("runtime env_vars value of %s contains a NUL byte; skipped", ev.Name))
			continue
		}
		old, _ := b.get(ev.Name)
		switch ev.Operation {
		case "prepend":
			val = joinLaunchEnvValues(val, old, ev.Separator)
		case "append":
			val = joinLaunchEnvValues(old, val, ev.Separator)
		}
		b.set(ev.Name, val)
	}
	return warns
}

// joinLaunchEnvValues joins with sep, dropping an empty side (reference
// join_env_var_values).
func joinLaunchEnvValues(left, right, sep string) string {
	switch {
	case left == "":
		return right
	case right == "":
		return left
	}
	return left + sep + right
}

// launchEnvBuilder is an ordered environment: a later set of the same name
// replaces the value in place, so the result never holds duplicates.
type launchEnvBuilder struct {
	keys []string
	vals map[string]string
}

func (b *launchEnvBuilder) set(k, v string) {
	if b.vals == nil {
		b.vals = map[string]string{}
	}
	if _, ok := b.vals[k]; !ok {
		b.keys = append(b.keys, k)
	}
	b.vals[k] = v
}

func (b *launchEnvBuilder) get(k string) (string, bool) {
	v, ok := b.vals[k]
	return v, ok
}

func (b *launchEnvBuilder) environ() []string {
	out := make([]string, 0, len(b.keys))
	for _, k := range b.keys {
		out = append(out, k+"="+b.vals[k])
	}
	return out
}

// decodeLaunchJSON decodes keeping numbers as written (json.Number), so a
// big integer in a rule's params is not rounded through float64.
func decodeLaunchJSON(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON value")
	}
	return v, nil
}

// encodeLaunchJSON is compact JSON with sorted object keys and without
// Go's HTML escaping of <, > and &, which serde_json does not do either.
func encodeLaunchJSON(v any) string {
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "null" // unreachable for the decoded values and plain structs used here
	}
	return strings.TrimSuffix(sb.String(), "\n")
}

// canonicalSensorRefs trims, drops empties, sorts and de-duplicates refs;
// the result is never nil so it encodes as [] rather than null.
func canonicalSensorRefs(refs []string) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
