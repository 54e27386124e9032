package main

import (
	"context"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestAgentKeepsSecrets runs the agent end to end with a database password,
// a broker password and a JWT secret that are unique strings, at debug
// level with sensor output mirrored into its log, and walks it through the
// paths that log URLs and errors: a refused token request (retried with a
// fresh worker JWT), a database outage and a broker outage. Afterwards none of the agent's
// output, the sensor log files, the status file, the environment of any
// sensor process (descendants included) or what a sensor dumped of its own
// environment contains any of the three.
func TestAgentKeepsSecrets(t *testing.T) {
	t.Parallel()
	suffix := randomSuffix()
	role, pgPass := "faults_"+suffix, "pgpw-"+suffix+"-secret"
	faultCreateRole(t, role, pgPass) // before the stack: dropped after its database
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	s.db.exec(`GRANT USAGE, CREATE ON SCHEMA attune TO ` + role)
	s.db.exec(`GRANT ALL ON ALL TABLES IN SCHEMA attune TO ` + role)
	s.db.exec(`GRANT ALL ON ALL SEQUENCES IN SCHEMA attune TO ` + role)

	mqUser, mqPass := "faults-"+suffix, "mqpw-"+suffix+"-secret"
	vhost := testVhostName(t, s.amqpURL)
	testBrokerCtl(t, "add_user", mqUser, mqPass)
	t.Cleanup(func() { faultBrokerCtlCleanup(t, "delete_user", mqUser) })
	testBrokerCtl(t, "set_permissions", "-p", vhost, mqUser, ".*", ".*", ".*")

	jwtSecret := "jwt-" + suffix + "-secret"
	s.api.secret = jwtSecret
	secrets := []string{pgPass, mqPass, jwtSecret}

	dbURL := faultWithUser(t, s.dbURL, role, pgPass)
	amqpURL := faultWithUser(t, s.amqpURL, mqUser, mqPass)
	dbProxy, dbVia := newFaultProxyFor(t, dbURL)
	mqProxy, mqVia := newFaultProxyFor(t, amqpURL)

	dump := filepath.Join(s.dir, "envdump.json")
	s.sensorWithRule("shell_sensor", "shell_sensor.sh", "Shell", "", true)
	s.sensorWithRule("python_sensor", "python_sensor.py", "Python", "", true)
	s.sensorWithRule("envdump", "envdump.py", "Python", `{"dump_path": "`+dump+`"}`, true)
	s.api.scriptToken(fakeTokenAnswer{Status: 401}) // the client's refresh-and-retry path
	env := agentEnv(dbVia, mqVia, s.api.URL(), s.dir, "LANG=C.UTF-8", "ATTUNE__SENSOR__WORKER_NAME="+s.name,
		"ATTUNE__LOG__LEVEL=debug", "ATTUNE__LOG__MIRROR_RUNTIME_STDOUT_TO_STDIO=true",
		"ATTUNE__LOG__MIRROR_RUNTIME_STDERR_TO_STDIO=true")
	env = faultSetEnv(env, "ATTUNE__SECURITY__JWT_SECRET", jwtSecret)
	a := startAgent(t, env)

	s.api.waitEvents(t, 2, 60*time.Second) // shell and python; envdump only dumps
	if !waitUntil(20*time.Second, func() bool { _, err := os.Stat(dump); return err == nil }) {
		t.Fatal("envdump wrote nothing")
	}

	// Error paths: the database and the broker go away and come back.
	mark := markAgentLog(a)
	dbProxy.cut()
	mark.waitSince(t, 10*time.Second, "heartbeat failed, retrying every interval")
	dbProxy.restore()
	mark.waitSince(t, 10*time.Second, "heartbeat recovered")
	mqProxy.cut()
	mark.waitSince(t, 10*time.Second, "broker unavailable")
	mqProxy.restore()
	mark.waitSince(t, 30*time.Second, "broker available")

	// Every sensor process and descendant, while they run.
	pids := s.sensorPIDs("")
	if len(pids) < 3 {
		t.Fatalf("only %d sensor processes running", len(pids))
	}
	places := map[string][]byte{}
	for _, pid := range pids {
		if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ")); err == nil {
			places["environ of sensor pid "+strconv.Itoa(pid)] = b
		}
	}
	status, err := os.ReadFile(filepath.Join(s.dir, "status.json"))
	if err != nil {
		t.Fatalf("status file: %v", err)
	}
	places["status file"] = status

	if code := a.stop(syscall.SIGTERM, 40*time.Second); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
	places["agent stderr"] = []byte(a.stderr.String())
	places["agent stdout"] = []byte(a.stdout.String())
	filepath.WalkDir(filepath.Join(s.dir, "artifacts"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			places[p] = b
		}
		return nil
	})
	places["envdump"], _ = os.ReadFile(dump)
	if len(places["agent stderr"]) < 1000 || !strings.Contains(string(places["agent stderr"]), "shell sensor ready") {
		t.Fatalf("agent log too thin to prove anything (%d bytes, no mirrored sensor line)", len(places["agent stderr"]))
	}
	for where, b := range places {
		for _, secret := range secrets {
			if strings.Contains(string(b), secret) {
				t.Errorf("%s contains a secret (%s...)", where, secret[:5])
			}
		}
	}
	t.Logf("searched %d places (%d bytes of agent log) for 3 secrets", len(places), len(places["agent stderr"]))
}

// faultCreateRole creates a PostgreSQL login role with a password for the
// test and drops it when the test ends (after the databases it was granted on).
func faultCreateRole(t *testing.T, role, password string) {
	t.Helper()
	requireServices(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, testAdminDatabaseURL())
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, `CREATE ROLE `+role+` LOGIN PASSWORD '`+password+`'`); err != nil {
		t.Fatalf("create role: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, testAdminDatabaseURL())
		if err != nil {
			t.Errorf("drop role %s: %v", role, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP ROLE IF EXISTS `+role); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
}

// faultWithUser returns rawURL with user and password replaced.
func faultWithUser(t *testing.T, rawURL, user, password string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}

// faultSetEnv replaces NAME's entry in env (or appends one): agentEnv's
// entries come first and the first assignment wins, so extras cannot.
func faultSetEnv(env []string, name, value string) []string {
	out := make([]string, 0, len(env)+1)
	done := false
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			if !done {
				out = append(out, name+"="+value)
				done = true
			}
			continue
		}
		out = append(out, kv)
	}
	if !done {
		out = append(out, name+"="+value)
	}
	return out
}

// faultBrokerCtlCleanup runs rabbitmqctl from a t.Cleanup, where the test's
// context is already cancelled.
func faultBrokerCtlCleanup(t *testing.T, args ...string) {
	ctl := strings.Fields(os.Getenv("ATTUNE_TEST_RABBITMQCTL"))
	if len(ctl) == 0 {
		ctl = []string{"rabbitmqctl"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, ctl[0], append(append(ctl[1:], "-q"), args...)...).CombinedOutput(); err != nil {
		t.Errorf("rabbitmqctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// faultUnprivileged is the uid and gid the least-privilege test runs the agent as.
const faultUnprivileged = 1000

// TestAgentLeastPrivilege runs the agent as uid 1000 in a tree where only the
// packs, runtime_envs and artifacts directories and the status file's
// directory are writable to it (HOME and everything else are root's and
// read-only), with a system PATH: it registers, builds a virtualenv,
// starts a shell, a Python and a virtualenv sensor that each post their
// event, writes its status file and sensor logs, and stops cleanly.
func TestAgentLeastPrivilege(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("this test starts the agent as uid 1000 and needs root to do so")
	}
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	base, err := os.MkdirTemp("", "attune-lp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "attune-sensor-agent")
	if out, err := exec.Command("install", "-m", "0755", buildAgent(t), bin).CombinedOutput(); err != nil {
		t.Fatalf("install agent: %v: %s", err, out)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(s.dir, "packs"), filepath.Join(base, "packs")).CombinedOutput(); err != nil {
		t.Fatalf("copy packs: %v: %s", err, out)
	}
	writable := []string{"packs", "runtime_envs", "artifacts", "run"}
	for _, d := range writable {
		p := filepath.Join(base, d)
		os.MkdirAll(p, 0o755)
		if out, err := exec.Command("chown", "-R", "1000:1000", p).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v: %s", p, err, out)
		}
	}

	s.sensorWithRule("shell_sensor", "shell_sensor.sh", "Shell", "", true)
	s.sensorWithRule("python_sensor", "python_sensor.py", "Python", "", true)
	venvPack := s.db.pack("venvpack")
	venvRT := s.db.runtime("core.pyvenv", "Python", `{
	  "interpreter": {"binary": "python3", "args": ["-u"]},
	  "environment": {"env_type": "virtualenv", "create_command": ["python3", "-m", "venv", "{env_dir}"], "interpreter_path": "{env_dir}/bin/python3"},
	  "dependencies": {"manifest_file": "requirements.txt", "install_command": ["{interpreter}", "-m", "pip", "install", "-r", "{manifest_path}"]},
	  "env_vars": {"PYTHONPATH": {"value": "{pack_dir}/lib", "operation": "prepend"}, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}}`)
	vs := s.db.sensor(venvPack, "venvpack", "venvpack.venv_sensor", "venv_sensor.py", venvRT, "")
	vt := s.db.trigger(venvPack, "venvpack", "venvpack.venv_sensor_trigger", vs)
	s.db.rule(venvPack, "venvpack", "venvpack.venv_sensor_rule", vt, `{}`, true)
	publishRelease(t, s.db, filepath.Join(base, "packs"), "venvpack", venvPack, "1.0.0")

	env := agentEnv(s.dbURL, s.amqpURL, s.api.URL(), base, "LANG=C.UTF-8", "ATTUNE__SENSOR__WORKER_NAME="+s.name)
	env = faultSetEnv(env, "ATTUNE_SENSOR_STATUS_FILE", filepath.Join(base, "run", "status.json"))
	env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + base}, env...)
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Dir = base
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL,
		Credential: &syscall.Credential{Uid: faultUnprivileged, Gid: faultUnprivileged}}
	a := &agentProc{t: t, cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = a.stdout, a.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent as uid %d: %v", faultUnprivileged, err)
	}
	go func() { cmd.Wait(); a.code = cmd.ProcessState.ExitCode(); close(a.done) }()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("agent stderr:\n%s", a.stderr.String())
		}
	})

	events := s.api.waitEvents(t, 3, 120*time.Second)
	seen := map[string]bool{}
	for _, e := range events {
		seen[e.SensorRef] = true
	}
	for _, ref := range []string{"testpack.shell_sensor", "testpack.python_sensor", "venvpack.venv_sensor"} {
		if !seen[ref] {
			t.Errorf("no event from %s", ref)
		}
	}
	if uid := faultProcUID(t, cmd.Process.Pid); uid != faultUnprivileged {
		t.Errorf("agent runs as uid %d", uid)
	}
	for _, pid := range s.sensorPIDs("") {
		if uid := faultProcUID(t, pid); uid != faultUnprivileged {
			t.Errorf("sensor process %d runs as uid %d", pid, uid)
		}
	}
	if !waitUntil(10*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(base, "run", "status.json"))
		return err == nil
	}) {
		t.Error("no status file in the writable run directory")
	}
	for _, p := range []string{filepath.Join(base, "artifacts/sensors/testpack.shell_sensor/stdout.log"),
		filepath.Join(runtimeEnvDirOf(t, s.gen, base, "venvpack", "python"), "bin/python3")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if status, _, _ := s.workerRow(); status != "active" {
		t.Errorf("worker row %s, want active", status)
	}
	if code := a.stop(syscall.SIGTERM, 40*time.Second); code != exitOK {
		t.Errorf("exit code %d, want 0", code)
	}
	// Nothing appeared where the agent had no business writing.
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		if n := e.Name(); n != "attune-sensor-agent" && !slices.Contains(writable, n) {
			t.Errorf("unexpected %s in the agent's read-only tree", n)
		}
	}
}

// faultProcUID reads the real uid of pid.
func faultProcUID(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatalf("read status of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	t.Fatalf("no Uid line for %d", pid)
	return -1
}
