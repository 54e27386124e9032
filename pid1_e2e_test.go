package main

import (
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

// pid1ForkerScript is a native sensor that double-forks: ten short-lived
// grandchildren and one long-lived one are orphaned at once (their parent
// subshell exits), so they are reparented to PID 1, the agent. It then
// waits for $SUPERVISION_PID1_DIR/stop and exits 3.
const pid1ForkerScript = `#!/bin/bash
trap 'exit 0' TERM
dir=$SUPERVISION_PID1_DIR
for i in 1 2 3 4 5 6 7 8 9 10; do
	( sleep 0.1 & )
	sleep 0.05
done
( sleep 30 & )
touch "$dir/forked"
while [ ! -e "$dir/stop" ]; do sleep 0.1; done
exit 3
`

// TestAgentAsPID1ReapsOrphans runs the real agent as PID 1 of a new pid
// namespace (as an injected container entrypoint is): orphaned grandchildren
// of a sensor are reparented to it and reaped (no zombie stays), the sensor
// keeps running, and when the sensor exits 3 the agent still sees its own
// exit code.
func TestAgentAsPID1ReapsOrphans(t *testing.T) {
	s := newTestStack(t, "legacy")
	t.Cleanup(s.killLeftovers)
	s.writeSensorScript("forker", pid1ForkerScript)
	s.sensorWithRule("forker", "forker", "Native", "", true)
	dir := t.TempDir()
	env := agentEnv(s.dbURL, s.amqpURL, s.api.URL(), s.dir, "LANG=C.UTF-8", "ATTUNE__SENSOR__WORKER_NAME="+s.name,
		"ATTUNE__SENSOR__PASSTHROUGH_ENV=SUPERVISION_PID1_DIR", "SUPERVISION_PID1_DIR="+dir)
	a, agentPID := startAgentAsPID1(t, env)

	ready := waitAgentRecords(t, a, "process supervision ready", "", 1, 30*time.Second)[0]
	if ready["monitor"] != monitorReaperPID1 || ready["pid"] != float64(1) {
		t.Fatalf("agent supervision %v, want the PID 1 reaper", ready)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", agentPID))
	if err != nil {
		t.Fatalf("agent pid namespace: %v", err)
	}
	if !waitUntil(30*time.Second, func() bool { _, err := os.Stat(filepath.Join(dir, "forked")); return err == nil }) {
		t.Fatalf("sensor never forked its grandchildren; agent stderr:\n%s", a.stderr.String())
	}
	sensorPID := pid1FindProcess(s, "testpack.forker", "/sensors/forker\x00")
	if sensorPID == 0 {
		t.Fatalf("sensor process not found; agent stderr:\n%s", a.stderr.String())
	}

	// The ten short grandchildren exited 0.1 s after their birth: from half
	// a second on, none may linger as a zombie, checked for another 500 ms.
	time.Sleep(500 * time.Millisecond)
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if z := pid1AgentZombies(ns, agentPID); len(z) > 0 {
			t.Fatalf("zombies left in the agent's pid namespace: %v", z)
		}
	}
	orphan := pid1FindProcess(s, "testpack.forker", "sleep\x0030\x00")
	if orphan == 0 || pid1ParentPID(orphan) != agentPID {
		t.Errorf("long-lived orphan (pid %d) has parent %d, want the agent %d", orphan, pid1ParentPID(orphan), agentPID)
	}
	if p := pid1FindProcess(s, "testpack.forker", "/sensors/forker\x00"); p != sensorPID {
		t.Errorf("sensor pid %d became %d: it must keep running while its orphans are reaped", sensorPID, p)
	}

	if err := os.WriteFile(filepath.Join(dir, "stop"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	exited := waitAgentRecords(t, a, "sensor exited", "testpack.forker", 1, 10*time.Second)[0]
	if exited["exit_code"] != float64(3) || exited["signal"] != float64(0) {
		t.Errorf("agent saw the sensor end with %v, want exit code 3", exited)
	}
	// The dead sensor's group, orphan included, is killed and reaped too.
	if !waitUntil(5*time.Second, func() bool {
		return len(s.sensorPIDs("testpack.forker")) == 0 && len(pid1AgentZombies(ns, agentPID)) == 0
	}) {
		t.Errorf("after the sensor's exit: live %v, zombies %v", s.sensorPIDs("testpack.forker"), pid1AgentZombies(ns, agentPID))
	}
	syscall.Kill(agentPID, syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("agent as PID 1 did not exit after SIGTERM; stderr:\n%s", a.stderr.String())
	}
	if a.code != exitOK {
		t.Errorf("exit code %d, want 0", a.code)
	}
}

// startAgentAsPID1 runs the agent under `unshare --pid --fork --mount-proc`
// (we are root in the test environment, so a failure fails the test) and
// returns it with the agent's pid as seen from here. --kill-child makes the
// namespace die with unshare if the test has to kill it.
func startAgentAsPID1(t *testing.T, env []string) (*agentProc, int) {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("the PID 1 test needs util-linux's unshare on PATH: %v", err)
	}
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "--kill-child", buildAgent(t))
	a := runAgentCmd(t, cmd, env, func(a *agentProc) {
		a.cmd.Process.Kill() // --kill-child: the agent, and with it the namespace, dies too
		<-a.done
	})
	var agentPID int
	children := fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid)
	if !waitUntil(10*time.Second, func() bool {
		b, _ := os.ReadFile(children)
		agentPID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return agentPID > 0
	}) {
		t.Fatalf("unshare did not fork the agent; stderr:\n%s", a.stderr.String())
	}
	return a, agentPID
}

// pid1AgentZombies lists the zombies of pid namespace ns whose parent is
// the agent (agentPID as seen from here): those only the agent can reap.
// A sensor's own short children, which the sensor itself reaps at once,
// are not counted.
func pid1AgentZombies(ns string, agentPID int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "pid")); err != nil || l != ns {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && isZombieStat(string(st)) && pid1ParentPID(pid) == agentPID {
			out = append(out, pid)
		}
	}
	return out
}

// pid1FindProcess returns a live process of sensor ref whose command line
// (NUL-separated) ends with suffix, 0 when none.
func pid1FindProcess(s *testStack, ref, suffix string) int {
	for _, pid := range s.sensorPIDs(ref) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.HasSuffix(string(b), suffix) {
			return pid
		}
	}
	return 0
}

// pid1ParentPID is the parent of pid as seen from here, 0 when unknown.
func pid1ParentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
