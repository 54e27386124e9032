package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Interpreter is one detected runtime: canonical name, resolved path and the
// version read from its version command ("" when it could not be read).
type Interpreter struct {
	Name    string
	Path    string
	Version string
}

// MarshalJSON writes the {name, path, version} object the worker's
// detected_interpreters capability and the --json report share; an unread
// version is null, as the reference's Option<String> serialises.
func (i Interpreter) MarshalJSON() ([]byte, error) {
	var version *string
	if i.Version != "" {
		version = &i.Version
	}
	return json.Marshal(struct {
		Name    string  `json:"name"`
		Path    string  `json:"path"`
		Version *string `json:"version"`
	}{i.Name, i.Path, version})
}

// defaultProbeTimeout bounds one version command, so a hung interpreter can
// delay start-up by at most this much and never hang the agent.
const defaultProbeTimeout = 5 * time.Second

// probeOutputLimit caps what is kept of each stream of a version command: the
// version is in the first line, and a flooding binary must not eat memory.
const probeOutputLimit = 64 << 10

// probeWaitDelay is how long a finished or killed probe may keep its pipes
// open (through a background child) before they are closed under it.
const probeWaitDelay = 200 * time.Millisecond

// errInterpreterNotFound means no executable of that name is on PATH.
var errInterpreterNotFound = errors.New("interpreter not found on PATH")

// versionStyle selects how a candidate's version output is parsed.
type versionStyle int

const (
	versionSemverLike versionStyle = iota
	versionJavaStyle
)

// runtimeCandidate is one runtime the agent looks for: its canonical name,
// the binaries tried in order, and how to ask for and read its version.
type runtimeCandidate struct {
	name        string
	binaries    []string
	versionArgs []string
	style       versionStyle
}

// runtimeCandidates is the reference's probe order (CONTRACT §2); reports,
// the CSV and the capabilities all follow it. native is never probed.
var runtimeCandidates = []runtimeCandidate{
	{"shell", []string{"bash", "sh"}, []string{"--version"}, versionSemverLike},
	{"python", []string{"python3", "python"}, []string{"--version"}, versionSemverLike},
	{"node", []string{"node", "nodejs"}, []string{"--version"}, versionSemverLike},
	{"ruby", []string{"ruby"}, []string{"--version"}, versionSemverLike},
	{"go", []string{"go"}, []string{"version"}, versionSemverLike},
	{"java", []string{"java"}, []string{"-version"}, versionJavaStyle},
	{"r", []string{"Rscript"}, []string{"--version"}, versionSemverLike},
	{"perl", []string{"perl"}, []string{"--version"}, versionSemverLike},
}

// probeSys is the OS surface detection uses, as function fields (tableflip's
// pattern) so tests can swap a PATH, a filesystem or a version command
// without touching the machine.
type probeSys struct {
	// lookPath finds an executable named name in the PATH value pathEnv.
	lookPath func(name, pathEnv string) (string, error)
	// isExecutable reports whether a fixed path (/bin/bash, /bin/sh) is usable.
	isExecutable func(path string) bool
	// runVersion runs path with args and exactly env, and returns stdout
	// followed by stderr; it must stop when ctx is done.
	runVersion func(ctx context.Context, path string, args, env []string) ([]byte, error)
}

// realProbeSys is the production probeSys.
var realProbeSys = probeSys{
	lookPath:     lookPathInDirs,
	isExecutable: isExecutableFile,
	runVersion:   runVersionCommand,
}

// detectInterpreters probes every candidate concurrently, each version
// command under its own timeout, and returns what was found in probe order.
// A runtime whose binary resolves counts even when its version cannot be
// read. env is the child baseline environment: its PATH is searched and it is
// the whole environment of every version command, so no agent secret leaks.
func detectInterpreters(ctx context.Context, sys probeSys, env []string, timeout time.Duration) []Interpreter {
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	if env == nil {
		env = []string{} // a nil Env would make os/exec inherit the agent's environment
	}
	pathEnv := probeEnvValue(env, "PATH")
	found := make([]*Interpreter, len(runtimeCandidates))
	var wg sync.WaitGroup
	for i, c := range runtimeCandidates {
		wg.Go(func() {
			path, ok := resolveCandidate(sys, c, pathEnv)
			if !ok {
				return
			}
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			found[i] = &Interpreter{Name: c.name, Path: path, Version: probeVersion(pctx, sys, c, path, env)}
		})
	}
	wg.Wait()
	out := make([]Interpreter, 0, len(found))
	for _, in := range found {
		if in != nil {
			out = append(out, *in)
		}
	}
	return out
}

// resolveCandidate returns the first binary of c that resolves. Like the
// reference, bash and sh are first looked for at /bin/<name> and only then on
// PATH, so the shell runtime is /bin/bash whenever it exists, whatever PATH
// says; unlike the reference the PATH search is in-process (no `which`, no
// shell), so it works in images that have neither.
func resolveCandidate(sys probeSys, c runtimeCandidate, pathEnv string) (string, bool) {
	for _, bin := range c.binaries {
		if bin == "bash" || bin == "sh" {
			if fixed := "/bin/" + bin; sys.isExecutable(fixed) {
				return fixed, true
			}
		}
		if p, err := sys.lookPath(bin, pathEnv); err == nil {
			return p, true
		}
	}
	return "", false
}

// probeVersion runs the candidate's version command and parses its output.
// The exit status is ignored, as in the reference, which parses whatever was
// printed; a probe that times out or cannot start yields "".
func probeVersion(ctx context.Context, sys probeSys, c runtimeCandidate, path string, env []string) string {
	out, _ := sys.runVersion(ctx, path, c.versionArgs, env)
	if ctx.Err() != nil {
		return ""
	}
	text := strings.ToValidUTF8(string(out), "\uFFFD")
	if c.style == versionJavaStyle {
		return parseJavaVersion(text)
	}
	return parseSemverLikeVersion(text)
}

// probeEnvValue returns the value of name in env (os.Environ form), first
// occurrence winning as in baselineEnv.
func probeEnvValue(env []string, name string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// lookPathInDirs is the in-process `which`: the first PATH directory holding
// an executable regular file called name. Empty and relative PATH entries are
// skipped, so a resolved path is always absolute and never depends on the
// agent's working directory.
func lookPathInDirs(name, pathEnv string) (string, error) {
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		if p := filepath.Join(dir, name); isExecutableFile(p) {
			return p, nil
		}
	}
	return "", errInterpreterNotFound
}

// isExecutableFile reports whether path (symlinks followed) is a regular file
// with an execute bit set, which is what `which` accepts.
func isExecutableFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// runVersionCommand runs one version command with exactly env, in its own
// process group so that a timeout kills the binary and anything it started;
// WaitDelay stops a background child that keeps our pipes open from holding
// the probe past its deadline.
func runVersionCommand(ctx context.Context, path string, args, env []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	if env == nil {
		env = []string{}
	}
	cmd.Env = env
	var stdout, stderr probeOutput
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killProbeGroup(cmd.Process.Pid) }
	cmd.WaitDelay = probeWaitDelay
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		_ = killProbeGroup(cmd.Process.Pid) // the pipe holder is still alive in the group
	}
	out := append(stdout.buf.Bytes(), stderr.buf.Bytes()...)
	return out, err
}

// killProbeGroup sends SIGKILL to the probe's process group; a group that is
// already gone is not an error.
func killProbeGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// probeOutput keeps the first probeOutputLimit bytes written to it and
// silently drops the rest, so the child never blocks on a full pipe.
type probeOutput struct {
	buf bytes.Buffer
}

func (p *probeOutput) Write(b []byte) (int, error) {
	if room := probeOutputLimit - p.buf.Len(); room > 0 {
		p.buf.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

// The version patterns of CONTRACT §2. The reference's regex crate makes \d
// and \s Unicode-aware, RE2's are ASCII-only, so the classes are spelled out
// to find the same first match.
var (
	semverLikeVersionRe = regexp.MustCompile(`(?:v|go)?(\p{Nd}+\.\p{Nd}+(?:\.\p{Nd}+)?)`)
	javaVersionRe       = regexp.MustCompile(`version[\s\v\x{85}\p{Z}]+"([^"]+)"`)
)

// parseSemverLikeVersion returns the first dotted version in out ("" if none):
// "Python 3.12.1" gives 3.12.1, "go version go1.22.0" gives 1.22.0.
func parseSemverLikeVersion(out string) string {
	if m := semverLikeVersionRe.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// parseJavaVersion returns the quoted version of `java -version`
// (`openjdk version "17.0.15"` gives 17.0.15), else the semver-like match.
func parseJavaVersion(out string) string {
	if m := javaVersionRe.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return parseSemverLikeVersion(out)
}

// runtimeAliases maps every accepted spelling to its canonical runtime name
// (the reference's alias table); names not listed stay as they are.
var runtimeAliases = map[string]string{
	"node": "node", "nodejs": "node", "node.js": "node",
	"python": "python", "python3": "python",
	"shell": "shell", "bash": "shell", "sh": "shell",
	"native": "native", "builtin": "native", "standalone": "native",
	"ruby": "ruby", "rb": "ruby",
	"go": "go", "golang": "go",
	"java": "java", "jdk": "java", "openjdk": "java",
	"perl": "perl", "perl5": "perl",
	"r": "r", "rscript": "r",
}

// normalizeRuntimeName trims and lower-cases s (ASCII only, as the
// reference) and maps an alias to its canonical name, so that "nodejs",
// "Node.js" and "node" in an override, a runtime row or an alias list all
// compare equal.
func normalizeRuntimeName(s string) string {
	lower := strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, strings.TrimSpace(s))
	if canonical, ok := runtimeAliases[lower]; ok {
		return canonical
	}
	return lower
}

// runtimesOverrideEnv is the variable that restricts (when set) or records
// (when the agent sets it) the runtimes this agent serves.
const runtimesOverrideEnv = "ATTUNE_SENSOR_RUNTIMES"

// runtimeSelection is the outcome of applying ATTUNE_SENSOR_RUNTIMES to the
// detected interpreters.
type runtimeSelection struct {
	// Selected are the detected interpreters the agent serves, probe order.
	Selected []Interpreter
	// OverrideNames are the override's tokens, alias-normalised, empty ones
	// dropped, first occurrence kept; nil when the variable is unset. They
	// feed the `runtimes` capability.
	OverrideNames []string
	// SetEnv asks the caller to set the variable to EnvValue (the CSV of the
	// detected names): only when it was unset and something was found.
	SetEnv   bool
	EnvValue string
}

// selectRuntimes applies the override (CONTRACT §2) without touching the
// process environment, so the decision is a pure function the caller acts
// on. A set override, even empty, keeps only detected runtimes it names;
// tokens are alias-normalised before matching (an [agent] extension: the
// reference compared raw names, so `nodejs` never matched), and unknown names
// simply match nothing.
func selectRuntimes(detected []Interpreter, override string, overrideSet bool) runtimeSelection {
	if !overrideSet {
		sel := runtimeSelection{Selected: detected}
		if len(detected) > 0 {
			sel.SetEnv, sel.EnvValue = true, runtimeNamesCSV(detected)
		}
		return sel
	}
	names := []string{}
	want := map[string]bool{}
	for _, tok := range strings.Split(override, ",") {
		if n := normalizeRuntimeName(tok); n != "" && !want[n] {
			want[n] = true
			names = append(names, n)
		}
	}
	selected := []Interpreter{}
	for _, in := range detected {
		if want[normalizeRuntimeName(in.Name)] {
			selected = append(selected, in)
		}
	}
	return runtimeSelection{Selected: selected, OverrideNames: names}
}

// runtimeNamesCSV is the comma-separated list of names, in the given order,
// that the agent writes to ATTUNE_SENSOR_RUNTIMES and prints in its report.
func runtimeNamesCSV(rts []Interpreter) string {
	names := make([]string, len(rts))
	for i, in := range rts {
		names[i] = in.Name
	}
	return strings.Join(names, ",")
}
