package main

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// goldenDetection runs the real detection over a scripted machine, so the
// goldens exercise the whole path (resolution, probe, parse) and stay stable.
func goldenDetection(t *testing.T, fixed []string, onPath map[string]string, outputs map[string]fakeProbeOutput) []Interpreter {
	t.Helper()
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	f := &fakeProbeSys{
		t: t, fixed: fixed, onPath: onPath, outputs: outputs,
		wantPathEnv: "/usr/local/bin:/usr/bin:/bin", wantEnv: env, maxTimeout: 200 * time.Millisecond,
	}
	return detectInterpreters(t.Context(), f.sys(), env, 200*time.Millisecond)
}

// contractExampleDetection is the machine of the CONTRACT §2 example.
func contractExampleDetection(t *testing.T) []Interpreter {
	return goldenDetection(t, []string{"/bin/bash", "/bin/sh"},
		map[string]string{"python3": "/usr/local/bin/python3"},
		map[string]fakeProbeOutput{
			"/bin/bash":              {out: "GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)\n"},
			"/usr/local/bin/python3": {out: "Python 3.12.1\n"},
		})
}

// busyDetection has every kind of line: an unreadable version (hung node), a
// java-style version on stderr, a version read despite a failing exit.
func busyDetection(t *testing.T) []Interpreter {
	return goldenDetection(t, []string{"/bin/bash", "/bin/sh"},
		map[string]string{
			"python3": "/usr/bin/python3", "node": "/usr/bin/node", "java": "/usr/lib/jvm/bin/java",
			"Rscript": "/usr/bin/Rscript", "perl": "/usr/bin/perl",
		},
		map[string]fakeProbeOutput{
			"/bin/bash":             {out: "GNU bash, version 5.2.15(1)-release\n"},
			"/usr/bin/python3":      {out: "Python 3.11.2\n"},
			"/usr/bin/node":         {hang: true},
			"/usr/lib/jvm/bin/java": {out: "openjdk version \"17.0.15\" 2025-04-15\n"},
			"/usr/bin/Rscript":      {out: "Rscript (R) version 4.2.2 (2022-10-31)\n", err: errors.New("exit status 1")},
			"/usr/bin/perl":         {out: "This is perl 5, version 36, subversion 0 (v5.36.0)\n"},
		})
}

// noDetection is a machine without any interpreter (a FROM scratch image).
func noDetection(t *testing.T) []Interpreter { return goldenDetection(t, nil, nil, nil) }

func TestDetectReport(t *testing.T) {
	tests := []struct {
		name        string
		detect      func(*testing.T) []Interpreter
		overrideSet bool
	}{
		{"detected", contractExampleDetection, false},
		{"several_with_unknown_version", busyDetection, false},
		{"override_set", busyDetection, true},
		{"none", noDetection, false},
		{"none_override_set", noDetection, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeDetectReport(&out, tc.detect(t), tc.overrideSet, runtimeEnvDiagnosis{}); err != nil {
				t.Fatal(err)
			}
			assertGolden(t, out.Bytes())
		})
	}
}

// TestDetectReportMatchesContract pins the CONTRACT §2 example independently
// of the goldens, so `-update` cannot silently drift from the contract.
func TestDetectReportMatchesContract(t *testing.T) {
	const want = "=== Attune Agent Runtime Detection Report ===\n" +
		"\n" +
		"Detected 2 runtime(s):\n" +
		"\n" +
		"  ✓ shell      /bin/bash (5.2.15)\n" +
		"  ✓ python     /usr/local/bin/python3 (3.12.1)\n" +
		"\n" +
		"ATTUNE_SENSOR_RUNTIMES=shell,python\n" +
		"\n"
	var out bytes.Buffer
	if err := writeDetectReport(&out, contractExampleDetection(t), false, runtimeEnvDiagnosis{}); err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		t.Errorf("report differs from the contract example (-want +got):\n-%q\n+%q", want, out.String())
	}

	const note = "NOTE: ATTUNE_SENSOR_RUNTIMES is set — auto-detection was skipped during normal startup.\n" +
		"      Showing what auto-detection would find on this system:\n" +
		"\n"
	out.Reset()
	if err := writeDetectReport(&out, contractExampleDetection(t), true, runtimeEnvDiagnosis{}); err != nil {
		t.Fatal(err)
	}
	if out.String() != note+want {
		t.Errorf("override report differs from the contract (-want +got):\n-%q\n+%q", note+want, out.String())
	}
}

func TestDetectJSON(t *testing.T) {
	override := "python, nodejs"
	empty := ""
	tests := []struct {
		name     string
		detect   func(*testing.T) []Interpreter
		override *string
	}{
		{"without_override", busyDetection, nil},
		{"with_override", busyDetection, &override},
		{"empty_override", contractExampleDetection, &empty},
		{"none_detected", noDetection, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeDetectJSON(&out, tc.detect(t), tc.override, runtimeEnvDiagnosis{Dir: "/opt/attune/runtime_envs"}); err != nil {
				t.Fatal(err)
			}
			assertGolden(t, out.Bytes())
		})
	}
}

func TestDetectReportWriteError(t *testing.T) {
	rts := []Interpreter{{"shell", "/bin/sh", ""}}
	if err := writeDetectReport(failingReportWriter{}, rts, false, runtimeEnvDiagnosis{}); !errors.Is(err, errReportSink) {
		t.Errorf("writeDetectReport: got %v, want an error wrapping errReportSink", err)
	}
	if err := writeDetectJSON(failingReportWriter{}, rts, nil, runtimeEnvDiagnosis{}); !errors.Is(err, errReportSink) {
		t.Errorf("writeDetectJSON: got %v, want an error wrapping errReportSink", err)
	}
}

var errReportSink = errors.New("stdout closed")

// failingReportWriter is a stdout that refuses every write.
type failingReportWriter struct{}

func (failingReportWriter) Write([]byte) (int, error) { return 0, errReportSink }
