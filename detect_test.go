package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
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
