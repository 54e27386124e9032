package main

// envdiagnose.go owns a diagnostic no Attune agent has [agent]: which
// shared runtime environments under runtime_envs_dir this image cannot run
// (interpreter missing, broken venv link, wrong version), shown by
// --detect-only and logged at start-up, so an operator sees the problem
// before a sensor falls back to the system interpreter or fails. It also
// owns the little configuration --detect-only reads (CONTRACT §1).

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// runtimeEnvProblem is one environment this image cannot run.
type runtimeEnvProblem struct {
	Path    string `json:"path"`
	Pack    string `json:"pack"`    // from the legacy layout or .attune-pack-ref; "" when unknown
	Problem string `json:"problem"` // "interpreter missing", "broken venv link" or "wrong version"
	Detail  string `json:"detail"`
}

// runtimeEnvDiagnosis is the diagnostic of one runtime_envs_dir.
type runtimeEnvDiagnosis struct {
	Dir      string              `json:"dir"`
	Unusable []runtimeEnvProblem `json:"unusable"`
}

// The problems the diagnostic reports.
const (
	envProblemMissing = "interpreter missing"
	envProblemBroken  = "broken venv link"
	envProblemVersion = "wrong version"
)

// diagnoseRuntimeEnvs walks both layouts under root, the legacy
// {root}/{pack}/{runtime} and the content-addressed {root}/sha256/{key}
// (dot-named temporaries and locks skipped), and checks every Python
// virtual environment (a directory holding pyvenv.cfg) against this image:
// its bin/python3 (or bin/python) must exist and not be a broken link, the
// base interpreter directory it was made from (pyvenv.cfg home) must exist,
// and its Python major.minor must be the detected python's. Other
// environment kinds carry no interpreter and are not judged. A missing or
// unreadable root yields no problems: there is nothing shared to run.
func diagnoseRuntimeEnvs(root string, detected []Interpreter) runtimeEnvDiagnosis {
	diag := runtimeEnvDiagnosis{Dir: root, Unusable: []runtimeEnvProblem{}}
	pyVersion := ""
	for _, in := range detected {
		if in.Name == "python" {
			pyVersion = in.Version
		}
	}
	tops, _ := os.ReadDir(root)
	for _, top := range tops {
		if !top.IsDir() || strings.HasPrefix(top.Name(), ".") {
			continue
		}
		subs, _ := os.ReadDir(filepath.Join(root, top.Name()))
		for _, sub := range subs {
			if !sub.IsDir() || strings.HasPrefix(sub.Name(), ".") {
				continue
			}
			dir := filepath.Join(root, top.Name(), sub.Name())
			pack := top.Name()
			if top.Name() == "sha256" {
				b, _ := os.ReadFile(filepath.Join(dir, runtimePackRefMarker))
				pack = strings.TrimSpace(string(b))
			}
			if p, ok := diagnoseVenv(dir, pyVersion); ok {
				p.Pack = pack
				diag.Unusable = append(diag.Unusable, p)
			}
		}
	}
	slices.SortFunc(diag.Unusable, func(a, b runtimeEnvProblem) int { return strings.Compare(a.Path, b.Path) })
	return diag
}

// diagnoseVenv returns the first problem of the venv in dir, if it is one
// and has one.
func diagnoseVenv(dir, pyVersion string) (runtimeEnvProblem, bool) {
	cfg, err := readPyvenvCfg(filepath.Join(dir, "pyvenv.cfg"))
	if err != nil {
		return runtimeEnvProblem{}, false // not a Python venv
	}
	problem := func(kind, format string, args ...any) (runtimeEnvProblem, bool) {
		return runtimeEnvProblem{Path: dir, Problem: kind, Detail: fmt.Sprintf(format, args...)}, true
	}
	var interp string
	for _, name := range []string{"python3", "python"} {
		p := filepath.Join(dir, "bin", name)
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			if _, err := os.Stat(p); err != nil {
				target, _ := os.Readlink(p)
				return problem(envProblemBroken, "bin/%s -> %s, which this image does not have", name, target)
			}
		}
		interp = p
		break
	}
	if interp == "" {
		return problem(envProblemMissing, "the venv has no bin/python3 or bin/python")
	}
	if home := cfg["home"]; home != "" {
		if st, err := os.Stat(home); err != nil || !st.IsDir() {
			return problem(envProblemMissing, "the venv was made from the interpreter in %s (pyvenv.cfg home), which this image does not have", home)
		}
	}
	venvV := cmpOrStr(cfg["version"], cfg["version_info"])
	if venvV == "" {
		return runtimeEnvProblem{}, false
	}
	if pyVersion == "" {
		return problem(envProblemMissing, "the venv is python %s; this image has no python", majorMinor(venvV))
	}
	if majorMinor(venvV) != majorMinor(pyVersion) {
		return problem(envProblemVersion, "the venv is python %s; this image has python %s", majorMinor(venvV), pyVersion)
	}
	return runtimeEnvProblem{}, false
}

// readPyvenvCfg reads the key = value lines of a pyvenv.cfg.
func readPyvenvCfg(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	return out, sc.Err()
}

// majorMinor cuts "3.12.1" (or "3.12.1.final.0") to "3.12".
func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

func cmpOrStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// logUnusableRuntimeEnvs logs, once at start-up, each shared environment
// this image cannot run (quiet when there is none).
func logUnusableRuntimeEnvs(log *slog.Logger, root string, detected []Interpreter) {
	for _, p := range diagnoseRuntimeEnvs(root, detected).Unusable {
		log.Warn("runtime environment unusable in this image", "path", p.Path, "pack", p.Pack, "problem", p.Problem, "detail", p.Detail)
	}
}

// detectOnlyConfig is what --detect-only reads of the configuration.
type detectOnlyConfig struct {
	Passthrough    []string
	RuntimeEnvsDir string
}

// loadDetectOnlyConfig reads, as CONTRACT §1 says, the named configuration
// file only (ATTUNE_CONFIG, which -c sets; never the working directory's
// config.yaml, so detection needs no deployment files), then the ATTUNE__
// variables over it, for sensor.passthrough_env (which decides the probes'
// environment) and runtime_envs_dir (which the diagnostic inspects). An
// unreadable named file or an invalid passthrough name is an error (exit 1).
func loadDetectOnlyConfig(environ []string, workDir string) (detectOnlyConfig, error) {
	out := detectOnlyConfig{RuntimeEnvsDir: "/opt/attune/runtime_envs"}
	env := configEnvLookup(environ)
	tree := map[string]any{}
	if name := env[envConfigPath]; name != "" {
		path := configPathIn(workDir, name)
		layer, found, err := readConfigFile(path)
		if err != nil {
			return out, err
		}
		if !found {
			return out, newConfigError(envConfigPath, fmt.Sprintf("config file %s does not exist", path))
		}
		tree = layer
	}
	applyEnvOverrides(tree, environ)
	d := &configDecoder{tree: tree}
	d.passthrough("sensor.passthrough_env", &out.Passthrough)
	d.str("runtime_envs_dir", &out.RuntimeEnvsDir)
	if d.err != nil {
		return out, d.err
	}
	if err := validatePassthroughEnv(out.Passthrough); err != nil {
		return out, err
	}
	return out, nil
}
