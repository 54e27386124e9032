package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// detectReportMissingHint is the list printed when nothing was detected: one
// line per candidate, with the reference's exact (irregular) alignment.
var detectReportMissingHint = []string{
	"  - bash / sh       (shell scripts)",
	"  - python3 / python (Python scripts)",
	"  - node / nodejs    (Node.js scripts)",
	"  - ruby             (Ruby scripts)",
	"  - go               (Go programs)",
	"  - java             (Java programs)",
	"  - Rscript          (R scripts)",
	"  - perl             (Perl scripts)",
}

// writeDetectReport writes the --detect-only text report (CONTRACT §2) byte
// for byte as the reference prints it, so scripts that scrape it keep
// working. detected is the unfiltered detection: with the override set the
// report says so first and still shows everything found, and the closing
// variable line is the detected CSV either way. The report is built in memory
// and written at once so a failing writer cannot leave half a report.
//
// envs is the shared-environment diagnostic [agent]: when it lists
// environments this image cannot run, a section naming them follows the
// reference's report; when it lists none the report is the reference's.
func writeDetectReport(w io.Writer, detected []Interpreter, overrideSet bool, envs runtimeEnvDiagnosis) error {
	var b bytes.Buffer
	if overrideSet {
		fmt.Fprintf(&b, "NOTE: %s is set — auto-detection was skipped during normal startup.\n", runtimesOverrideEnv)
		b.WriteString("      Showing what auto-detection would find on this system:\n\n")
	}
	b.WriteString("=== Attune Agent Runtime Detection Report ===\n\n")
	if len(detected) == 0 {
		b.WriteString("No runtimes detected!\n\n")
		b.WriteString("The agent could not find any supported interpreter binaries.\n")
		b.WriteString("Ensure at least one of the following is installed and on PATH:\n")
		for _, line := range detectReportMissingHint {
			b.WriteString(line + "\n")
		}
	} else {
		fmt.Fprintf(&b, "Detected %d runtime(s):\n\n", len(detected))
		for _, in := range detected {
			version := in.Version
			if version == "" {
				version = "unknown version"
			}
			fmt.Fprintf(&b, "  ✓ %-10s %s (%s)\n", in.Name, in.Path, version)
		}
	}
	fmt.Fprintf(&b, "\n%s=%s\n\n", runtimesOverrideEnv, runtimeNamesCSV(detected))
	if len(envs.Unusable) > 0 {
		fmt.Fprintf(&b, "Shared runtime environments this image cannot run (%s):\n\n", envs.Dir)
		for _, p := range envs.Unusable {
			pack := p.Pack
			if pack == "" {
				pack = "unknown pack"
			}
			fmt.Fprintf(&b, "  ✗ %s (%s)\n      %s: %s\n", p.Path, pack, p.Problem, p.Detail)
		}
		b.WriteString("\n")
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write detection report: %w", err)
	}
	return nil
}

// detectJSONReport is the --detect-only --json document ([agent]).
type detectJSONReport struct {
	Runtimes    []Interpreter       `json:"runtimes"`
	Override    *string             `json:"override"`
	Env         string              `json:"env"`
	RuntimeEnvs runtimeEnvDiagnosis `json:"runtime_envs"`
}

// writeDetectJSON writes the machine-readable report as one JSON object and a
// newline. runtimes is the unfiltered detection, as in the text report;
// override is the raw ATTUNE_SENSOR_RUNTIMES value (nil when unset); env is
// the variable as normal start-up would leave it: the override value when set
// (the agent never changes it), else the detected CSV (empty when nothing was
// found, though start-up then leaves the variable unset).
// runtime_envs is the shared-environment diagnostic: the directory and the
// environments under it this image cannot run ([] when none).
func writeDetectJSON(w io.Writer, detected []Interpreter, override *string, envs runtimeEnvDiagnosis) error {
	if envs.Unusable == nil {
		envs.Unusable = []runtimeEnvProblem{}
	}
	report := detectJSONReport{Runtimes: detected, Override: override, RuntimeEnvs: envs}
	if report.Runtimes == nil {
		report.Runtimes = []Interpreter{}
	}
	value := runtimeNamesCSV(detected)
	if override != nil {
		value = *override
	}
	report.Env = runtimesOverrideEnv + "=" + value
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(report); err != nil {
		return fmt.Errorf("encode detection report: %w", err)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write detection report: %w", err)
	}
	return nil
}
