package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

// agentBinaryName is the file name the agent installs itself under; compose,
// Kubernetes and the Rust init-agent all expect /opt/attune/agent/<this>.
const agentBinaryName = "attune-sensor-agent"

// buildCommit can be stamped with -ldflags "-X main.buildCommit=<sha>" by
// builds that have no .git directory to read (a Docker build context without
// .git); otherwise versionText falls back to the VCS stamp of the Go toolchain.
var buildCommit string

// Sentinel errors of `install`, so the CLI and the tests can tell an operator
// mistake (wrong mount) from an I/O failure without matching strings.
var (
	ErrInstallDirMissing  = errors.New("install directory does not exist")
	ErrInstallDirNotDir   = errors.New("install path is not a directory")
	ErrInstallDirReadOnly = errors.New("install directory is read-only")
)

// versionText is the `--version` output, also written to
// <dir>/attune-sensor-agent.version by `install`. The first line keeps the
// reference's clap format (`<name> <version>`) so scripts that read the
// Rust agent's .version file keep working; the commit, Go and platform lines
// let an operator tell which build, and which architecture, sits in a volume.
func versionText() string {
	return fmt.Sprintf("%s %s\ncommit: %s\ngo: %s\nplatform: %s/%s\n",
		agentBinaryName, version, versionCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// versionCommit returns the stamped commit, else the toolchain's vcs.revision
// (with "-dirty" when the tree was modified), else "unknown".
func versionCommit() string {
	if buildCommit != "" {
		return buildCommit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// runInstall implements `attune-sensor-agent install DIR`: the whole job of
// an init container, done by the agent itself so that the init image can be
// FROM scratch (no cp, no chmod, no shell). Exit codes: 0 done, 1 failed,
// 2 usage error.
func runInstall(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("install", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s install DIR\n\n"+
			"Copy this executable to DIR/%s (atomically, mode 0555) and write\n"+
			"DIR/%s.version. DIR must exist (the shared volume's mount point).\n",
			agentBinaryName, agentBinaryName, agentBinaryName)
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if flags.NArg() != 1 || flags.Arg(0) == "" {
		fmt.Fprintf(stderr, "install: expected exactly one argument DIR, got %d\n", flags.NArg())
		flags.Usage()
		return exitUsage
	}
	dir := flags.Arg(0)
	src, err := installSourcePath()
	if err != nil {
		fmt.Fprintf(stderr, "install: %v\n", err)
		return exitFailure
	}
	if err := installAgent(src, dir, versionText()); err != nil {
		fmt.Fprintf(stderr, "install: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "installed %s %s to %s\n", agentBinaryName, version, filepath.Join(dir, agentBinaryName))
	return exitOK
}

// installSourcePath finds the running executable. os.Executable needs /proc;
// an init container always has it, but a bare chroot may not, so an absolute
// or relative argv[0] path is the fallback.
func installSourcePath() (string, error) {
	exe, err := os.Executable()
	if err == nil {
		return exe, nil
	}
	if strings.ContainsRune(os.Args[0], '/') {
		if abs, aerr := filepath.Abs(os.Args[0]); aerr == nil {
			return abs, nil
		}
	}
	return "", fmt.Errorf("locate own executable: %w", err)
}

// installAgent copies the file at src to dir/attune-sensor-agent and writes
// dir/attune-sensor-agent.version with versionText. Both files are replaced
// atomically, so a sensor container that starts while an init container is
// re-running never executes half a binary. It touches no other file in dir:
// in an Attune stack the same volume holds the Rust attune-agent.
func installAgent(src, dir, versionText string) error {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s (mount the shared volume there, or create it)", ErrInstallDirMissing, dir)
	case err != nil:
		return fmt.Errorf("inspect install directory %s: %w", dir, err)
	case !info.IsDir():
		return fmt.Errorf("%w: %s", ErrInstallDirNotDir, dir)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open own executable %s: %w", src, err)
	}
	defer in.Close()

	target := filepath.Join(dir, agentBinaryName)
	if err := atomicReplaceFile(target, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	}, 0o555, true); err != nil {
		return classifyInstallError(dir, err)
	}
	versionFile := target + ".version"
	if err := atomicReplaceFile(versionFile, func(w io.Writer) error {
		_, err := io.WriteString(w, versionText)
		return err
	}, 0o644, true); err != nil {
		return classifyInstallError(dir, err)
	}
	return nil
}

// classifyInstallError turns a read-only file system, the usual mistake of
// mounting the shared volume `:ro` in the init container, into
// ErrInstallDirReadOnly with a hint.
func classifyInstallError(dir string, err error) error {
	if errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%w: %s (the init container must mount the volume read-write): %w", ErrInstallDirReadOnly, dir, err)
	}
	return fmt.Errorf("install into %s: %w", dir, err)
}

// atomicReplaceFile writes the content produced by fill to a temporary file
// in path's directory, fsyncs it, gives it mode, and renames it over path.
// Readers see the old file or the new one, never a partial one. With syncDir
// the directory is fsynced too, so the rename survives a crash (wanted for
// the installed binary, not for the status file rewritten every heartbeat).
func atomicReplaceFile(path string, fill func(io.Writer) error, mode os.FileMode, syncDir bool) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	if syncDir {
		if d, derr := os.Open(dir); derr == nil {
			// Best effort: some file systems refuse fsync on a directory.
			d.Sync()
			d.Close()
		}
	}
	return nil
}
