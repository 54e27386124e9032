package main

// Real root filesystems: the agent binary alone in an empty directory (what
// a distroless image gives it) and a debootstrapped Debian with python3 (what
// a stock interpreter image gives it), entered with chroot(8). Needs root.

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// rootfsDebianPath is the PATH of Debian-based images (docker's default).
const rootfsDebianPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// rootfsAllowedModules are the only modules the binary may contain (STYLE:
// pgx, amqp091-go, yaml/v3 and what they pull in).
var rootfsAllowedModules = []string{
	"github.com/jackc/pgx/v5", "github.com/jackc/puddle/v2", "github.com/jackc/pgpassfile",
	"github.com/jackc/pgservicefile", "golang.org/x/sync", "golang.org/x/text",
	"github.com/rabbitmq/amqp091-go", "go.yaml.in/yaml/v3",
}

func rootfsRequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("root filesystem tests need root (chroot, mount); CI runs as root")
	}
}

// rootfsResult is one finished command.
type rootfsResult struct {
	code           int
	stdout, stderr string
}

// rootfsRun runs name args with env and returns its exit code and output.
func rootfsRun(t *testing.T, env []string, name string, args ...string) rootfsResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	return rootfsExec(t, cmd)
}

// rootfsExec runs cmd to completion; a failure to start at all fails the test.
func rootfsExec(t *testing.T, cmd *exec.Cmd) rootfsResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return rootfsResult{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

func TestAgentBinaryIsStatic(t *testing.T) {
	bin := buildAgent(t)
	fileBin, err := exec.LookPath("file")
	if err != nil {
		t.Fatal("file(1) is missing; run scripts/ci-deps.sh")
	}
	if r := rootfsRun(t, os.Environ(), fileBin, bin); !strings.Contains(r.stdout, "statically linked") {
		t.Errorf("file: want statically linked, got %q", r.stdout)
	}
	if r := rootfsRun(t, os.Environ(), "ldd", bin); !strings.Contains(r.stdout+r.stderr, "not a dynamic executable") {
		t.Errorf("ldd: want 'not a dynamic executable', got %q %q", r.stdout, r.stderr)
	}
	r := rootfsRun(t, os.Environ(), "go", "version", "-m", bin)
	if r.code != 0 {
		t.Fatalf("go version -m: %s", r.stderr)
	}
	var settings []string
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "dep" && !slices.Contains(rootfsAllowedModules, f[1]):
			t.Errorf("module %s is not allowed in the binary", f[1])
		case len(f) >= 2 && f[0] == "build":
			settings = append(settings, f[1])
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath=true"} {
		if !slices.Contains(settings, want) {
			t.Errorf("build setting %s missing from %v", want, settings)
		}
	}
}

// TestRootfsDistroless runs the agent in a root filesystem that holds nothing
// but the binary, passwd/group and /tmp: no shell, no which, no libc.
func TestRootfsDistroless(t *testing.T) {
	rootfsRequireRoot(t)
	bin := buildAgent(t)
	root := t.TempDir()
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:1000:1000:nonroot:/home/nonroot:/sbin/nologin\n",
		"etc/group":  "root:x:0:\nnonroot:x:1000:\n",
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"tmp", "vol"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, d), 0o1777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	packagingCopyFile(t, bin, filepath.Join(root, "attune-sensor-agent"), 0o755)

	var inside []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			inside = append(inside, rel)
		}
		return err
	})
	slices.Sort(inside)
	if want := []string{"attune-sensor-agent", "etc/group", "etc/passwd"}; !slices.Equal(inside, want) {
		t.Fatalf("root filesystem holds %v, want only %v", inside, want)
	}

	env := []string{rootfsDebianPath, "HOME=/tmp"}
	users := map[string][]string{"root": {root}, "uid 1000": {"--userspec=1000:1000", root}}
	// Whatever the CLI does, the binary must start: chroot exits 126/127 when it cannot exec.
	for who, pre := range users {
		r := rootfsRun(t, env, "chroot", append(pre, "/attune-sensor-agent", "--version")...)
		if r.code == 126 || r.code == 127 || strings.HasPrefix(r.stderr, "chroot:") {
			t.Fatalf("as %s: the agent does not even start in an empty root filesystem: %d %s", who, r.code, r.stderr)
		}
	}

	for who, pre := range users {
		t.Run(who, func(t *testing.T) {
			r := rootfsRun(t, env, "chroot", append(pre, "/attune-sensor-agent", "--version")...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "attune-sensor-agent 0.0.0-test\n") {
				t.Errorf("--version: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
			// MERGE DEPENDENCY: the report text is the detect helper's (CONTRACT §2).
			r = rootfsRun(t, env, "chroot", append(pre, "/attune-sensor-agent", "--detect-only")...)
			if r.code != 0 || !strings.Contains(r.stdout, "No runtimes detected!\n") ||
				!strings.HasSuffix(strings.TrimRight(r.stdout, "\n"), "ATTUNE_SENSOR_RUNTIMES=") {
				t.Errorf("--detect-only: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
			// The probe works without a shell and reports one line.
			r = rootfsRun(t, env, "chroot", append(pre, "/attune-sensor-agent", "healthcheck")...)
			want := "no status file at /tmp/attune-sensor-agent.status.json (agent not started or not registered yet)\n"
			if r.code != 1 || r.stderr != want {
				t.Errorf("healthcheck: exit %d, stderr %q, want 1 and %q", r.code, r.stderr, want)
			}
		})
	}
	// The init image's job, in a root filesystem without /proc: os.Executable
	// fails there and install falls back to argv[0].
	r := rootfsRun(t, env, "chroot", root, "/attune-sensor-agent", "install", "/vol")
	if r.code != 0 {
		t.Fatalf("install inside the empty root filesystem: exit %d: %s", r.code, r.stderr)
	}
	got, err := os.ReadFile(filepath.Join(root, "vol", "attune-sensor-agent"))
	want, _ := os.ReadFile(bin)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("installed copy differs from the binary (%v)", err)
	}
}

// rootfsStock returns the cached bookworm+python3 root filesystem, building
// it with scripts/rootfs.sh on first use (about a minute, needs a mirror).
func rootfsStock(t *testing.T) string {
	t.Helper()
	rootfsRequireRoot(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "scripts/rootfs.sh", "bookworm-python")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cannot build the stock root filesystem (needs root, debootstrap from scripts/ci-deps.sh, and a reachable Debian mirror; set ATTUNE_ROOTFS_MIRROR): %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// rootfsOverlay is a writable view of a cached root filesystem: an overlay
// mounted afresh, in a private mount namespace, for every command, so the
// cache is never modified and no mount outlives its command.
type rootfsOverlay struct {
	lower, upper, work, merged string
}

func newRootfsOverlay(t *testing.T, lower string) rootfsOverlay {
	t.Helper()
	dir := t.TempDir()
	o := rootfsOverlay{lower, filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")}
	for _, d := range []string{o.upper, o.work, o.merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// command returns the command that mounts the overlay and then runs args,
// where "{root}" in args stands for the merged directory.
func (o rootfsOverlay) command(ctx context.Context, args ...string) *exec.Cmd {
	script := `mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4" || exit 125; shift 4; exec "$@"`
	full := []string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", o.lower, o.upper, o.work, o.merged}
	for _, a := range args {
		full = append(full, strings.ReplaceAll(a, "{root}", o.merged))
	}
	return exec.CommandContext(ctx, "unshare", full...)
}

func (o rootfsOverlay) run(t *testing.T, env []string, args ...string) rootfsResult {
	t.Helper()
	cmd := o.command(t.Context(), args...)
	cmd.Env = env
	r := rootfsExec(t, cmd)
	if r.code == 125 {
		t.Fatalf("overlay mount failed (needs root, mount namespaces and overlayfs): %s", r.stderr)
	}
	return r
}

// rootfsInstallAgent copies the agent into the overlay with its own install
// subcommand, as the init container does with the shared volume.
func rootfsInstallAgent(t *testing.T, o rootfsOverlay, bin string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(o.upper, "opt", "attune", "agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := o.run(t, os.Environ(), bin, "install", "{root}/opt/attune/agent"); r.code != 0 {
		t.Fatalf("install into the stock root filesystem: exit %d: %s", r.code, r.stderr)
	}
}

func TestRootfsStockImage(t *testing.T) {
	lower := rootfsStock(t)
	bin := buildAgent(t)
	o := newRootfsOverlay(t, lower)
	rootfsInstallAgent(t, o, bin)
	env := []string{rootfsDebianPath, "HOME=/root", "LANG=C.UTF-8"}

	r := o.run(t, env, "chroot", "{root}", "/opt/attune/agent/attune-sensor-agent", "--version")
	version, err := os.ReadFile(filepath.Join(o.upper, "opt/attune/agent/attune-sensor-agent.version"))
	if err != nil || r.code != 0 || r.stdout != string(version) {
		t.Errorf("--version %q (exit %d) must equal the installed .version file %q (%v)", r.stdout, r.code, version, err)
	}
	// MERGE DEPENDENCY: the report format is the detect helper's (CONTRACT §2).
	r = o.run(t, env, "chroot", "{root}", "/opt/attune/agent/attune-sensor-agent", "--detect-only")
	if r.code != 0 {
		t.Fatalf("--detect-only: exit %d: %s", r.code, r.stderr)
	}
	for _, re := range []string{
		`(?m)^  ✓ shell      /bin/bash \(5\.2\.\d+\)$`,
		`(?m)^  ✓ python     /usr/bin/python3 \(3\.11\.\d+\)$`,
		// perl-base is Essential in Debian: every Debian-based image has perl.
		`(?m)^  ✓ perl       /usr/bin/perl \(5\.36\.\d+\)$`,
		`(?m)^ATTUNE_SENSOR_RUNTIMES=shell,python,perl$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("--detect-only report does not match %s:\n%s", re, r.stdout)
		}
	}
	// The cache itself is untouched: the agent landed in the overlay only.
	if _, err := os.Stat(filepath.Join(lower, "opt/attune/agent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the cached root filesystem was modified (%s/opt/attune/agent exists)", lower)
	}
}

// TestRootfsScriptCache checks scripts/rootfs.sh's cache rules with a fake
// debootstrap first on PATH: a failed build leaves nothing behind, a
// directory without the completion marker is never reused, and a completed
// one is reused without building again.
func TestRootfsScriptCache(t *testing.T) {
	rootfsRequireRoot(t)
	cache, fake := t.TempDir(), t.TempDir()
	writeFake := func(body string) {
		t.Helper()
		script := "#!/bin/sh\n# args: --variant=minbase --include=python3 bookworm TARGET MIRROR\n" + body
		if err := os.WriteFile(filepath.Join(fake, "debootstrap"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"), "ATTUNE_ROOTFS_CACHE="+cache)
	final := filepath.Join(cache, "rootfs-bookworm-python")
	listCache := func() []string {
		entries, _ := os.ReadDir(cache)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}

	if r := rootfsRun(t, env, "sh", "scripts/rootfs.sh", "bogus"); r.code != 2 {
		t.Errorf("unknown root filesystem name: want exit 2, got %d", r.code)
	}
	// A half-built directory from an older run, and a build that dies midway.
	if err := os.MkdirAll(filepath.Join(final, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFake(`touch "$4/half-built"; echo "E: Failed getting release file" >&2; exit 1` + "\n")
	r := rootfsRun(t, env, "sh", "scripts/rootfs.sh", "bookworm-python")
	if r.code != 1 || !strings.Contains(r.stderr, "E: Failed getting release file") || !strings.Contains(r.stderr, "no Debian mirror reachable?") {
		t.Errorf("failed build: want exit 1 with the debootstrap error and a hint, got %d %q", r.code, r.stderr)
	}
	if got := listCache(); !slices.Equal(got, []string{".lock-bookworm-python"}) {
		t.Errorf("after a failed build the cache holds %v; want no half-built root filesystem", got)
	}

	writeFake(`mkdir -p "$4/usr/bin" && echo built > "$4/usr/bin/python3"` + "\n")
	r = rootfsRun(t, env, "sh", "scripts/rootfs.sh", "bookworm-python")
	if r.code != 0 || r.stdout != final+"\n" {
		t.Fatalf("build: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(final, ".attune-rootfs-complete")); err != nil {
		t.Errorf("completion marker missing: %v", err)
	}
	// The second run must not build: a failing debootstrap proves it is not called.
	writeFake("exit 1\n")
	if r := rootfsRun(t, env, "sh", "scripts/rootfs.sh", "bookworm-python"); r.code != 0 || r.stdout != final+"\n" {
		t.Errorf("cached run: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
