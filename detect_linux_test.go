package main

// Detection against real processes: fake interpreters as shell scripts, the
// machine's own interpreters, process-group kills checked through /proc.

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDetectInterpretersFakeScripts(t *testing.T) {
	sleep := hostBinary(t, "sleep")
	dir := t.TempDir()
	writeFakeInterpreter(t, dir, "bash", `echo "GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)"`)
	writeFakeInterpreter(t, dir, "python3", "[ \"$1\" = --version ] || exit 9\necho 'Python 3.12.1'")
	writeFakeInterpreter(t, dir, "nodejs", "[ \"$1\" = --version ] || exit 9\necho v20.11.0")
	writeFakeInterpreter(t, dir, "ruby", sleep+" 30")
	writeFakeInterpreter(t, dir, "go", "[ \"$1\" = version ] || exit 9\necho 'go version go1.22.0 linux/amd64'")
	writeFakeInterpreter(t, dir, "java", "[ \"$1\" = -version ] || exit 9\necho 'openjdk version \"17.0.15\" 2025-04-15' >&2")
	writeFakeInterpreter(t, dir, "Rscript", sleep+" 30")
	writeFakeInterpreter(t, dir, "perl", "exit 3")
	sys := realProbeSys
	sys.isExecutable = func(string) bool { return false } // hide this machine's /bin/bash and /bin/sh

	const timeout = time.Second
	start := time.Now()
	got := detectInterpreters(t.Context(), sys, []string{"PATH=" + dir}, timeout)
	elapsed := time.Since(start)

	want := []Interpreter{
		{"shell", dir + "/bash", "5.2.15"},
		{"python", dir + "/python3", "3.12.1"},
		{"node", dir + "/nodejs", "20.11.0"},
		{"ruby", dir + "/ruby", ""}, // hung: killed at the timeout, still counts
		{"go", dir + "/go", "1.22.0"},
		{"java", dir + "/java", "17.0.15"},
		{"r", dir + "/Rscript", ""}, // hung too: both hangs share one timeout
		{"perl", dir + "/perl", ""}, // non-zero exit, nothing printed
	}
	if !slices.Equal(got, want) {
		t.Errorf("detectInterpreters: diff (-want +got)\n-%v\n+%v", want, got)
	}
	// Two hung probes cost one timeout, not two: they run concurrently.
	if elapsed < timeout || elapsed > 1900*time.Millisecond {
		t.Errorf("detection took %v, want between %v and 1.9s", elapsed, timeout)
	}
	t.Logf("detection with two hung interpreters took %v (timeout %v)", elapsed, timeout)
}

func TestRunVersionCommand(t *testing.T) {
	sleep := hostBinary(t, "sleep")
	head := hostBinary(t, "head")
	tests := []struct {
		name        string
		body        string
		timeout     time.Duration
		wantOut     string // exact combined output, when set
		wantVersion string
		maxElapsed  time.Duration
		pidFile     bool // the script records a background child that must be killed
	}{
		{name: "stdout comes before stderr", body: "echo 'stderr 9.9.9' >&2\necho 'stdout 1.2.3'",
			wantOut: "stdout 1.2.3\nstderr 9.9.9\n", wantVersion: "1.2.3"},
		{name: "non-zero exit still parsed, as the reference", body: "echo 'Rscript (R) version 4.3.1'\nexit 2",
			wantVersion: "4.3.1"},
		{name: "non-zero exit without output", body: "exit 3", wantVersion: ""},
		{name: "background child holding the pipe", body: sleep + " 30 &\necho $! > \"$PIDFILE\"\necho v1.2.3",
			wantVersion: "1.2.3", maxElapsed: 2 * time.Second, pidFile: true},
		{name: "hung probe is killed with its children", body: sleep + " 30 &\necho $! > \"$PIDFILE\"\necho v1.2.3\nwait",
			timeout: 300 * time.Millisecond, wantVersion: "", maxElapsed: 2 * time.Second, pidFile: true},
		{name: "flood is capped", body: "echo v7.8.9\n" + head + " -c 1000000 /dev/zero",
			wantVersion: "7.8.9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "child.pid")
			bin := writeFakeInterpreter(t, dir, "probe", tc.body)
			env := []string{"PIDFILE=" + pidFile}
			timeout := cmp.Or(tc.timeout, 5*time.Second)
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			start := time.Now()
			out, _ := realProbeSys.runVersion(ctx, bin, []string{"--version"}, env)
			elapsed := time.Since(start)
			got := ""
			if ctx.Err() == nil {
				got = parseSemverLikeVersion(string(out))
			}
			if got != tc.wantVersion {
				t.Errorf("version: -want %q +got %q (output %.80q)", tc.wantVersion, got, out)
			}
			if tc.wantOut != "" && string(out) != tc.wantOut {
				t.Errorf("output: -want %q +got %q", tc.wantOut, out)
			}
			if len(out) > 2*probeOutputLimit {
				t.Errorf("kept %d bytes of output, want at most %d", len(out), 2*probeOutputLimit)
			}
			if tc.maxElapsed > 0 && elapsed > tc.maxElapsed {
				t.Errorf("probe took %v, want at most %v", elapsed, tc.maxElapsed)
			}
			if tc.pidFile {
				assertProcessGone(t, pidFile)
			}
		})
	}
}

func TestRunVersionCommandUnstartable(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "garbage")
	if err := os.WriteFile(bin, []byte("\x00\x01not a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := runtimeCandidate{"x", []string{"garbage"}, []string{"--version"}, versionSemverLike}
	if got := probeVersion(t.Context(), realProbeSys, c, bin, nil); got != "" {
		t.Errorf("version of an unstartable binary: got %q, want empty", got)
	}
	if _, err := realProbeSys.runVersion(t.Context(), bin, nil, nil); err == nil {
		t.Error("runVersion of an unstartable binary: want an error")
	}
}

func TestProbeEnvCarriesNoAgentSecret(t *testing.T) {
	dir := t.TempDir()
	dump := filepath.Join(dir, "env.dump")
	// export -p is a shell builtin: the probe's PATH holds only this directory.
	writeFakeInterpreter(t, dir, "python3", "export -p > '"+dump+"'\necho 'Python 3.12.1'")
	t.Setenv("ATTUNE__DATABASE__URL", "postgres://attune:secret@db/attune")
	t.Setenv("ATTUNE__SECURITY__JWT_SECRET", "secret-jwt")
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("HOME", "/home/agent")

	sys := realProbeSys
	sys.isExecutable = func(string) bool { return false }
	sys.lookPath = func(name, pathEnv string) (string, error) { // only the fake, to keep the test fast
		if p, err := lookPathInDirs(name, pathEnv); err == nil && filepath.Dir(p) == dir {
			return p, nil
		}
		return "", errInterpreterNotFound
	}
	env := baselineEnv(os.Environ(), nil) // what the caller passes
	got := detectInterpreters(t.Context(), sys, env, 2*time.Second)
	if want := []Interpreter{{"python", dir + "/python3", "3.12.1"}}; !slices.Equal(got, want) {
		t.Fatalf("detectInterpreters: -want %v +got %v", want, got)
	}
	assertEnvDumpClean(t, dump, true)

	// A nil env must not fall back to inheriting the agent's environment.
	if err := os.Remove(dump); err != nil {
		t.Fatal(err)
	}
	if _, err := realProbeSys.runVersion(t.Context(), dir+"/python3", nil, nil); err != nil {
		t.Fatal(err)
	}
	assertEnvDumpClean(t, dump, false)
}

func TestDetectInterpretersRealMachine(t *testing.T) {
	env := baselineEnv(os.Environ(), nil)
	got := detectInterpreters(t.Context(), realProbeSys, env, defaultProbeTimeout)
	t.Logf("detected on this machine: %v", got)
	index := map[string]int{}
	for i, in := range got {
		index[in.Name] = i
	}
	for _, name := range []string{"shell", "python", "node", "perl"} {
		i, ok := index[name]
		if !ok {
			t.Errorf("%s not detected", name)
			continue
		}
		if v := got[i].Version; !semverLikeVersionRe.MatchString(v) {
			t.Errorf("%s: version %q is not a version", name, v)
		}
	}
	if i, ok := index["shell"]; ok && got[i].Path != "/bin/bash" {
		t.Errorf("shell path %q, want /bin/bash", got[i].Path)
	}
	var order []int
	for _, in := range got {
		order = append(order, slices.IndexFunc(runtimeCandidates, func(c runtimeCandidate) bool { return c.name == in.Name }))
	}
	if !slices.IsSorted(order) || slices.Contains(order, -1) {
		t.Errorf("result not in probe order: %v", got)
	}
}

// hostBinary resolves a helper binary the fake scripts need by absolute path,
// since their PATH holds only the fakes.
func hostBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("test needs %s: %v", name, err)
	}
	return p
}

// assertProcessGone waits until the pid recorded in pidFile has died (gone or
// a zombie nobody reaped), failing after a generous bound.
func assertProcessGone(t *testing.T, pidFile string) {
	t.Helper()
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("read child pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("child pid %q: %v", raw, err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if _, rest, ok := strings.Cut(string(stat), ") "); ok && strings.HasPrefix(rest, "Z") {
			return
		}
	}
	t.Errorf("background child %d still alive after the probe ended", pid)
}

// assertEnvDumpClean checks an `export -p` dump for agent secrets.
func assertEnvDumpClean(t *testing.T, dump string, wantBaseline bool) {
	t.Helper()
	raw, err := os.ReadFile(dump)
	if err != nil {
		t.Fatalf("the fake interpreter did not dump its env: %v", err)
	}
	got := string(raw)
	if strings.Contains(got, "secret") || strings.Contains(got, "ATTUNE__") {
		t.Errorf("probe environment leaks an agent secret:\n%s", got)
	}
	if wantBaseline && (!strings.Contains(got, "PATH=") || !strings.Contains(got, "HOME='/home/agent'")) {
		t.Errorf("probe environment lacks the baseline PATH and HOME:\n%s", got)
	}
}
