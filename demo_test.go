package main

// The demo (demo/run.sh, `make demo`) is run here so it cannot rot: once in
// its CI mode (--check) and once the way a person stops it, with Ctrl-C.
// Both then prove that nothing of the demo is left: no database, no vhost,
// no work directory, no process.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// demoResources is what one demo run created, parsed from its output line
// "database D, vhost V, api U, worker W, work dir P".
type demoResources struct {
	database, vhost, api, worker, workDir string
}

var demoResourcesLine = regexp.MustCompile(`(?m)^\[demo\] database (\S+), vhost (\S+), api (\S+), worker (\S+), work dir (\S+)$`)

// demoCommand prepares demo/run.sh with the test's services and the agent
// built once for the whole test run; SIGTERM (the script's own clean stop)
// is what a test deadline sends.
func demoCommand(t *testing.T, ctx context.Context, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	requireServices(t)
	for _, tool := range []string{"python3", "psql", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the demo needs %s on PATH (Debian packages python3, postgresql-client, bash)", tool)
		}
	}
	cmd := exec.CommandContext(ctx, "demo/run.sh", args...)
	cmd.Env = append(os.Environ(), "AGENT_BIN="+buildAgent(t), "DEMO_INTERVAL=1", "DEMO_CHECK_TIMEOUT=60",
		"ATTUNE_TEST_DATABASE_URL="+testAdminDatabaseURL(), "ATTUNE_TEST_AMQP_URL="+testAMQPURL())
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
	return cmd, out
}

// TestDemoCheck is CI's run of the demo: `demo/run.sh --check` must see two
// events, stop the agent cleanly and remove everything it made.
func TestDemoCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd, out := demoCommand(t, ctx, "--check")
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo/run.sh --check: %v", err)
	}
	t.Logf("demo check took %s", time.Since(start).Round(100*time.Millisecond))
	for _, want := range []string{"[demo] 2 events arrived", "[demo] check passed: 2 events, clean agent shutdown, worker row inactive"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	demoAssertGone(t, out.String())
}

// TestDemoCtrlC stops the interactive demo the way a terminal's Ctrl-C does:
// SIGINT to the whole foreground process group once events are printed. The
// agent must get exactly one SIGTERM from the script (a clean stop, not the
// hard stop of a second signal), and everything must be removed.
func TestDemoCtrlC(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd, out := demoCommand(t, ctx)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if !waitUntil(time.Minute, func() bool { return strings.Contains(out.String(), "[api] event #1 demo.tick from demo.ticker: ") }) {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		<-exited
		t.Fatal("no event printed within a minute")
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("demo after Ctrl-C: %v, want exit 0", err)
		}
	case <-ctx.Done():
		t.Fatal("the demo did not stop after Ctrl-C")
	}
	got := out.String()
	for _, want := range []string{"[demo] SIGINT: stopping", "Attune Sensor Agent shutdown complete", "[demo] stopped and removed: agent, API, database attune_demo_"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(got, "agent exited with code") {
		t.Error("the agent did not exit 0 after the demo's SIGTERM")
	}
	demoAssertGone(t, got)
}

// demoAssertGone checks that the run described in output left nothing behind.
func demoAssertGone(t *testing.T, output string) {
	t.Helper()
	m := demoResourcesLine.FindStringSubmatch(output)
	if m == nil {
		t.Fatal("no '[demo] database ..., work dir ...' line in the output")
	}
	r := demoResources{database: m[1], vhost: m[2], api: m[3], worker: m[4], workDir: m[5]}
	if !strings.HasPrefix(r.database, "attune_demo_") || !strings.HasPrefix(r.workDir, "/tmp/attune-demo.") {
		t.Fatalf("unexpected resource names %+v", r)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, testAdminDatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, r.database).Scan(&n); err != nil || n != 0 {
		t.Errorf("database %s still exists (%d, %v)", r.database, n, err)
	}
	if _, err := os.Stat(r.workDir); !os.IsNotExist(err) {
		t.Errorf("work dir %s still exists (%v)", r.workDir, err)
	}
	if r.vhost != "(default)" {
		ctl := strings.Fields(os.Getenv("ATTUNE_TEST_RABBITMQCTL"))
		if len(ctl) == 0 {
			ctl = []string{"rabbitmqctl"}
		}
		vhosts, err := exec.CommandContext(ctx, ctl[0], append(ctl[1:], "-q", "list_vhosts")...).Output()
		if err != nil {
			t.Errorf("list vhosts: %v", err)
		} else if strings.Contains("\n"+string(vhosts)+"\n", "\n"+r.vhost+"\n") {
			t.Errorf("vhost %s still exists", r.vhost)
		}
	}
	if pids := demoLeftovers(r); len(pids) > 0 {
		t.Errorf("demo processes left running: %v", pids)
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// demoLeftovers lists live processes of one demo run: the agent and its
// sensor carry its API URL in their environment, the API its work dir on
// its command line.
func demoLeftovers(r demoResources) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err != nil || isZombieStat(string(st)) {
			continue
		}
		if strings.Contains(string(env), "ATTUNE_API_URL="+r.api+"\x00") || strings.Contains(string(cmdline), r.workDir) {
			pids = append(pids, pid)
		}
	}
	return pids
}
