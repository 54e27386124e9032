package main

// edges_e2e_test.go pins what an operator sees of the agent's life on the
// real binary (CONTRACT §1, §8): the order of the ready line, the exit code
// after a graceful stop and after one that needed SIGKILL, logs on stdout.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lifeMilestones are the log lines whose order the golden files pin.
var lifeMilestones = map[string]bool{
	"sensor worker registered": true, "sensor started": true, "Attune Sensor Agent is ready": true,
	"shutting down": true, "Attune Sensor Agent shutdown complete": true,
	"shutdown needed SIGKILL: a sensor outlived sensor.shutdown_timeout; exiting 0 as the reference does": true,
}

// lifeStory renders the milestones of an agent's log, one per line, then
// its exit code.
func lifeStory(log string, code int) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(log, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		msg, _ := rec["msg"].(string)
		if !lifeMilestones[msg] {
			continue
		}
		b.WriteString(msg)
		if ref, ok := rec["sensor"].(string); ok {
			b.WriteString(" sensor=" + ref)
		}
		b.WriteByte('\n')
	}
	b.WriteString("exit " + strconv.Itoa(code) + "\n")
	return b.Bytes()
}

// TestAgentLifeStory: ready only after the sensor's first start (and the
// first counter sync and the heartbeat, which log nothing when they work),
// exit 0 after a graceful stop, and exit 0 after a stop that needed
// SIGKILL, saying so.
func TestAgentLifeStory(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		t.Parallel()
		s := newTestStack(t, "current")
		t.Cleanup(s.killLeftovers)
		s.sensorWithRule("good", "native_sensor", "Native", "", true)
		a := s.start()
		a.waitLog("Attune Sensor Agent is ready", 30*time.Second)
		code := a.stop(syscall.SIGTERM, 40*time.Second)
		assertGolden(t, lifeStory(a.stderr.String(), code))
	})
	t.Run("needed SIGKILL", func(t *testing.T) {
		t.Parallel()
		s := newTestStack(t, "current")
		t.Cleanup(s.killLeftovers)
		s.writeSensorScript("stubborn", supervisionStubbornScript)
		s.sensorWithRule("stubborn", "stubborn", "Native", "", true)
		a := s.start("ATTUNE__SENSOR__SHUTDOWN_TIMEOUT=1", "ATTUNE__LOG__MIRROR_RUNTIME_STDOUT_TO_STDIO=true")
		a.waitLog("Attune Sensor Agent is ready", 30*time.Second)
		a.waitLog("stubborn sensor ready", 30*time.Second) // mirrored: its SIGTERM trap is set
		code := a.stop(syscall.SIGTERM, 40*time.Second)
		if left := s.sensorPIDs(""); len(left) > 0 {
			t.Errorf("sensor processes outlived the agent: %v", left)
		}
		assertGolden(t, lifeStory(a.stderr.String(), code))
	})
}

// TestAgentLogsOnStdout: the running agent logs on stdout, as the
// reference, and leaves stderr empty when nothing is fatal.
func TestAgentLogsOnStdout(t *testing.T) {
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	s.sensorWithRule("good", "native_sensor", "Native", "", true)
	var stdout, stderr syncBuffer
	cmd := exec.Command(buildAgent(t))
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()},
		agentEnv(s.dbURL, s.amqpURL, s.api.URL(), s.dir, "ATTUNE__SENSOR__WORKER_NAME="+s.name)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() { <-ctx.Done(); cmd.Process.Kill() }()
	if !waitUntil(30*time.Second, func() bool { return strings.Contains(stdout.String(), "Attune Sensor Agent is ready") }) {
		t.Fatalf("no ready line on stdout; stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 0 || stderr.String() != "" {
		t.Errorf("exit %d, stderr %q; want 0 and nothing on stderr", code, stderr.String())
	}
	if !regexp.MustCompile(`(?m)^\{.*"msg":"Attune Sensor Agent shutdown complete"`).MatchString(stdout.String()) {
		t.Errorf("no JSON shutdown line on stdout:\n%s", stdout.String())
	}
}
