package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// sensorlog_e2e_test.go proves the sensor log streams (CONTRACT §13) with
// the real binary, real PostgreSQL and the strict API double: output read
// back through GET /api/v1/sensors/{ref}/logs/{stream} byte for byte across
// rotations and a restart, every version sealed after a controlled stop,
// and the fault rules.

// newLogStack is a current-generation stack whose API double serves the
// log endpoints on the test database.
func newLogStack(t *testing.T) (*testStack, *pgxpool.Pool) {
	t.Helper()
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	cfg, err := pgxpool.ParseConfig(s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = "attune, public"
	cfg.MaxConns = 6
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s.api.logs.attach(pool)
	return s, pool
}

// waitLogEquals waits until the API serves exactly want for ref's stream.
func waitLogEquals(t *testing.T, s *testStack, a *agentProc, ref, stream string, want []byte, timeout time.Duration) {
	t.Helper()
	var got []byte
	var status int
	if !waitUntil(timeout, func() bool {
		status, got = readSensorLog(t, s.api, ref, stream)
		return status == 200 && bytes.Equal(got, want)
	}) {
		t.Fatalf("%s %s through the API: status %d, %d bytes, want %d bytes\nfirst difference at %d\nagent log:\n%s",
			ref, stream, status, len(got), len(want), firstDiff(got, want), tail(a.stderr.String()+a.stdout.String(), 4000))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// expectedRunOutput is what logSensorScript prints in run n.
func expectedRunOutput(n, lines int) (stdout, stderr []byte) {
	var o, e bytes.Buffer
	for i := range lines {
		fmt.Fprintf(&o, "run %d stdout line %04d the quick brown fox jumps over the lazy dog\n", n, i)
	}
	fmt.Fprintf(&e, "run %d stderr line\n", n)
	return o.Bytes(), e.Bytes()
}

// logSensorScript prints `lines` numbered lines on stdout and one on stderr
// per run; the first run then exits 3 (a crash), later runs stay up.
func logSensorScript(counter string, lines int) string {
	return fmt.Sprintf(`#!/bin/sh
n=$(cat %[1]q 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]q
i=0
while [ $i -lt %[2]d ]; do printf 'run %%d stdout line %%04d the quick brown fox jumps over the lazy dog\n' $n $i; i=$((i+1)); done
echo "run $n stderr line" >&2
if [ $n -eq 1 ]; then exit 3; fi
exec sleep 100000
`, counter, lines)
}

func TestSensorLogsReadBackThroughAPI(t *testing.T) {
	s, pool := newLogStack(t)
	const lines = 200 // 73 bytes a line: 14600 bytes a run, 4 versions at 4096
	s.nativeSensor("chatty", logSensorScript(filepath.Join(s.dir, "count"), lines))
	// A second sensor with its own retention and a stale stderr artifact row
	// (as an older agent might have left it): corrected in place.
	quietID, _ := s.nativeSensor("quiet", faultSleeperScript)
	s.db.exec(`UPDATE sensor SET log_retention_policy = 'days', log_retention_limit = 2 WHERE id = $1`, quietID)
	staleID := s.db.id(`INSERT INTO artifact (ref, scope, owner, type, visibility, classification, retention_policy, retention_limit, name)
	    VALUES ('sensor.testpack.quiet.stderr', 'sensor', 'testpack.quiet', 'file_text', 'public', 'general', 'versions', 1, 'kept') RETURNING id`)
	a := s.start("ATTUNE__ARTIFACTS__SENSOR_LOG_MAX_BYTES=4096")
	o1, e1 := expectedRunOutput(1, lines)
	o2, e2 := expectedRunOutput(2, lines)
	// The first run crashes, the second is the restart: both in order.
	waitLogEquals(t, s, a, "testpack.chatty", "stdout", append(o1, o2...), 60*time.Second)
	waitLogEquals(t, s, a, "testpack.chatty", "stderr", append(e1, e2...), 30*time.Second)

	ctx := context.Background()
	var scope, owner, typ, vis, class, policy, ctype string
	var limit int
	if err := pool.QueryRow(ctx, `SELECT scope::text, owner, type::text, visibility::text, classification::text,
	        retention_policy::text, retention_limit, content_type FROM artifact WHERE ref = 'sensor.testpack.chatty.stdout'`).
		Scan(&scope, &owner, &typ, &vis, &class, &policy, &limit, &ctype); err != nil {
		t.Fatalf("stdout artifact row: %v", err)
	}
	if scope != "sensor" || owner != "testpack.chatty" || typ != "file_text" || vis != "private" ||
		class != "runtime_log" || policy != "versions" || limit != 4 || ctype != "text/plain" {
		t.Errorf("artifact row: scope %s owner %s type %s visibility %s classification %s retention %s/%d content type %s",
			scope, owner, typ, vis, class, policy, limit, ctype)
	}
	var qID int64
	var qVis, qClass, qPolicy, qName string
	var qLimit, qRows int
	if err := pool.QueryRow(ctx, `SELECT id, visibility::text, classification::text, retention_policy::text, retention_limit, name,
	        (SELECT count(*) FROM artifact WHERE ref LIKE 'sensor.testpack.quiet.%')
	   FROM artifact WHERE ref = 'sensor.testpack.quiet.stderr'`).Scan(&qID, &qVis, &qClass, &qPolicy, &qLimit, &qName, &qRows); err != nil {
		t.Fatalf("quiet stderr artifact: %v", err)
	}
	if qID != staleID || qVis != "private" || qClass != "runtime_log" || qPolicy != "days" || qLimit != 2 || qName != "kept" || qRows != 2 {
		t.Errorf("stale artifact row: id %d (was %d) %s %s %s/%d name %q, %d quiet rows; want it corrected in its four policy columns only, 2 rows",
			qID, staleID, qVis, qClass, qPolicy, qLimit, qName, qRows)
	}
	var versions int
	pool.QueryRow(ctx, `SELECT count(*) FROM artifact_version v JOIN artifact a ON a.id = v.artifact WHERE a.ref = 'sensor.testpack.chatty.stdout'`).Scan(&versions)
	if versions < 6 { // ≥ 4 rotations per run of 14600 bytes at 4096, two runs
		t.Errorf("stdout versions: %d, want at least 6 (rotation at 4096 bytes over two runs)", versions)
	}
	rows, err := pool.Query(ctx, `SELECT v.version, v.file_path, v.created_by, v.meta->>'sensor_ref', v.meta->>'stream', l.max_unflushed_bytes, l.max_unflushed_milliseconds
	  FROM artifact_version v JOIN artifact a ON a.id = v.artifact JOIN log_stream l ON l.artifact_version = v.id
	 WHERE a.ref = 'sensor.testpack.chatty.stderr' ORDER BY v.version`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n int
		var path, by, sref, stream string
		var mb, ms int64
		rows.Scan(&n, &path, &by, &sref, &stream, &mb, &ms)
		if path != fmt.Sprintf("sensor/testpack/chatty/stderr/v%d.txt", n) || by != "sensor" || sref != "testpack.chatty" ||
			stream != "stderr" || mb != 1<<20 || ms != 500 {
			t.Errorf("stderr version %d: file_path %s created_by %s meta %s/%s log_stream %d bytes %d ms", n, path, by, sref, stream, mb, ms)
		}
	}
	rows.Close()

	// The local file stays (stderr_excerpt, legacy fallback).
	local, err := os.ReadFile(filepath.Join(s.dir, "artifacts", "sensors", "testpack.chatty", "stderr.log"))
	if err != nil || !bytes.Equal(local, append(e1, e2...)) {
		t.Errorf("local stderr.log: %q (%v), want %q", local, err, append(e1, e2...))
	}

	if code := a.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("agent exit code %d", code)
	}
	var pending, unsealed int
	pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE v.body_state <> 'ready'), count(*) FILTER (WHERE NOT l.sealed)
	  FROM artifact_version v JOIN log_stream l ON l.artifact_version = v.id`).Scan(&pending, &unsealed)
	if pending != 0 || unsealed != 0 {
		t.Errorf("after a controlled stop: %d versions not ready, %d streams not sealed, want 0 and 0", pending, unsealed)
	}
	waitLogEquals(t, s, a, "testpack.chatty", "stdout", append(o1, o2...), 5*time.Second)
	if st, body := readSensorLog(t, s.api, "testpack.nosuch", "stdout"); st != 404 || !strings.Contains(string(body), "not found") {
		t.Errorf("unknown sensor: %d %s, want 404", st, body)
	}
}

// TestSensorLogsLegacyGenerationKeepsLocalFiles: without the log_stream
// table the agent writes the local files only and never calls the log API.
func TestSensorLogsLegacyGenerationKeepsLocalFiles(t *testing.T) {
	s := newTestStack(t, "legacy")
	t.Cleanup(s.killLeftovers)
	s.nativeSensor("chatty", logSensorScript(filepath.Join(s.dir, "count"), 20))
	a := s.start()
	o1, _ := expectedRunOutput(1, 20)
	o2, _ := expectedRunOutput(2, 20)
	local := filepath.Join(s.dir, "artifacts", "sensors", "testpack.chatty", "stdout.log")
	if !waitUntil(60*time.Second, func() bool {
		b, _ := os.ReadFile(local)
		return bytes.Equal(b, append(o1, o2...))
	}) {
		b, _ := os.ReadFile(local)
		t.Fatalf("local stdout.log %q, want both runs; agent log:\n%s", b, tail(a.stderr.String(), 3000))
	}
	if code := a.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("agent exit code %d", code)
	}
	if puts, seals, _ := s.api.logs.counts(); puts != 0 || seals != 0 {
		t.Errorf("legacy generation: %d segment PUTs and %d seals, want none", puts, seals)
	}
}
