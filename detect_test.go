package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseSemverLikeVersion(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"python", "Python 3.12.1", "3.12.1"},
		{"node", "v20.11.0\n", "20.11.0"},
		{"go", "go version go1.22.0 linux/amd64", "1.22.0"},
		{"bash", "GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)", "5.2.15"},
		{"ruby", "ruby 3.3.0 (2023-12-25 revision 5124f9ac75) [x86_64-linux]", "3.3.0"},
		{"perl", "\nThis is perl 5, version 36, subversion 0 (v5.36.0) built for x86_64-linux", "5.36.0"},
		{"rscript", "Rscript (R) version 4.3.1 (2023-06-16)", "4.3.1"},
		{"busybox", "BusyBox v1.36.1 (2023-06-10) multi-call binary.", "1.36.1"},
		{"two components", "Python 3.12", "3.12"},
		{"four components keep three", "tool 1.2.3.4", "1.2.3"},
		{"first match wins", "lib 1.2 tool 3.4.5", "1.2"},
		{"leading dot", ".5.6", "5.6"},
		{"single number", "version 5", ""},
		{"no digits", "command not found", ""},
		{"empty", "", ""},
		{"unicode digits as the regex crate", "v٣.١٢", "٣.١٢"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseSemverLikeVersion(tc.in); got != tc.want {
				t.Errorf("parseSemverLikeVersion(%q): -want %q +got %q", tc.in, tc.want, got)
			}
		})
	}
}

func TestParseJavaVersion(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"openjdk 17", "openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime Environment (build 17.0.15+6)", "17.0.15"},
		{"openjdk 21", `openjdk version "21.0.1" 2023-10-17`, "21.0.1"},
		{"oracle 8", `java version "1.8.0_392"`, "1.8.0_392"},
		{"early access", `openjdk version "21-ea" 2023-09-19`, "21-ea"},
		{"major only", `openjdk version "11" 2018-09-25`, "11"},
		{"several spaces", `version   "11.0.2"`, "11.0.2"},
		{"tab", "version\t\"11.0.2\"", "11.0.2"},
		{"no-break space as the regex crate", "version\u00a0\"17.0.1\"", "17.0.1"},
		{"unquoted falls back to semver-like", "openjdk 17.0.2 2022-01-18", "17.0.2"},
		{"no whitespace falls back", `version"17.1"`, "17.1"},
		{"empty quotes fall back", `version "" 1.2`, "1.2"},
		{"nothing", "Error: could not create the Java Virtual Machine.", ""},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseJavaVersion(tc.in); got != tc.want {
				t.Errorf("parseJavaVersion(%q): -want %q +got %q", tc.in, tc.want, got)
			}
		})
	}
}

func TestNormalizeRuntimeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"node", "node"}, {"nodejs", "node"}, {"node.js", "node"}, {"Node.JS", "node"},
		{"python", "python"}, {"python3", "python"}, {"  PYTHON3 ", "python"},
		{"shell", "shell"}, {"bash", "shell"}, {"sh", "shell"}, {"Bash", "shell"},
		{"native", "native"}, {"builtin", "native"}, {"standalone", "native"},
		{"ruby", "ruby"}, {"rb", "ruby"},
		{"go", "go"}, {"golang", "go"}, {"GoLang", "go"},
		{"java", "java"}, {"jdk", "java"}, {"openjdk", "java"},
		{"perl", "perl"}, {"perl5", "perl"},
		{"r", "r"}, {"R", "r"}, {"rscript", "r"}, {"Rscript", "r"},
		{"Lua", "lua"}, {"python2", "python2"}, {"\tDeno\n", "deno"},
		{"", ""}, {"   ", ""},
		{"ÉLIXIR", "Élixir"}, // ASCII-only lower-casing, as the reference
	}
	for _, tc := range tests {
		if got := normalizeRuntimeName(tc.in); got != tc.want {
			t.Errorf("normalizeRuntimeName(%q): -want %q +got %q", tc.in, tc.want, got)
		}
	}
}

func TestSelectRuntimes(t *testing.T) {
	shell := Interpreter{"shell", "/bin/bash", "5.2.15"}
	python := Interpreter{"python", "/usr/bin/python3", "3.12.1"}
	node := Interpreter{"node", "/usr/bin/node", ""}
	all := []Interpreter{shell, python, node}
	tests := []struct {
		name        string
		detected    []Interpreter
		override    string
		overrideSet bool
		want        runtimeSelection
	}{
		{"unset sets the detected CSV", all, "", false,
			runtimeSelection{Selected: all, SetEnv: true, EnvValue: "shell,python,node"}},
		{"unset and nothing found leaves the variable alone", nil, "", false,
			runtimeSelection{}},
		{"plain name", all, "python", true,
			runtimeSelection{Selected: []Interpreter{python}, OverrideNames: []string{"python"}}},
		{"empty override selects nothing", all, "", true,
			runtimeSelection{Selected: []Interpreter{}, OverrideNames: []string{}}},
		{"alias nodejs matches node", all, "nodejs", true,
			runtimeSelection{Selected: []Interpreter{node}, OverrideNames: []string{"node"}}},
		{"whitespace and case, probe order kept", all, " Python3 , SHELL ", true,
			runtimeSelection{Selected: []Interpreter{shell, python}, OverrideNames: []string{"python", "shell"}}},
		{"unknown names match nothing but are kept", all, "ruby,lua", true,
			runtimeSelection{Selected: []Interpreter{}, OverrideNames: []string{"ruby", "lua"}}},
		{"empty tokens and duplicate aliases collapse", all, "shell,,sh, bash,", true,
			runtimeSelection{Selected: []Interpreter{shell}, OverrideNames: []string{"shell"}}},
		{"native is a name, never a detected runtime", all, "shell,python,native", true,
			runtimeSelection{Selected: []Interpreter{shell, python}, OverrideNames: []string{"shell", "python", "native"}}},
		{"set with nothing detected", nil, "python", true,
			runtimeSelection{Selected: []Interpreter{}, OverrideNames: []string{"python"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := selectRuntimes(tc.detected, tc.override, tc.overrideSet)
			if !slices.Equal(got.Selected, tc.want.Selected) || (got.Selected == nil) != (tc.want.Selected == nil) ||
				!slices.Equal(got.OverrideNames, tc.want.OverrideNames) || (got.OverrideNames == nil) != (tc.want.OverrideNames == nil) ||
				got.SetEnv != tc.want.SetEnv || got.EnvValue != tc.want.EnvValue {
				t.Errorf("selectRuntimes(%q, set=%v): diff (-want +got)\n-%#v\n+%#v", tc.override, tc.overrideSet, tc.want, got)
			}
		})
	}
}

func TestInterpreterMarshalJSON(t *testing.T) {
	got, err := json.Marshal([]Interpreter{{"python", "/usr/bin/python3", "3.12.1"}, {"node", "/usr/bin/node", ""}})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"name":"python","path":"/usr/bin/python3","version":"3.12.1"},{"name":"node","path":"/usr/bin/node","version":null}]`
	if string(got) != want {
		t.Errorf("marshal: diff (-want +got)\n-%s\n+%s", want, got)
	}
}

func TestLookPathInDirs(t *testing.T) {
	root := t.TempDir()
	notExec := filepath.Join(root, "notexec")
	isDir := filepath.Join(root, "isdir")
	good := filepath.Join(root, "good")
	rel := filepath.Join(root, "rel")
	for _, d := range []string{notExec, filepath.Join(isDir, "tool"), good, rel} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(notExec, "tool"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFakeInterpreter(t, good, "tool", "exit 0")
	writeFakeInterpreter(t, rel, "reltool", "exit 0")
	if err := os.Symlink(filepath.Join(good, "tool"), filepath.Join(good, "link")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)

	tests := []struct{ name, bin, pathEnv, want string }{
		{"skips non-executable and directory", "tool", strings.Join([]string{notExec, isDir, good}, ":"), filepath.Join(good, "tool")},
		{"symlink kept unresolved, as which", "link", good, filepath.Join(good, "link")},
		{"relative and empty entries ignored", "reltool", "::rel:.", ""},
		{"empty PATH", "tool", "", ""},
		{"missing", "nope", good, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookPathInDirs(tc.bin, tc.pathEnv)
			if tc.want == "" {
				if !errors.Is(err, errInterpreterNotFound) {
					t.Errorf("lookPathInDirs(%q): got %q, %v; want errInterpreterNotFound", tc.bin, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("lookPathInDirs(%q): -want %q +got %q (%v)", tc.bin, tc.want, got, err)
			}
		})
	}
}

func TestResolveCandidateShellPreference(t *testing.T) {
	shell, python := runtimeCandidates[0], runtimeCandidates[1]
	tests := []struct {
		name       string
		cand       runtimeCandidate
		fixed      []string          // fixed paths that exist
		onPath     map[string]string // binary -> PATH hit
		want       string
		wantExists bool
	}{
		{"/bin/bash beats bash on PATH", shell, []string{"/bin/bash", "/bin/sh"},
			map[string]string{"bash": "/usr/local/bin/bash"}, "/bin/bash", true},
		{"bash on PATH beats /bin/sh", shell, []string{"/bin/sh"},
			map[string]string{"bash": "/usr/local/bin/bash"}, "/usr/local/bin/bash", true},
		{"/bin/sh beats sh on PATH", shell, []string{"/bin/sh"},
			map[string]string{"sh": "/usr/bin/sh"}, "/bin/sh", true},
		{"sh on PATH", shell, nil, map[string]string{"sh": "/opt/bin/sh"}, "/opt/bin/sh", true},
		{"no shell", shell, nil, nil, "", false},
		{"second binary", python, []string{"/bin/bash"}, map[string]string{"python": "/usr/bin/python"}, "/usr/bin/python", true},
		{"first binary wins", python, nil, map[string]string{"python": "/a/python", "python3": "/b/python3"}, "/b/python3", true},
		{"fixed paths only for shells", python, []string{"/bin/python3"}, nil, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeProbeSys{t: t, fixed: tc.fixed, onPath: tc.onPath, wantPathEnv: "/the/path"}
			got, ok := resolveCandidate(f.sys(), tc.cand, "/the/path")
			if got != tc.want || ok != tc.wantExists {
				t.Errorf("resolveCandidate(%s): -want %q,%v +got %q,%v", tc.cand.name, tc.want, tc.wantExists, got, ok)
			}
		})
	}
}

func TestDetectInterpretersInjected(t *testing.T) {
	env := []string{"PATH=/usr/local/bin:/usr/bin", "HOME=/home/agent"}
	f := &fakeProbeSys{
		t:     t,
		fixed: []string{"/bin/sh"},
		onPath: map[string]string{
			"python3": "/usr/local/bin/python3", "nodejs": "/usr/bin/nodejs",
			"go": "/usr/local/go/bin/go", "java": "/usr/bin/java", "perl": "/usr/bin/perl",
		},
		outputs: map[string]fakeProbeOutput{
			"/bin/sh":                {out: "sh: 0: Illegal option --\n", err: errors.New("exit status 2")},
			"/usr/local/bin/python3": {out: "Python 3.12.1\n"},
			"/usr/bin/nodejs":        {hang: true},
			"/usr/local/go/bin/go":   {out: "go version go1.22.0 linux/amd64\n"},
			"/usr/bin/java":          {out: "openjdk version \"17.0.15\" 2025-04-15\n"},
			"/usr/bin/perl":          {out: "This is perl 5, version 36, subversion 0 (v5.36.0)"},
		},
		wantPathEnv: "/usr/local/bin:/usr/bin",
		wantEnv:     env,
		maxTimeout:  200 * time.Millisecond,
	}
	got := detectInterpreters(t.Context(), f.sys(), env, 200*time.Millisecond)
	want := []Interpreter{
		{"shell", "/bin/sh", ""},
		{"python", "/usr/local/bin/python3", "3.12.1"},
		{"node", "/usr/bin/nodejs", ""},
		{"go", "/usr/local/go/bin/go", "1.22.0"},
		{"java", "/usr/bin/java", "17.0.15"},
		{"perl", "/usr/bin/perl", "5.36.0"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("detectInterpreters: diff (-want +got)\n-%v\n+%v", want, got)
	}
	wantArgs := map[string][]string{
		"/bin/sh": {"--version"}, "/usr/local/bin/python3": {"--version"}, "/usr/bin/nodejs": {"--version"},
		"/usr/local/go/bin/go": {"version"}, "/usr/bin/java": {"-version"}, "/usr/bin/perl": {"--version"},
	}
	for path, args := range wantArgs {
		if !slices.Equal(f.calls[path], args) {
			t.Errorf("version args of %s: -want %q +got %q", path, args, f.calls[path])
		}
	}
}

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

// writeFakeInterpreter writes an executable /bin/sh script standing in for
// an interpreter and returns its path.
func writeFakeInterpreter(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeProbeOutput is one scripted version command result.
type fakeProbeOutput struct {
	out  string
	err  error
	hang bool // block until ctx is done, like a hung interpreter
}

// fakeProbeSys is a scripted machine: fixed paths that exist, a PATH map and
// version outputs. It fails the test when detection hands it a PATH or an
// environment other than expected, or a version command without a deadline.
type fakeProbeSys struct {
	t           *testing.T
	fixed       []string
	onPath      map[string]string
	outputs     map[string]fakeProbeOutput
	wantPathEnv string
	wantEnv     []string
	maxTimeout  time.Duration

	mu    sync.Mutex
	calls map[string][]string // path -> args it was run with
}

func (f *fakeProbeSys) sys() probeSys {
	return probeSys{lookPath: f.lookPath, isExecutable: f.isExecutable, runVersion: f.runVersion}
}

func (f *fakeProbeSys) lookPath(name, pathEnv string) (string, error) {
	if pathEnv != f.wantPathEnv {
		f.t.Errorf("lookPath(%q) searched PATH %q, want %q", name, pathEnv, f.wantPathEnv)
	}
	if p, ok := f.onPath[name]; ok {
		return p, nil
	}
	return "", errInterpreterNotFound
}

func (f *fakeProbeSys) isExecutable(path string) bool { return slices.Contains(f.fixed, path) }

func (f *fakeProbeSys) runVersion(ctx context.Context, path string, args, env []string) ([]byte, error) {
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > f.maxTimeout {
		f.t.Errorf("runVersion(%s): deadline %v (set=%v), want one within %v", path, deadline, ok, f.maxTimeout)
	}
	if !slices.Equal(env, f.wantEnv) {
		f.t.Errorf("runVersion(%s): env -want %q +got %q", path, f.wantEnv, env)
	}
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string][]string{}
	}
	f.calls[path] = args
	f.mu.Unlock()
	res, ok := f.outputs[path]
	if !ok {
		f.t.Errorf("runVersion(%s): unexpected probe", path)
	}
	if res.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return []byte(res.out), res.err
}
