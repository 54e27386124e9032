package main

import (
	"bufio"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Facts every deploy file must agree on.
const (
	deployAgentPath     = "/opt/attune/agent/attune-sensor-agent"
	deployInitImagePath = "/usr/local/bin/attune-sensor-agent"
	deployShutdownSecs  = 30 // sensor.shutdown_timeout the files set
)

var (
	deployInstallCommand     = []string{deployInitImagePath, "install", "/opt/attune/agent"}
	deployHealthcheckCommand = []string{deployAgentPath, "healthcheck"}
)

// dockerStage is one FROM block of the Dockerfile.
type dockerStage struct {
	name, base, platform string
	instructions         []string // joined continuation lines, comments dropped
}

// parseDockerfile splits a Dockerfile into its stages. Enough of the syntax
// for static checks: comments, line continuations, FROM [--platform] AS.
func parseDockerfile(t *testing.T, path string) (syntax string, stages []*dockerStage) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	if strings.HasPrefix(lines[0], "# syntax=") {
		syntax = strings.TrimPrefix(lines[0], "# syntax=")
	}
	var cur strings.Builder
	for _, line := range lines {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		instr := cur.String()
		cur.Reset()
		fields := strings.Fields(instr)
		if strings.EqualFold(fields[0], "FROM") {
			st := &dockerStage{}
			rest := fields[1:]
			if strings.HasPrefix(rest[0], "--platform=") {
				st.platform = strings.TrimPrefix(rest[0], "--platform=")
				rest = rest[1:]
			}
			st.base = rest[0]
			if len(rest) == 3 && strings.EqualFold(rest[1], "AS") {
				st.name = rest[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			stages = append(stages, &dockerStage{name: "<global>"})
		}
		stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, instr)
	}
	return syntax, stages
}

// dockerInstructions returns the arguments of every instruction named kind.
func (s *dockerStage) dockerInstructions(kind string) []string {
	var out []string
	for _, in := range s.instructions {
		if k, rest, _ := strings.Cut(in, " "); strings.EqualFold(k, kind) {
			out = append(out, strings.TrimSpace(rest))
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	syntax, stages := parseDockerfile(t, "Dockerfile")
	if syntax != "docker/dockerfile:1" {
		t.Errorf("first line: want `# syntax=docker/dockerfile:1`, got %q", syntax)
	}
	byName := map[string]*dockerStage{}
	var names []string
	for _, s := range stages {
		byName[s.name] = s
		names = append(names, s.name)
	}
	if want := []string{"builder", "agent-binary", "agent-init"}; !slices.Equal(names, want) {
		t.Fatalf("stages: want %v (agent-init last, the default target), got %v", want, names)
	}
	b := byName["builder"]
	if b.base != "golang:1.26" || b.platform != "$BUILDPLATFORM" {
		t.Errorf("builder: want FROM --platform=$BUILDPLATFORM golang:1.26, got platform %q base %q", b.platform, b.base)
	}
	var args []string
	for _, a := range b.dockerInstructions("ARG") {
		for _, f := range strings.Fields(a) {
			name, _, _ := strings.Cut(f, "=")
			args = append(args, name)
		}
	}
	for _, want := range []string{"TARGETOS", "TARGETARCH", "VERSION"} {
		if !slices.Contains(args, want) {
			t.Errorf("builder: ARG %s missing (have %v)", want, args)
		}
	}
	build := strings.Join(b.dockerInstructions("RUN"), "\n")
	for _, want := range []string{
		"--mount=type=cache,target=/go/pkg/mod",
		"--mount=type=cache,target=/root/.cache/go-build",
		"CGO_ENABLED=0", "GOOS=${TARGETOS}", "GOARCH=${TARGETARCH}", "-trimpath",
		`-ldflags "-s -w -X main.version=${VERSION}`,
		"-o /out/attune-sensor-agent",
	} {
		if !strings.Contains(build, want) {
			t.Errorf("builder RUN: %q missing", want)
		}
	}
	// Every -X main.NAME must name a package-level variable, or the stamp is silently lost.
	vars := deployPackageVars(t)
	for _, m := range regexp.MustCompile(`-X main\.(\w+)=`).FindAllStringSubmatch(build, -1) {
		if !vars[m[1]] {
			t.Errorf("-X main.%s: no package-level var %s in the package", m[1], m[1])
		}
	}

	for _, name := range []string{"agent-binary", "agent-init"} {
		s := byName[name]
		if s.base != "scratch" {
			t.Errorf("%s: want FROM scratch, got %s", name, s.base)
		}
		copies := s.dockerInstructions("COPY")
		if want := "--from=builder /out/attune-sensor-agent " + deployInitImagePath; !slices.Contains(copies, want) {
			t.Errorf("%s: want COPY %s, got %v", name, want, copies)
		}
		labels := strings.Join(s.dockerInstructions("LABEL"), " ")
		for _, want := range []string{`org.opencontainers.image.version="${VERSION}"`, `org.opencontainers.image.source="https://github.com/attune-system/attune-sensor-agent"`} {
			if !strings.Contains(labels, want) {
				t.Errorf("%s: label %s missing", name, want)
			}
		}
		if !slices.Contains(s.dockerInstructions("ARG"), "VERSION=0.0.0-dev") {
			t.Errorf("%s: the version label needs ARG VERSION in the stage", name)
		}
	}
	wantEntrypoints := map[string][]string{
		"agent-binary": {deployInitImagePath},
		"agent-init":   deployInstallCommand,
	}
	for name, want := range wantEntrypoints {
		eps := byName[name].dockerInstructions("ENTRYPOINT")
		if len(eps) != 1 {
			t.Fatalf("%s: want one ENTRYPOINT, got %v", name, eps)
		}
		var got []string
		if err := json.Unmarshal([]byte(eps[0]), &got); err != nil {
			t.Fatalf("%s: ENTRYPOINT must be exec form (JSON array; scratch has no shell): %v", name, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: ENTRYPOINT want %q, got %q", name, want, got)
		}
	}
	if _, err := exec.LookPath("docker"); err == nil {
		if out, err := exec.Command("docker", "buildx", "version").CombinedOutput(); err != nil {
			t.Logf("docker buildx is unavailable here (%s); the Dockerfile is checked statically only", strings.TrimSpace(string(out)))
		}
	}
}

// deployPackageVars lists the package-level variables of the package's
// non-test files (the names -ldflags -X can stamp).
func deployPackageVars(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.VAR {
				for _, sp := range g.Specs {
					for _, n := range sp.(*ast.ValueSpec).Names {
						vars[n.Name] = true
					}
				}
			}
		}
	}
	return vars
}

func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			rules = append(rules, l)
		}
	}
	// Exclude everything, re-include the module and sources, drop the tests:
	// .git and build output never reach the daemon.
	if want := []string{"*", "!go.mod", "!go.sum", "!*.go", "*_test.go"}; !slices.Equal(rules, want) {
		t.Errorf(".dockerignore rules: want %v, got %v", want, rules)
	}
	// The flat package is what `COPY *.go` assumes.
	dirs, err := filepath.Glob("*/*.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 0 {
		t.Errorf("Go files in subdirectories (%v) would be left out of the image build: update Dockerfile and .dockerignore", dirs)
	}
}

// deploySystemdUnit parses a unit file into section → key → values.
func deploySystemdUnit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			unit[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: malformed line %q", path, line)
			}
			unit[section][k] = append(unit[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return unit
}

func TestSystemdUnit(t *testing.T) {
	const path = "deploy/systemd/attune-sensor-agent.service"
	unit := deploySystemdUnit(t, path)
	svc := unit["Service"]
	want := map[string]string{
		"EnvironmentFile": "/etc/attune/sensor-agent.env",
		"ExecStart":       "/usr/local/bin/attune-sensor-agent",
		"KillMode":        "mixed",
		"KillSignal":      "SIGTERM",
		"Restart":         "on-failure",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"PrivateTmp":      "yes",
	}
	for k, v := range want {
		if got := svc[k]; len(got) != 1 || got[0] != v {
			t.Errorf("[Service] %s: want %q, got %q", k, v, got)
		}
	}
	stop, err := time.ParseDuration(strings.Join(svc["TimeoutStopSec"], ""))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if stop <= deployShutdownSecs*time.Second {
		t.Errorf("TimeoutStopSec %v must exceed sensor.shutdown_timeout %ds", stop, deployShutdownSecs)
	}
	// Interpreters with a JIT (node, java) die under MemoryDenyWriteExecute.
	if _, ok := svc["MemoryDenyWriteExecute"]; ok {
		t.Error("MemoryDenyWriteExecute breaks JIT interpreters; it must not be set")
	}
	if got := unit["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("[Install] WantedBy: %v", got)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing; run scripts/ci-deps.sh")
	}
	// verify insists that ExecStart exists: check a copy that points at /bin/true.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), filepath.Base(path))
	text := strings.Replace(string(b), "ExecStart=/usr/local/bin/attune-sensor-agent", "ExecStart=/bin/true", 1)
	if err := os.WriteFile(cp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(t.Context(), analyze, "verify", cp).CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v: %s", err, out)
	}
}

func TestSystemdEnvExample(t *testing.T) {
	b, err := os.ReadFile("deploy/systemd/attune-sensor-agent.env.example")
	if err != nil {
		t.Fatal(err)
	}
	nameRE := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	env := map[string]string{}
	for i, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || !nameRE.MatchString(k) || strings.ContainsAny(v, `"'`) {
			t.Errorf("line %d: want NAME=value without quotes, got %q", i+1, l)
			continue
		}
		if _, dup := env[k]; dup {
			t.Errorf("line %d: %s set twice", i+1, k)
		}
		env[k] = v
	}
	for _, k := range []string{"ATTUNE__DATABASE__URL", "ATTUNE__MESSAGE_QUEUE__URL", "ATTUNE__SECURITY__JWT_SECRET", "ATTUNE_API_URL", "ATTUNE_PACKS_BASE_DIR"} {
		if env[k] == "" {
			t.Errorf("%s missing", k)
		}
	}
	if env["ATTUNE__SENSOR__SHUTDOWN_TIMEOUT"] != strconv.Itoa(deployShutdownSecs) {
		t.Errorf("ATTUNE__SENSOR__SHUTDOWN_TIMEOUT: want %d, got %q", deployShutdownSecs, env["ATTUNE__SENSOR__SHUTDOWN_TIMEOUT"])
	}
}
