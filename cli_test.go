package main

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

// TestCLIHelp pins the usage text byte for byte.
func TestCLIHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errOut); code != exitOK {
		t.Fatalf("--help exit %d, want 0", code)
	}
	assertGolden(t, errOut.Bytes())
}

// TestCLIUsageErrors: unknown flags, stray arguments and --json without
// --detect-only print the usage on stderr and exit 2, touching nothing.
func TestCLIUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, "flag provided but not defined: -bogus"},
		{"stray argument", []string{"extra"}, `unexpected argument "extra"`},
		{"json without detect-only", []string{"--json"}, "--json is only valid with --detect-only"},
		{"missing flag value", []string{"--config"}, "flag needs an argument: -config"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errOut)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if out.Len() != 0 {
				t.Errorf("stdout not empty: %q", out.String())
			}
			if !strings.Contains(errOut.String(), tc.want) || !strings.Contains(errOut.String(), "Usage: attune-sensor-agent") {
				t.Errorf("stderr %q: want %q and the usage", errOut.String(), tc.want)
			}
		})
	}
}

// TestCLIVersion: --version prints the name and stamped version first, then
// commit and Go version, on stdout.
func TestCLIVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(out.String(), "\n")
	if lines[0] != "attune-sensor-agent "+version || !strings.Contains(out.String(), "go: go1.") {
		t.Errorf("--version output %q", out.String())
	}
}

// TestCLIDetectOnlyJSON: --detect-only --json prints one JSON object on
// stdout whatever the machine has, with nothing on stdout but the report.
func TestCLIDetectOnlyJSON(t *testing.T) {
	t.Setenv("ATTUNE_SENSOR_RUNTIMES", "python,nodejs")
	for _, k := range []string{"ATTUNE_SENSOR_AGENT_MODE", "ATTUNE_SENSOR_AGENT_BINARY_NAME", "ATTUNE_SENSOR_AGENT_BINARY_VERSION"} {
		t.Setenv(k, "") // run sets them; t.Setenv restores them afterwards
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--detect-only", "--json"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var rep struct {
		Runtimes []map[string]any `json:"runtimes"`
		Override *string          `json:"override"`
		Env      string           `json:"env"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out.String())
	}
	if rep.Override == nil || *rep.Override != "python,nodejs" || rep.Env != "ATTUNE_SENSOR_RUNTIMES=python,nodejs" {
		t.Errorf("override %v env %q", rep.Override, rep.Env)
	}
	if len(rep.Runtimes) == 0 || rep.Runtimes[0]["name"] != "shell" {
		t.Errorf("runtimes %v: want shell first on this machine", rep.Runtimes)
	}
}

// TestCLIVersionShort: -V is --version (clap's short flag in the
// reference); the golden pins the text with the build-dependent values
// (version, commit, Go release) masked.
func TestCLIVersionShort(t *testing.T) {
	var short, long, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-V"}, &short, &errOut); code != exitOK || errOut.Len() != 0 {
		t.Fatalf("-V: exit %d, stderr %q", code, errOut.String())
	}
	run(context.Background(), []string{"--version"}, &long, &errOut)
	if short.String() != long.String() {
		t.Errorf("-V printed %q, --version %q", short.String(), long.String())
	}
	masked := strings.NewReplacer(version, "VERSION", versionCommit(), "COMMIT", runtime.Version(), "GO",
		runtime.GOOS+"/"+runtime.GOARCH, "OS/ARCH").Replace(short.String())
	assertGolden(t, []byte(masked))
}
