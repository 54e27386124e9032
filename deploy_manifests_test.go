package main

// Compose and Kubernetes manifests: validated with the real docker-compose
// parser and merger, and by decoding the Deployment with yaml/v3.

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// composeVolume is one service volume, from the short ("src:dst:ro") or the
// long syntax, so the checks hold for docker-compose v1 and Compose v2 output.
type composeVolume struct {
	Source, Target string
	ReadOnly       bool
}

func (v *composeVolume) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		if len(parts) < 2 {
			return &yaml.TypeError{Errors: []string{"volume without target: " + n.Value}}
		}
		v.Source, v.Target = parts[0], parts[1]
		v.ReadOnly = len(parts) > 2 && slices.Contains(strings.Split(parts[2], ","), "ro")
		return nil
	}
	var long struct {
		Source   string `yaml:"source"`
		Target   string `yaml:"target"`
		ReadOnly bool   `yaml:"read_only"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	*v = composeVolume{long.Source, long.Target, long.ReadOnly}
	return nil
}

type composeService struct {
	Image       string            `yaml:"image"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []composeVolume   `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
	Restart         string `yaml:"restart"`
}

type composeProject struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

// composeConfig runs `docker-compose config` over files (the real parser
// and merger) and decodes the normalised result.
func composeConfig(t *testing.T, files ...string) composeProject {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatal("docker-compose is missing: run scripts/ci-deps.sh (Debian package docker-compose)")
	}
	var args []string
	for _, f := range files {
		args = append(args, "-f", f)
	}
	cmd := exec.CommandContext(t.Context(), bin, append(args, "config")...)
	cmd.Env = append(os.Environ(), "ATTUNE_DOCKER_CONFIG_PATH=/etc/attune/config.yaml")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("docker-compose %s config: %v: %s", strings.Join(args, " "), err, stderr)
	}
	var p composeProject
	if err := yaml.Unmarshal(out, &p); err != nil {
		t.Fatalf("decode compose config output: %v\n%s", err, out)
	}
	return p
}

// volumeAt returns the volume a service mounts at target.
func (s composeService) volumeAt(target string) (composeVolume, bool) {
	for _, v := range s.Volumes {
		if v.Target == target {
			return v, true
		}
	}
	return composeVolume{}, false
}

// checkComposeSensor asserts what any compose sensor service running the Go
// agent from volume binVolume must have.
func checkComposeSensor(t *testing.T, s composeService, binVolume string) {
	t.Helper()
	if !slices.Equal(s.Entrypoint, []string{deployAgentPath}) {
		t.Errorf("sensor entrypoint: want [%s], got %v", deployAgentPath, s.Entrypoint)
	}
	if s.Image != "nikolaik/python-nodejs:python3.12-nodejs22-slim" {
		t.Errorf("sensor image: %s", s.Image)
	}
	if v, ok := s.volumeAt("/opt/attune/agent"); !ok || v.Source != binVolume || !v.ReadOnly {
		t.Errorf("sensor: want %s:/opt/attune/agent:ro, got %+v", binVolume, v)
	}
	if d := s.DependsOn["init-sensor-agent"]; d.Condition != "service_completed_successfully" {
		t.Errorf("sensor depends_on init-sensor-agent: want service_completed_successfully, got %q", d.Condition)
	}
	if grace, err := time.ParseDuration(s.StopGracePeriod); err != nil || grace != 45*time.Second {
		t.Errorf("stop_grace_period: want 45s, got %q", s.StopGracePeriod)
	}
	if want := append([]string{"CMD"}, deployHealthcheckCommand...); !slices.Equal(s.Healthcheck.Test, want) {
		t.Errorf("healthcheck test: want %q, got %q", want, s.Healthcheck.Test)
	}
	if s.Environment["ATTUNE__SENSOR__SHUTDOWN_TIMEOUT"] != strconv.Itoa(deployShutdownSecs) {
		t.Errorf("ATTUNE__SENSOR__SHUTDOWN_TIMEOUT: %q", s.Environment["ATTUNE__SENSOR__SHUTDOWN_TIMEOUT"])
	}
}

func TestComposeFile(t *testing.T) {
	p := composeConfig(t, "deploy/compose.yaml")
	init := p.Services["init-sensor-agent"]
	if v, ok := init.volumeAt("/opt/attune/agent"); !ok || v.Source != "agent_bin" || v.ReadOnly {
		t.Errorf("init-sensor-agent: want agent_bin:/opt/attune/agent read-write, got %+v", init.Volumes)
	}
	if init.Restart != "no" || init.Entrypoint != nil {
		t.Errorf("init-sensor-agent: want restart \"no\" and the image's install entrypoint, got %q %v", init.Restart, init.Entrypoint)
	}
	s := p.Services["sensor"]
	checkComposeSensor(t, s, "agent_bin")
	for _, k := range []string{"ATTUNE_CONFIG", "ATTUNE__DATABASE__URL", "ATTUNE__MESSAGE_QUEUE__URL",
		"ATTUNE__SECURITY__JWT_SECRET", "ATTUNE_API_URL", "ATTUNE_MQ_URL", "ATTUNE_PACKS_BASE_DIR"} {
		if s.Environment[k] == "" {
			t.Errorf("sensor environment: %s missing", k)
		}
	}
	if got := s.Environment["ATTUNE_SENSOR_RUNTIMES"]; got != "shell,python,node,native" {
		t.Errorf("ATTUNE_SENSOR_RUNTIMES: %q", got)
	}
	for target, src := range map[string]string{
		"/opt/attune/config/config.yaml": "/etc/attune/config.yaml", "/opt/attune/packs": "packs_data",
		"/opt/attune/runtime_envs": "runtime_envs", "/opt/attune/artifacts": "artifacts_data",
	} {
		if v, ok := s.volumeAt(target); !ok || v.Source != src {
			t.Errorf("sensor volume at %s: want source %s, got %+v", target, src, v)
		}
	}
}

// composeAttuneBase is the part of the Attune repository's docker-compose.yaml
// the override meets: the Rust init-agent filling agent_bin, the API serving
// it, and the Rust-era sensor service.
const composeAttuneBase = `services:
  init-agent:
    image: attune-agent:latest
    entrypoint: ["/bin/sh", "-c", "cp /usr/local/bin/attune-agent /usr/local/bin/attune-sensor-agent /opt/attune/agent/"]
    volumes: [agent_bin:/opt/attune/agent]
    restart: "no"
  api:
    image: attune-api:latest
    volumes: [agent_bin:/opt/attune/agent:ro]
  sensor:
    image: nikolaik/python-nodejs:python3.12-nodejs22-slim
    entrypoint: ["/opt/attune/agent/attune-sensor-agent"]
    stop_grace_period: 45s
    environment:
      ATTUNE_SENSOR_RUNTIMES: shell,python,node,native
    volumes: [agent_bin:/opt/attune/agent:ro, packs_data:/opt/attune/packs:rw]
    depends_on:
      init-agent: {condition: service_completed_successfully}
    healthcheck:
      test: ["CMD-SHELL", "kill -0 1 || exit 1"]
      interval: 30s
volumes:
  agent_bin:
  packs_data:
`

func TestComposeOverrideKeepsRustInitAgent(t *testing.T) {
	base := filepath.Join(t.TempDir(), "docker-compose.yaml")
	if err := os.WriteFile(base, []byte(composeAttuneBase), 0o644); err != nil {
		t.Fatal(err)
	}
	const override = "deploy/compose.override.example.yaml"
	p := composeConfig(t, base, override)

	rust := p.Services["init-agent"]
	if len(rust.Volumes) != 1 || rust.Volumes[0].Source != "agent_bin" || len(rust.Entrypoint) != 3 {
		t.Errorf("init-agent changed by the override: %+v", rust)
	}
	if v, _ := p.Services["api"].volumeAt("/opt/attune/agent"); v.Source != "agent_bin" {
		t.Errorf("api no longer serves agent_bin: %+v", v)
	}
	init := p.Services["init-sensor-agent"]
	if len(init.Volumes) != 1 || init.Volumes[0] != (composeVolume{"sensor_agent_bin", "/opt/attune/agent", false}) {
		t.Errorf("init-sensor-agent: want only sensor_agent_bin:/opt/attune/agent, got %+v", init.Volumes)
	}
	s := p.Services["sensor"]
	checkComposeSensor(t, s, "sensor_agent_bin")
	for _, v := range s.Volumes {
		if v.Source == "agent_bin" {
			t.Errorf("sensor still mounts agent_bin: %+v", v)
		}
	}
	if v, ok := s.volumeAt("/opt/attune/packs"); !ok || v.Source != "packs_data" {
		t.Errorf("sensor lost the base file's packs volume: %+v", s.Volumes)
	}
	if _, ok := p.Volumes["sensor_agent_bin"]; !ok {
		t.Error("top-level volume sensor_agent_bin missing")
	}
	// Textual guard: the override never names the shared volume or the Rust binary.
	raw, err := os.ReadFile(override)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") && (strings.Contains(l, "agent_bin:") && !strings.Contains(l, "sensor_agent_bin") || strings.Contains(l, "attune-agent")) {
			t.Errorf("override line touches the Rust agent's files: %q", l)
		}
	}
}

// k8sContainer and k8sDeployment hold the subset of the Deployment the
// checks read; decoding into them also proves the field names are right.
type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct{ Name, Key string } `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	SecurityContext struct {
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	LivenessProbe *struct {
		Exec struct{ Command []string } `yaml:"exec"`
	} `yaml:"livenessProbe"`
}

type k8sDeployment struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Spec       struct {
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsUser    int  `yaml:"runAsUser"`
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
				} `yaml:"securityContext"`
				InitContainers []k8sContainer `yaml:"initContainers"`
				Containers     []k8sContainer `yaml:"containers"`
				Volumes        []struct {
					Name     string    `yaml:"name"`
					EmptyDir *struct{} `yaml:"emptyDir"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func TestKubernetesManifest(t *testing.T) {
	b, err := os.ReadFile("deploy/kubernetes/sensor-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d k8sDeployment
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatalf("parse manifest: %v", err)
	}
	if d.APIVersion != "apps/v1" || d.Kind != "Deployment" {
		t.Fatalf("want an apps/v1 Deployment, got %s %s", d.APIVersion, d.Kind)
	}
	pod := d.Spec.Template.Spec
	if pod.TerminationGracePeriodSeconds <= deployShutdownSecs {
		t.Errorf("terminationGracePeriodSeconds %d must exceed sensor.shutdown_timeout %d", pod.TerminationGracePeriodSeconds, deployShutdownSecs)
	}
	if !pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.RunAsUser != 1000 {
		t.Errorf("pod securityContext: want runAsNonRoot and runAsUser 1000, got %+v", pod.SecurityContext)
	}
	emptyDirs := map[string]bool{}
	for _, v := range pod.Volumes {
		emptyDirs[v.Name] = v.EmptyDir != nil
	}
	if len(pod.InitContainers) != 1 || len(pod.Containers) != 1 {
		t.Fatalf("want one init container and one container, got %d and %d", len(pod.InitContainers), len(pod.Containers))
	}
	init, main := pod.InitContainers[0], pod.Containers[0]
	if !slices.Equal(init.Command, deployInstallCommand) {
		t.Errorf("init command: want %q, got %q", deployInstallCommand, init.Command)
	}
	if main.Image != "python:3.12-slim" || !slices.Equal(main.Command, []string{deployAgentPath}) {
		t.Errorf("main container: want python:3.12-slim running %s, got %s %v", deployAgentPath, main.Image, main.Command)
	}
	for _, c := range []k8sContainer{init, main} {
		sc := c.SecurityContext
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: want readOnlyRootFilesystem true and allowPrivilegeEscalation false", c.Name)
		}
	}
	mounts := map[string]string{} // path -> volume (emptyDir-backed and writable)
	for _, m := range main.VolumeMounts {
		if emptyDirs[m.Name] && !m.ReadOnly {
			mounts[m.MountPath] = m.Name
		}
	}
	for _, p := range []string{"/tmp", "/opt/attune/artifacts", "/opt/attune/runtime_envs"} {
		if mounts[p] == "" {
			t.Errorf("main container: %s must be a writable emptyDir", p)
		}
	}
	if len(init.VolumeMounts) != 1 || init.VolumeMounts[0].MountPath != "/opt/attune/agent" || !emptyDirs[init.VolumeMounts[0].Name] {
		t.Errorf("init container must write the agent into an emptyDir at /opt/attune/agent: %+v", init.VolumeMounts)
	}
	for _, m := range main.VolumeMounts {
		if m.MountPath == "/opt/attune/agent" && (m.Name != init.VolumeMounts[0].Name || !m.ReadOnly) {
			t.Errorf("main container must mount the init container's volume read-only: %+v", m)
		}
	}
	if main.LivenessProbe == nil || !slices.Equal(main.LivenessProbe.Exec.Command, deployHealthcheckCommand) {
		t.Errorf("liveness probe: want exec %q", deployHealthcheckCommand)
	}
	env := map[string]string{}
	secrets := map[string]bool{}
	for _, e := range main.Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			secrets[e.Name] = true
		}
	}
	for _, k := range []string{"ATTUNE__DATABASE__URL", "ATTUNE__SECURITY__JWT_SECRET", "ATTUNE__MESSAGE_QUEUE__URL"} {
		if !secrets[k] {
			t.Errorf("%s must come from a Secret", k)
		}
	}
	if env["ATTUNE__SENSOR__SHUTDOWN_TIMEOUT"] != strconv.Itoa(deployShutdownSecs) {
		t.Errorf("ATTUNE__SENSOR__SHUTDOWN_TIMEOUT: want %d, got %q", deployShutdownSecs, env["ATTUNE__SENSOR__SHUTDOWN_TIMEOUT"])
	}
}
