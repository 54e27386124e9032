package main

import (
	"encoding/json"
	"time"
)

// sensorSpec is everything read from the database about one sensor that should run here.
type sensorSpec struct {
	ID                       int64
	Ref, PackRef, Label      string
	Entrypoint               string
	Config                   json.RawMessage // sensor.config; nil when NULL
	Updated                  time.Time
	RuntimeID                int64
	RuntimeRef, RuntimeName  string
	RuntimeAliases           []string
	ExecutionConfig          json.RawMessage // runtime.execution_config; nil when NULL
	RuntimeVersionConstraint string          // sensor.runtime_version_constraint; "" when NULL
	RuntimeVersions          []runtimeVersionRow
	PackActiveReleaseDigest  string // current generation, "" when none
	// Release is the pack release the sensor runs from on the newest
	// generation (CONTRACT §12): in a reconcile pass the pack's active
	// release (what an acquire would pin), in a launched spec the release
	// its workload pinned; {packs_base_dir}/.releases/sha256/{digest}/pack.
	// nil on older generations.
	Release     *packRelease
	Rules       []sensorRule // active rules of the sensor's enabled, active triggers
	TriggerRefs []string     // all the sensor's trigger refs, sorted, unique

	// Placements are the pack's, the sensor's and each active rule's worker
	// placement (current generation); PlacementError names a rule placement
	// the reference refuses to parse, which makes the sensor ineligible.
	Placements     []placementRule
	PlacementError string
	// TransportDemand: config.inquiry_callback_adapters has an enabled
	// adapter, which is demand even without an active rule (newest generation).
	TransportDemand bool
	// Workload is the lease state the reconcile pass saw (newest generation).
	Workload workloadState
	// Fence is the lease one process runs under, set by acquire for that
	// start only; nil on older generations.
	Fence *workloadFence
}

// workloadState is what the reconcile pass reads of a sensor's default
// workload: its pinned release and whether another worker holds a live lease
// (then this agent does not even try to acquire it).
type workloadState struct {
	ID            int64        // 0: no workload row yet
	Pinned        *packRelease // the release the workload row pins
	HeldElsewhere bool         // an unexpired lease of another worker or agent process
}

// runtimeVersionRow is one runtime_version row of the sensor's runtime.
type runtimeVersionRow struct {
	Version         string
	ExecutionConfig json.RawMessage
	IsDefault       bool
	Available       bool
}

// sensorRule is one active rule the sensor must serve; it becomes one entry
// of ATTUNE_SENSOR_TRIGGERS.
type sensorRule struct {
	ID         int64
	Ref        string
	TriggerRef string
	Params     json.RawMessage // rule.trigger_params; nil → {}
}

// packRelease is one pack_release row as a workload pins it: its id and the
// sha256 digest of its pack.tar.gz (lower-case hex, no "sha256:" prefix).
type packRelease struct {
	ID     int64
	Digest string
}
