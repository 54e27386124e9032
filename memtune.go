package main

// memtune.go owns the garbage collector settings the agent applies to
// itself. The agent is copied into every sensor container, so its resident
// memory is paid once per container (issue 12, docs/benchmarks.md item 6).

import (
	"runtime/debug"
	"strconv"
)

// agentGCPercent is the GOGC the agent runs with unless the user set GOGC.
// With Go's default of 100 the heap grows to twice the live heap before a
// collection; the agent's live heap is small (a few KiB per sensor) and its
// garbage comes in bursts (a mass start, a reconcile pass every 2 s), so a
// collection at 1.5 times the live heap costs little CPU and cuts the peak.
// Measured at 500 sensors (item 6): GOGC 100 peaked at 28.2 MB, 50 at
// 25.7 MB, 25 at 25.2 MB with idle CPU growing from 0.25 % to 0.5 % and
// 0.65 % of a core; 50 is the knee.
//
// No soft memory limit is set by default: a limit only lowers the peak when
// it is below what the agent needs, and then the collector runs nearly
// continuously (4 % of a core at idle in the item 6 experiment with
// GOMEMLIMIT=16MiB at 500 sensors), and what the agent needs grows with the
// number of sensors, which no fixed limit fits. A user who wants one sets
// GOMEMLIMIT, which the Go runtime applies itself.
const agentGCPercent = 50

// memTuning is what tuneMemory decided, for the start-up log.
type memTuning struct {
	GCPercent   int    // -1: collection off (GOGC=off)
	GCFrom      string // "agent" or "GOGC"
	MemoryLimit int64  // bytes; math.MaxInt64 when none
	LimitFrom   string // "none" or "GOMEMLIMIT"
}

// tuneMemory applies agentGCPercent unless GOGC is set (then the runtime has
// already applied the user's value, which wins), and reports the settings.
// It leaves the memory limit to GOMEMLIMIT. lookup is os.LookupEnv.
func tuneMemory(lookup func(string) (string, bool)) memTuning {
	t := memTuning{GCPercent: agentGCPercent, GCFrom: "agent", LimitFrom: "none"}
	if v, ok := lookup("GOGC"); ok && v != "" {
		t.GCFrom = "GOGC"
		t.GCPercent = 100 // what the runtime does with a value it cannot parse
		if v == "off" {
			t.GCPercent = -1
		} else if n, err := strconv.Atoi(v); err == nil {
			t.GCPercent = n
		}
	} else {
		debug.SetGCPercent(agentGCPercent)
	}
	if v, ok := lookup("GOMEMLIMIT"); ok && v != "" {
		t.LimitFrom = "GOMEMLIMIT"
	}
	t.MemoryLimit = debug.SetMemoryLimit(-1) // a negative value only reads it
	memTuningApplied = t
	return t
}

// memTuningApplied is the last tuneMemory result, for the start-up log.
var memTuningApplied = memTuning{GCPercent: 100, GCFrom: "runtime", LimitFrom: "none"}

// logAttrs renders the settings with stable keys.
func (t memTuning) logAttrs() []any {
	gogc := strconv.Itoa(t.GCPercent)
	if t.GCPercent < 0 {
		gogc = "off"
	}
	limit := "none"
	if t.LimitFrom != "none" {
		limit = strconv.FormatInt(t.MemoryLimit, 10)
	}
	return []any{"gogc", gogc, "gogc_from", t.GCFrom, "memory_limit_bytes", limit, "memory_limit_from", t.LimitFrom}
}
