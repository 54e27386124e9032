package main

// eligibility.go decides, without touching the database, whether one sensor
// may run on this worker (CONTRACT §5): runtime supported, demand, version
// constraint, the full placement set against the worker's labels and taints,
// and on the newest generation a release to pin. The reconcile pass, acquire
// and renewal all ask the same function, so a sensor is never started by one
// and stopped by the next for a rule only one of them knows.

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// workerLiveCutoff is the reference's staleness cut-off: a worker whose last
// heartbeat is older takes no sensor work.
const workerLiveCutoff = 90 * time.Second

// workerPlacement is what a sensor is matched against: the worker's
// advertised runtimes (normalised, `native` included), runtime versions per
// canonical runtime name, labels and taints, all as registered in its
// capabilities.
type workerPlacement struct {
	Runtimes []string
	Versions map[string][]string // runtime_versions, else detected_interpreters versions
	Labels   map[string]string
	Taints   []workerTaint
}

// placementFromCapabilities reads a worker's placement from the capabilities
// object it registers, so what this agent matches is exactly what other
// agents and the API see in its worker row.
func placementFromCapabilities(caps map[string]any) workerPlacement {
	raw, _ := json.Marshal(caps)
	var c struct {
		Runtimes []string `json:"runtimes"`
	}
	_ = json.Unmarshal(raw, &c)
	w := workerPlacement{Labels: workerLabels(raw), Taints: workerTaints(raw), Versions: advertisedRuntimeVersions(caps)}
	for _, r := range c.Runtimes {
		if n := normalizeRuntimeName(r); n != "" && !slices.Contains(w.Runtimes, n) {
			w.Runtimes = append(w.Runtimes, n)
		}
	}
	return w
}

// ineligibleReason returns "" when sp may run on worker w, else a short
// reason for the once-per-sensor log line. leases: the newest generation,
// where a sensor also needs a pack release to pin.
func ineligibleReason(sp sensorSpec, w workerPlacement, leases bool) string {
	if !runtimeSupported(sp.RuntimeName, sp.RuntimeAliases, w.Runtimes) {
		return fmt.Sprintf("runtime %s (%s) is not one this worker runs %v", sp.RuntimeRef, sp.RuntimeName, w.Runtimes)
	}
	if _, ok, why := selectRuntimeVersion(sp, w.Versions); !ok {
		return "runtime version: " + why // quietly skipped: never a failing start
	}
	if sp.PlacementError != "" {
		return sp.PlacementError
	}
	if why := placementMismatch(w.Labels, w.Taints, sp.Placements); why != "" {
		return "placement: " + why
	}
	if leases && sp.Release == nil {
		return "pack has no active release to pin"
	}
	return ""
}

// runtimeSupported reports whether a sensor's runtime (by name or any alias,
// alias-normalised) is among the runtimes this worker advertises.
func runtimeSupported(name string, aliases, workerRuntimes []string) bool {
	for _, n := range append([]string{name}, aliases...) {
		if n = normalizeRuntimeName(n); n != "" && slices.Contains(workerRuntimes, n) {
			return true
		}
	}
	return false
}

// hasTransportDemand reports whether sensor.config.inquiry_callback_adapters
// holds an adapter with "enabled": true: such a sensor owns a provider
// connection and must run even without an active rule (newest generation).
func hasTransportDemand(config json.RawMessage) bool {
	var c struct {
		Adapters map[string]struct {
			Enabled bool `json:"enabled"`
		} `json:"inquiry_callback_adapters"`
	}
	if json.Unmarshal(config, &c) != nil {
		return false
	}
	for _, a := range c.Adapters {
		if a.Enabled {
			return true
		}
	}
	return false
}
