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
	// Release is the pack release the sensor's workload pins (CONTRACT §12):
	// set only on the newest generation, where the sensor runs under a lease
	// from {packs_base_dir}/.releases/sha256/{digest}/pack; nil on older ones.
	Release     *packRelease
	Rules       []sensorRule // active rules of the sensor's enabled, active triggers
	TriggerRefs []string     // all the sensor's trigger refs, sorted, unique
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
