package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeInterpreterBin builds a directory that is the whole PATH of an agent
// under test: version-named python wrappers that answer --version with the
// given version, log their own name to calls, and otherwise exec the real
// interpreter. It gives the test any "image" whatever this machine has.
func fakeInterpreterBin(t *testing.T, calls string, pyVersion string, names ...string) string {
	t.Helper()
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Fatalf("the real python3 is needed to run the fixture sensor: %v", err)
	}
	real := strings.TrimSpace(string(out))
	bin := t.TempDir()
	for _, name := range names {
		script := "#!/bin/sh\n" +
			"if [ \"$1\" = --version ]; then echo 'Python " + pyVersion + "'; exit 0; fi\n" +
			"echo " + name + " >> '" + calls + "'\n" +
			"exec '" + real + "' \"$@\"\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// TestPython311ImageRunsPython311 is issue 10's case: a python:3.11 image
// against runtime_version rows 3.11, 3.12 and 3.13 with 3.12 the default.
// The agent must advertise 3.11 and run python3.11, the only one it has.
func TestPython311ImageRunsPython311(t *testing.T) {
	requireServices(t)
	for _, gen := range []string{"legacy", "current"} {
		t.Run(gen, func(t *testing.T) {
			s := newTestStack(t, gen)
			defer s.killLeftovers()
			calls := filepath.Join(t.TempDir(), "calls")
			bin := fakeInterpreterBin(t, calls, "3.11.9", "python3", "python3.11")
			for _, absent := range []string{"python3.12", "python3.13"} {
				if p, err := lookPathInDirs(absent, bin); err == nil {
					t.Fatalf("%s must be missing from the test image, found %s", absent, p)
				}
			}
			for _, v := range []string{"3.11", "3.12", "3.13"} {
				s.db.exec(`INSERT INTO runtime_version (runtime, runtime_ref, version, execution_config, is_default, available)
					VALUES ($1, 'core.python', $2, $3::jsonb, $4, true)`, s.rt["Python"], v,
					`{"interpreter": {"binary": "python`+v+`", "args": ["-u"], "file_extension": ".py"}}`, v == "3.12")
			}
			s.sensorWithRule("py", "python_sensor.py", "Python", "", true)
			a := s.start("PATH=" + bin)
			s.waitSensorRunning(a, "testpack.py", 60*time.Second)
			s.api.waitEvents(t, 1, 30*time.Second)

			raw, err := os.ReadFile(calls)
			if err != nil {
				t.Fatalf("no interpreter was called: %v; agent stderr:\n%s", err, a.stderr.String())
			}
			if got := strings.Fields(string(raw)); !slices.Equal(got, []string{"python3.11"}) {
				t.Errorf("interpreters run = %v, want exactly [python3.11]", got)
			}
			_, caps, _ := s.workerRow()
			rv, _ := caps["runtime_versions"].(map[string]any)
			if py, _ := rv["python"].([]any); len(py) != 1 || py[0] != "3.11.9" {
				t.Errorf("runtime_versions = %v, want python [3.11.9]", caps["runtime_versions"])
			}
		})
	}
}

// TestRuntimeVersionConstraintNotAdvertisedNeverStarts: a sensor that
// demands 3.13 on the 3.11 image is not started, and nothing is executed.
func TestRuntimeVersionConstraintNotAdvertisedNeverStarts(t *testing.T) {
	requireServices(t)
	s := newTestStack(t, "legacy")
	defer s.killLeftovers()
	calls := filepath.Join(t.TempDir(), "calls")
	bin := fakeInterpreterBin(t, calls, "3.11.9", "python3", "python3.11")
	for _, v := range []string{"3.11", "3.13"} {
		s.db.exec(`INSERT INTO runtime_version (runtime, runtime_ref, version, execution_config, is_default, available)
			VALUES ($1, 'core.python', $2, $3::jsonb, false, true)`, s.rt["Python"], v,
			`{"interpreter": {"binary": "python`+v+`", "file_extension": ".py"}}`)
	}
	id, _ := s.sensorWithRule("py313", "python_sensor.py", "Python", "", true)
	s.db.exec(`UPDATE sensor SET runtime_version_constraint = '>=3.13' WHERE id = $1`, id)
	s.writeSensorScript("idle.sh", "#!/bin/sh\nexec /bin/sleep 3600\n")
	s.sensorWithRule("idle", "idle.sh", "Native", "", true) // proves the pass ran
	a := s.start("PATH=" + bin)
	s.waitSensorRunning(a, "testpack.idle", 60*time.Second)
	a.waitLog("testpack.py313", 30*time.Second) // the refusal names the sensor
	if pids := s.sensorPIDs("testpack.py313"); len(pids) != 0 {
		t.Errorf("constrained sensor runs (pids %v)", pids)
	}
	if raw, err := os.ReadFile(calls); err == nil {
		t.Errorf("an interpreter ran for the ineligible sensor: %q", raw)
	}
}
