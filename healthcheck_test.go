package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// healthNow is the pinned clock of the health tests.
var healthNow = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

func TestJudgeAgentHealth(t *testing.T) {
	alive := func(int) bool { return true }
	dead := func(int) bool { return false }
	healthy := agentStatus{
		PID: 1, WorkerID: 7, WorkerName: "sensor-a",
		LastHeartbeat: healthNow.Add(-10 * time.Second), HeartbeatInterval: 30 * time.Second,
	}
	with := func(f func(*agentStatus)) agentStatus {
		st := healthy
		f(&st)
		return st
	}
	cases := []struct {
		name     string
		st       agentStatus
		pidAlive func(int) bool
		wantErr  error
		wantMsg  string
	}{
		{"fresh heartbeat", healthy, alive, nil, ""},
		{"exactly three intervals old", with(func(s *agentStatus) { s.LastHeartbeat = healthNow.Add(-90 * time.Second) }), alive, nil, ""},
		{"heartbeat in the future (clock skew)", with(func(s *agentStatus) { s.LastHeartbeat = healthNow.Add(time.Minute) }), alive, nil, ""},
		{"dead pid", healthy, dead, ErrAgentNotRunning, "agent pid 1 is not running"},
		{"no pid", with(func(s *agentStatus) { s.PID = 0 }), alive, ErrAgentNotRunning, "agent pid 0 is not running"},
		{"not registered", with(func(s *agentStatus) { s.WorkerID = 0 }), alive, ErrAgentNotRegistered, "agent pid 1 has not registered a worker yet"},
		{"no heartbeat yet", with(func(s *agentStatus) { s.LastHeartbeat = time.Time{} }), alive, ErrHeartbeatStale, "agent pid 1 has not sent a heartbeat yet"},
		{"stale by a second", with(func(s *agentStatus) { s.LastHeartbeat = healthNow.Add(-91 * time.Second) }), alive, ErrHeartbeatStale, "last heartbeat 1m31s ago, older than 3 × 30s"},
		{"stale four minutes", with(func(s *agentStatus) { s.LastHeartbeat = healthNow.Add(-4 * time.Minute) }), alive, ErrHeartbeatStale, "last heartbeat 4m ago, older than 3 × 30s"},
		{"zero interval uses the 30s default", with(func(s *agentStatus) {
			s.HeartbeatInterval = 0
			s.LastHeartbeat = healthNow.Add(-2 * time.Minute)
		}), alive, ErrHeartbeatStale, "last heartbeat 2m ago, older than 3 × 30s"},
		{"long interval keeps an old heartbeat fresh", with(func(s *agentStatus) {
			s.HeartbeatInterval = 5 * time.Minute
			s.LastHeartbeat = healthNow.Add(-14 * time.Minute)
		}), alive, nil, ""},
		{"dead pid wins over stale heartbeat", with(func(s *agentStatus) { s.LastHeartbeat = healthNow.Add(-time.Hour) }), dead, ErrAgentNotRunning, "agent pid 1 is not running"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := judgeAgentHealth(tc.st, healthNow, tc.pidAlive)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("error: want %v, got %v", tc.wantErr, err)
			}
			if err != nil && err.Error() != tc.wantMsg {
				t.Errorf("message: want %q, got %q", tc.wantMsg, err.Error())
			}
		})
	}
}

func TestFormatHealthAge(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Second, "0s"},
		{1400 * time.Millisecond, "1s"},
		{30 * time.Second, "30s"},
		{4 * time.Minute, "4m"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{time.Hour + 5*time.Minute, "1h5m"},
		{time.Hour + 5*time.Second, "1h0m5s"},
	}
	for _, tc := range cases {
		if got := formatHealthAge(tc.d); got != tc.want {
			t.Errorf("formatHealthAge(%v): want %q, got %q", tc.d, tc.want, got)
		}
	}
}

func TestHealthStatusPath(t *testing.T) {
	t.Setenv("TMPDIR", "/tmpdir")
	cases := []struct {
		name    string
		flag    string
		environ []string
		want    string
	}{
		{"default", "", nil, "/tmpdir/attune-sensor-agent.status.json"},
		{"plain variable", "", []string{"ATTUNE_SENSOR_STATUS_FILE=/run/a.json"}, "/run/a.json"},
		{"config-key variable", "", []string{"ATTUNE__SENSOR__STATUS_FILE=/run/b.json"}, "/run/b.json"},
		{"plain wins over config key", "", []string{"ATTUNE__SENSOR__STATUS_FILE=/run/b.json", "ATTUNE_SENSOR_STATUS_FILE=/run/a.json"}, "/run/a.json"},
		{"flag wins over both", "/f.json", []string{"ATTUNE__SENSOR__STATUS_FILE=/run/b.json", "ATTUNE_SENSOR_STATUS_FILE=/run/a.json"}, "/f.json"},
		{"empty value counts as unset", "", []string{"ATTUNE_SENSOR_STATUS_FILE="}, "/tmpdir/attune-sensor-agent.status.json"},
		{"first occurrence wins", "", []string{"ATTUNE_SENSOR_STATUS_FILE=/first", "ATTUNE_SENSOR_STATUS_FILE=/second"}, "/first"},
		{"prefix of another name is not a match", "", []string{"ATTUNE_SENSOR_STATUS_FILEX=/x"}, "/tmpdir/attune-sensor-agent.status.json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := healthStatusPath(tc.flag, tc.environ); got != tc.want {
				t.Errorf("want %s, got %s", tc.want, got)
			}
		})
	}
}

func TestHealthcheckCommand(t *testing.T) {
	dir := t.TempDir()
	statusPath := filepath.Join(dir, "status.json")
	missingPath := filepath.Join(dir, "missing.json")
	stalePath := filepath.Join(dir, "stale.json")
	corruptPath := filepath.Join(dir, "corrupt.json")
	fresh := agentStatus{PID: 99, WorkerID: 3, WorkerName: "sensor-x", LastHeartbeat: healthNow.Add(-12 * time.Second),
		HeartbeatInterval: 30 * time.Second, SensorsMonitored: 4, SensorsRunning: 3}
	stale := fresh
	stale.LastHeartbeat = healthNow.Add(-4 * time.Minute)
	for p, st := range map[string]agentStatus{statusPath: fresh, stalePath: stale} {
		if err := writeAgentStatus(p, st); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(corruptPath, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	probe := healthProbe{
		now: func() time.Time { return healthNow },
		pidAlive: func(pid int) bool {
			if pid != 99 {
				t.Errorf("pidAlive called with %d, want 99", pid)
			}
			return true
		},
	}
	cases := []struct {
		name       string
		args       []string
		environ    []string
		wantCode   int
		wantStdout string
		wantStderr string // exact, unless wantPrefix
		wantPrefix bool
	}{
		{"healthy via flag", []string{"--status-file", statusPath}, nil, 0,
			"healthy: worker sensor-x (id 3), pid 99, last heartbeat 12s ago, 3/4 sensors running\n", "", false},
		{"healthy via variable", nil, []string{"ATTUNE_SENSOR_STATUS_FILE=" + statusPath}, 0,
			"healthy: worker sensor-x (id 3), pid 99, last heartbeat 12s ago, 3/4 sensors running\n", "", false},
		{"missing file", []string{"--status-file=" + missingPath}, nil, 1, "",
			"no status file at " + missingPath + " (agent not started or not registered yet)\n", false},
		{"stale heartbeat", nil, []string{"ATTUNE_SENSOR_STATUS_FILE=" + stalePath}, 1, "",
			"last heartbeat 4m ago, older than 3 × 30s\n", false},
		{"corrupt file", []string{"--status-file", corruptPath}, nil, 1, "", "unreadable status file: decode agent status " + corruptPath, true},
		{"unknown flag", []string{"--bogus"}, nil, 2, "", "flag provided but not defined: -bogus\n", true},
		{"extra argument", []string{"now"}, nil, 2, "", "healthcheck: unexpected argument \"now\"\n", true},
		{"help", []string{"--help"}, nil, 0, "", "usage: attune-sensor-agent healthcheck [--status-file PATH]\n", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := probe.run(tc.args, tc.environ, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code: want %d, got %d (stderr %q)", tc.wantCode, code, stderr.String())
			}
			if stdout.String() != tc.wantStdout {
				t.Errorf("stdout: want %q, got %q", tc.wantStdout, stdout.String())
			}
			if tc.wantPrefix {
				if !strings.HasPrefix(stderr.String(), tc.wantStderr) {
					t.Errorf("stderr: want prefix %q, got %q", tc.wantStderr, stderr.String())
				}
			} else if stderr.String() != tc.wantStderr {
				t.Errorf("stderr: want %q, got %q", tc.wantStderr, stderr.String())
			}
			if code == 1 && strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("a failed probe must print exactly one line, got %q", stderr.String())
			}
		})
	}
}

func TestHealthPIDAlive(t *testing.T) {
	if !healthPIDAlive(os.Getpid()) {
		t.Error("own pid reported dead")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	// The child has been reaped; its pid is free (reuse within this test is
	// practically impossible on a 4M pid space).
	if healthPIDAlive(cmd.Process.Pid) {
		t.Errorf("reaped child pid %d reported alive", cmd.Process.Pid)
	}
}

// TestHealthcheckAsOtherUser runs the real runHealthcheck (real clock, real
// kill(2)) in a process of uid 1000 against a status file that names this
// root-owned test process: kill(pid, 0) fails with EPERM there, which must
// count as alive.
func TestHealthcheckAsOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root to start a process as uid 1000 (CI runs as root)")
	}
	dir := packagingWorldReadableTempDir(t)
	statusPath := filepath.Join(dir, "status.json")
	st := agentStatus{PID: os.Getpid(), WorkerID: 5, WorkerName: "sensor-root",
		LastHeartbeat: time.Now(), HeartbeatInterval: 30 * time.Second}
	if err := writeAgentStatus(statusPath, st); err != nil {
		t.Fatal(err)
	}
	// The test binary sits in a 0700 build directory; uid 1000 needs a copy it can execute.
	bin := filepath.Join(dir, "testbin")
	packagingCopyFile(t, os.Args[0], bin, 0o755)

	cmd := exec.CommandContext(t.Context(), bin, "--status-file", statusPath)
	cmd.Env = append(os.Environ(), helperEnv+"=healthcheck")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("healthcheck as uid 1000 against a root pid: %v: %s", err, out)
	}
	if !strings.HasPrefix(string(out), "healthy: worker sensor-root (id 5), pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("output: %q", out)
	}
}

func init() {
	// healthcheck: the test binary plays `attune-sensor-agent healthcheck`.
	testHelpers["healthcheck"] = func() int {
		return runHealthcheck(os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	}
}

// packagingWorldReadableTempDir returns t.TempDir() opened up (with its
// 0700 parent) to other users, for tests that run a process as uid 1000.
func packagingWorldReadableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// packagingCopyFile copies src to dst with mode, failing the test on error.
func packagingCopyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(fmt.Errorf("copy %s: %w", src, err))
	}
}
