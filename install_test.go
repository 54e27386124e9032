package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestVersionText(t *testing.T) {
	lines := strings.Split(versionText(), "\n")
	if len(lines) != 5 || lines[4] != "" {
		t.Fatalf("versionText: want 4 newline-terminated lines, got %q", versionText())
	}
	// clap's `<name> <version>` is the reference's first line.
	if want := "attune-sensor-agent " + version; lines[0] != want {
		t.Errorf("line 1: want %q, got %q", want, lines[0])
	}
	if !strings.HasPrefix(lines[1], "commit: ") || len(lines[1]) == len("commit: ") {
		t.Errorf("line 2: want a commit, got %q", lines[1])
	}
	if want := "go: " + runtime.Version(); lines[2] != want {
		t.Errorf("line 3: want %q, got %q", want, lines[2])
	}
	if want := "platform: " + runtime.GOOS + "/" + runtime.GOARCH; lines[3] != want {
		t.Errorf("line 4: want %q, got %q", want, lines[3])
	}
}

func TestVersionCommitStamped(t *testing.T) {
	old := buildCommit
	t.Cleanup(func() { buildCommit = old })
	buildCommit = "0123abcd"
	if got := versionCommit(); got != "0123abcd" {
		t.Errorf("stamped commit: want 0123abcd, got %q", got)
	}
	if !strings.Contains(versionText(), "\ncommit: 0123abcd\n") {
		t.Errorf("versionText does not carry the stamped commit: %q", versionText())
	}
}

func TestRunInstallUsage(t *testing.T) {
	cases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"no argument", nil, 2, "install: expected exactly one argument DIR, got 0\n"},
		{"two arguments", []string{"/a", "/b"}, 2, "install: expected exactly one argument DIR, got 2\n"},
		{"empty argument", []string{""}, 2, "install: expected exactly one argument DIR, got 1\n"},
		{"unknown flag", []string{"--force", "/a"}, 2, "flag provided but not defined: -force\n"},
		{"help", []string{"--help"}, 0, "usage: attune-sensor-agent install DIR\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runInstall(tc.args, &stdout, &stderr); code != tc.wantCode {
				t.Errorf("exit code: want %d, got %d", tc.wantCode, code)
			}
			if !strings.HasPrefix(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr: want prefix %q, got %q", tc.wantStderr, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: want nothing, got %q", stdout.String())
			}
		})
	}
}

// installFileState is what "untouched" means for a neighbour file.
type installFileState struct {
	content string
	mode    os.FileMode
	mtime   time.Time
}

func installStateOf(t *testing.T, path string) installFileState {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return installFileState{string(b), info.Mode(), info.ModTime()}
}

// TestRunInstall installs the running test binary (the "agent") into a
// directory that already holds the Rust agent's files, twice, and checks
// the copy, the modes, the .version file and that nothing else changed.
func TestRunInstall(t *testing.T) {
	dir := t.TempDir()
	neighbours := map[string]string{
		"attune-agent":         "rust worker agent",
		"attune-agent.version": "attune-agent 0.9.0\n",
		"attune":               "cli",
	}
	for name, content := range neighbours {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A read-only binary from an earlier install must be replaced too.
	if err := os.WriteFile(filepath.Join(dir, "attune-sensor-agent"), []byte("old rust sensor agent"), 0o555); err != nil {
		t.Fatal(err)
	}
	before := map[string]installFileState{}
	for name := range neighbours {
		before[name] = installStateOf(t, filepath.Join(dir, name))
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}

	for round := 1; round <= 2; round++ {
		var stdout, stderr bytes.Buffer
		if code := runInstall([]string{dir}, &stdout, &stderr); code != 0 {
			t.Fatalf("round %d: exit %d: %s", round, code, stderr.String())
		}
		wantOut := "installed attune-sensor-agent " + version + " to " + filepath.Join(dir, "attune-sensor-agent") + "\n"
		if stdout.String() != wantOut || stderr.Len() != 0 {
			t.Errorf("round %d: stdout %q (want %q), stderr %q", round, stdout.String(), wantOut, stderr.String())
		}
		got, err := os.ReadFile(filepath.Join(dir, "attune-sensor-agent"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("round %d: installed binary differs from the running executable (%d vs %d bytes)", round, len(got), len(want))
		}
		info, err := os.Stat(filepath.Join(dir, "attune-sensor-agent"))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o555 {
			t.Errorf("round %d: binary mode: want 0555, got %#o", round, info.Mode().Perm())
		}
		v, err := os.ReadFile(filepath.Join(dir, "attune-sensor-agent.version"))
		if err != nil {
			t.Fatal(err)
		}
		if string(v) != versionText() {
			t.Errorf("round %d: .version: want %q, got %q", round, versionText(), v)
		}
		for name := range neighbours {
			if after := installStateOf(t, filepath.Join(dir, name)); after != before[name] {
				t.Errorf("round %d: %s was touched: before %+v, after %+v", round, name, before[name], after)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		wantNames := []string{"attune", "attune-agent", "attune-agent.version", "attune-sensor-agent", "attune-sensor-agent.version"}
		if strings.Join(names, ",") != strings.Join(wantNames, ",") {
			t.Errorf("round %d: directory holds %v, want %v (temporary files left behind?)", round, names, wantNames)
		}
	}
}

func TestInstallAgentErrors(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	blocked := filepath.Join(dir, "blocked")
	if err := os.MkdirAll(filepath.Join(blocked, "attune-sensor-agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		src, dir string
		wantErr  error
		wantText string
	}{
		{"missing directory", exe, filepath.Join(dir, "nope"), ErrInstallDirMissing, "mount the shared volume there"},
		{"file where the directory should be", exe, file, ErrInstallDirNotDir, file},
		{"missing source", filepath.Join(dir, "no-such-exe"), dir, nil, "open own executable"},
		{"a directory in the binary's place", exe, blocked, nil, "rename into place"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := installAgent(tc.src, tc.dir, "v\n")
			if err == nil {
				t.Fatal("want an error, got nil")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("want %v, got %v", tc.wantErr, err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not mention %q", err, tc.wantText)
			}
		})
	}
	// Through the command: a failure exits 1 with one line on stderr.
	var stdout, stderr bytes.Buffer
	if code := runInstall([]string{filepath.Join(dir, "nope")}, &stdout, &stderr); code != 1 {
		t.Errorf("missing directory: exit code want 1, got %d", code)
	}
	if strings.Count(stderr.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), "install: install directory does not exist: ") {
		t.Errorf("missing directory: stderr %q", stderr.String())
	}
}

// TestRunInstallReadOnlyDir mounts a read-only tmpfs in a private mount
// namespace (we run as root, so a chmod 0555 directory would not stop us) and
// runs the test binary as `install` into it.
func TestRunInstallReadOnlyDir(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("unshare (util-linux) is needed for the read-only install test; run scripts/ci-deps.sh")
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), unshare, "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o ro,size=1m tmpfs "$1" && exec "$2" "$1"`, "sh", dir, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=install")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("install into a read-only mount: want exit 1, got %v; stderr %q", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "mount:") {
		t.Fatalf("could not set up the read-only mount (need root and mount namespaces): %s", stderr.String())
	}
	want := "install: install directory is read-only: " + dir + " (the init container must mount the volume read-write)"
	if !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("stderr: want one line starting %q, got %q", want, stderr.String())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the underlying directory was written to: %v", entries)
	}
}

func init() {
	// install: the test binary plays `attune-sensor-agent install DIR`.
	testHelpers["install"] = func() int {
		return runInstall(os.Args[1:], os.Stdout, os.Stderr)
	}
}
