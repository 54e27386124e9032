package main

// processrecorder_test.go proves the sensor_process writer against real
// PostgreSQL on the current fixture: each transition writes the columns
// CONTRACT §7 names and leaves the others alone, and a mass start of 1000
// sensors loses no row.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// processRowState is one sensor_process row as the tests read it.
type processRowState struct {
	status                   string
	pid, exitCode, signal    *int
	failures, rules, alerted int
	started, stopped, next   *time.Time
	alertedAt                *time.Time
	excerpt, logRef          *string
	meta                     string
}

type recorderFixture struct {
	db       *seedDB
	rec      *processRecorder
	workerID int64
	packID   int64
	rtID     int64
	dir      string
	dbURL    string
}

func newRecorderFixture(t *testing.T) *recorderFixture {
	t.Helper()
	dbURL := newTestDB(t, "current")
	db := newSeedDB(t, dbURL)
	f := &recorderFixture{db: db, dir: t.TempDir(), dbURL: dbURL}
	f.packID = db.pack("testpack")
	f.rtID = db.runtime("core.native", "Native", `{}`)
	f.workerID = db.id(`INSERT INTO worker (name, worker_type, worker_role) VALUES ('sensor-rows', 'local', 'sensor') RETURNING id`)
	f.rec = newProcessRecorder(db.pool, schemaInfo{SensorProcess: true}, "sensor-rows", f.dir,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.rec.setWorkerID(f.workerID)
	t.Cleanup(func() { f.rec.close(5 * time.Second) })
	return f
}

func (f *recorderFixture) spec(t *testing.T, name string, rules int) sensorSpec {
	t.Helper()
	ref := "testpack." + name
	sp := sensorSpec{ID: f.db.sensor(f.packID, "testpack", ref, name, f.rtID, ""), Ref: ref, PackRef: "testpack"}
	for i := range rules {
		sp.Rules = append(sp.Rules, sensorRule{ID: int64(i + 1), Ref: fmt.Sprintf("testpack.r%d", i)})
	}
	return sp
}

func (f *recorderFixture) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !f.rec.flush(ctx) {
		t.Fatal("sensor_process writer did not drain within 20 s")
	}
}

// row reads the sensor's row; ok is false when there is none.
func (f *recorderFixture) row(t *testing.T, sensor int64) (processRowState, bool) {
	t.Helper()
	var r processRowState
	err := f.db.pool.QueryRow(context.Background(), `SELECT status::text, pid, last_exit_code, last_signal,
		consecutive_failures, active_rule_count, last_alerted_failure_count, last_started_at, last_stopped_at,
		next_restart_at, last_alerted_at, stderr_excerpt, log_artifact_ref, meta::text
		FROM sensor_process WHERE sensor = $1 AND worker = $2`, sensor, f.workerID).Scan(&r.status, &r.pid, &r.exitCode,
		&r.signal, &r.failures, &r.rules, &r.alerted, &r.started, &r.stopped, &r.next, &r.alertedAt, &r.excerpt, &r.logRef, &r.meta)
	if err != nil {
		if strings.Contains(err.Error(), "no rows") {
			return r, false
		}
		t.Fatal(err)
	}
	return r, true
}

func intIs(p *int, want int) bool { return p != nil && *p == want }

// TestProcessRowsPerTransition walks one sensor through spawn, crash,
// restart, signal death, stop and a fresh start, checking every column the
// contract names after each step.
func TestProcessRowsPerTransition(t *testing.T) {
	f := newRecorderFixture(t)
	sp := f.spec(t, "walker", 2)
	logPath := sensorStderrLogPath(f.dir, sp.Ref)
	os.MkdirAll(filepath.Dir(logPath), 0o755)

	// A stale row from an earlier agent: spawn must replace meta and clear the rest.
	f.db.exec(`INSERT INTO sensor_process (sensor, sensor_ref, worker, worker_name, status, consecutive_failures,
		last_exit_code, last_signal, stderr_excerpt, last_alerted_failure_count, last_alerted_at, meta, last_stopped_at, next_restart_at)
		VALUES ($1, $2, $3, 'sensor-rows', 'backoff', 7, 9, 15, 'old', 5, now(), '{"stale":true}', now(), now())`,
		sp.ID, sp.Ref, f.workerID)

	t.Run("fresh spawn", func(t *testing.T) {
		f.rec.sensorStarted(sp, 1001, 0)
		f.flush(t)
		r, _ := f.row(t, sp.ID)
		if r.status != "running" || !intIs(r.pid, 1001) || r.failures != 0 || r.alerted != 0 || r.alertedAt != nil ||
			r.exitCode != nil || r.signal != nil || r.stopped != nil || r.next != nil || r.excerpt != nil ||
			r.started == nil || r.rules != 2 || r.logRef == nil || *r.logRef != "sensor.testpack.walker.stderr" ||
			r.meta != `{"manager": "attune-sensor-agent"}` {
			t.Errorf("after a fresh spawn: %+v", r)
		}
	})
	t.Run("crash with exit code and excerpt", func(t *testing.T) {
		var b strings.Builder
		for i := range 100 {
			fmt.Fprintf(&b, "line %d\n", i)
		}
		os.WriteFile(logPath, []byte(b.String()), 0o644)
		next := time.Now().Add(5 * time.Second)
		f.rec.sensorExited(sp, exitStatus{Code: 3, At: time.Now()}, 1, next)
		f.flush(t)
		r, _ := f.row(t, sp.ID)
		if r.status != "backoff" || r.pid != nil || r.failures != 1 || !intIs(r.exitCode, 3) || r.signal != nil ||
			r.stopped == nil || r.next == nil || r.next.Sub(next).Abs() > time.Millisecond || r.excerpt == nil {
			t.Fatalf("after a crash: %+v", r)
		}
		lines := strings.Split(*r.excerpt, "\n")
		if len(lines) != 80 || lines[0] != "line 20" || lines[79] != "line 99" {
			t.Errorf("excerpt has %d lines, %q .. %q; want the last 80 (line 20 .. line 99)", len(lines), lines[0], lines[len(lines)-1])
		}
	})
	t.Run("restart keeps the failure count", func(t *testing.T) {
		f.db.exec(`UPDATE sensor_process SET last_alerted_failure_count = 1 WHERE sensor = $1`, sp.ID)
		f.rec.sensorStarted(sp, 1002, 1)
		f.flush(t)
		r, _ := f.row(t, sp.ID)
		if r.status != "running" || !intIs(r.pid, 1002) || r.failures != 1 || r.alerted != 1 ||
			r.exitCode != nil || r.excerpt != nil || r.next != nil || r.stopped != nil {
			t.Errorf("after a restart: %+v", r)
		}
	})
	t.Run("signal death has no exit code", func(t *testing.T) {
		os.WriteFile(logPath, nil, 0o644)
		f.rec.sensorExited(sp, exitStatus{Code: 128 + 9, Signal: syscall.SIGKILL, At: time.Now()}, 2, time.Now().Add(10*time.Second))
		f.flush(t)
		r, _ := f.row(t, sp.ID)
		if r.status != "backoff" || r.exitCode != nil || !intIs(r.signal, 9) || r.failures != 2 || r.excerpt != nil {
			t.Errorf("after a signal death: %+v", r)
		}
	})
	t.Run("stop leaves failures and last exit", func(t *testing.T) {
		f.rec.sensorExited(sp, exitStatus{Code: 4, At: time.Now()}, 3, time.Now().Add(20*time.Second))
		f.rec.sensorStopped(sp, exitStatus{Code: 4, At: time.Now()})
		f.flush(t)
		r, _ := f.row(t, sp.ID)
		if r.status != "stopped" || r.pid != nil || r.next != nil || r.stopped == nil || r.failures != 3 || !intIs(r.exitCode, 4) {
			t.Errorf("after a stop: %+v", r)
		}
	})
	t.Run("fresh start resets failures and alert marker", func(t *testing.T) {
		f.db.exec(`UPDATE sensor_process SET last_alerted_failure_count = 3, last_alerted_at = now() WHERE sensor = $1`, sp.ID)
		f.rec.sensorStarted(sp, 1003, 0)
		f.flush(t)
		r, _ := f.row(t, sp.ID)
		if r.failures != 0 || r.alerted != 0 || r.alertedAt != nil || r.exitCode != nil || r.signal != nil {
			t.Errorf("after a fresh start: %+v", r)
		}
	})
}

// TestProcessRowsStartFailure: a launch that fails before any process
// exists writes no row for a sensor that never ran, and on an existing row
// shows the retry without inventing an exit.
func TestProcessRowsStartFailure(t *testing.T) {
	f := newRecorderFixture(t)
	never := f.spec(t, "never", 1)
	f.rec.sensorExited(never, exitStatus{Code: -1, At: time.Now()}, 1, time.Now().Add(5*time.Second))
	f.rec.sensorStopped(never, exitStatus{Code: -1, At: time.Now()})
	f.flush(t)
	if r, ok := f.row(t, never.ID); ok {
		t.Errorf("a sensor that never had a process has a row: %+v", r)
	}

	ran := f.spec(t, "ran", 1)
	f.rec.sensorStarted(ran, 2001, 0)
	f.rec.sensorExited(ran, exitStatus{Code: 2, At: time.Now()}, 1, time.Now().Add(5*time.Second))
	f.flush(t)
	f.rec.sensorExited(ran, exitStatus{Code: -1, At: time.Now()}, 2, time.Now().Add(10*time.Second))
	f.flush(t)
	r, _ := f.row(t, ran.ID)
	if r.status != "backoff" || r.pid != nil || r.failures != 2 || !intIs(r.exitCode, 2) || r.next == nil {
		t.Errorf("after a failed relaunch: %+v; want backoff, no pid, 2 failures, the last real exit code 2", r)
	}
}

// TestProcessRowsCoalesceAndSurviveOutage: transitions queued while the
// writer cannot reach the database (here: no worker id yet) are written in
// order once it can, as their latest state, and the calls never waited.
func TestProcessRowsCoalesceAndSurviveOutage(t *testing.T) {
	f := newRecorderFixture(t)
	sp := f.spec(t, "coalesced", 1)
	f.rec.setWorkerID(0) // rows must wait
	start := time.Now()
	for i := range 50 {
		f.rec.sensorStarted(sp, 3000+i, i)
		f.rec.sensorExited(sp, exitStatus{Code: 1, At: time.Now()}, i+1, time.Now().Add(time.Second))
	}
	f.rec.sensorStarted(sp, 3999, 50)
	if took := time.Since(start); took > time.Second {
		t.Errorf("101 transitions took %v to queue; they must not wait for the database", took)
	}
	if _, ok := f.row(t, sp.ID); ok {
		t.Fatal("row written without a worker id")
	}
	f.rec.setWorkerID(f.workerID)
	f.flush(t)
	r, ok := f.row(t, sp.ID)
	if !ok || r.status != "running" || !intIs(r.pid, 3999) || r.failures != 50 || r.exitCode != nil {
		t.Errorf("coalesced row: %+v (exists %v); want running pid 3999 with 50 failures", r, ok)
	}
}

// TestProcessRowsMassStart starts 1000 sensors at once from 1000 goroutines
// and finds every row afterwards.
func TestProcessRowsMassStart(t *testing.T) {
	f := newRecorderFixture(t)
	const n = 1000
	f.db.exec(`INSERT INTO sensor (ref, pack, pack_ref, label, entrypoint, runtime, runtime_ref, enabled)
		SELECT 'testpack.mass' || g, $1, 'testpack', 'mass', 'x', $2, 'core.native', true FROM generate_series(1, $3) g`,
		f.packID, f.rtID, n)
	rows, err := f.db.pool.Query(context.Background(), `SELECT id, ref FROM sensor WHERE ref LIKE 'testpack.mass%'`)
	if err != nil {
		t.Fatal(err)
	}
	var specs []sensorSpec
	for rows.Next() {
		var sp sensorSpec
		rows.Scan(&sp.ID, &sp.Ref)
		specs = append(specs, sp)
	}
	rows.Close()
	if len(specs) != n {
		t.Fatalf("%d sensors seeded, want %d", len(specs), n)
	}
	start := time.Now()
	done := make(chan struct{})
	for i, sp := range specs {
		go func() { f.rec.sensorStarted(sp, 10000+i, 0); done <- struct{}{} }()
	}
	for range specs {
		<-done
	}
	queued := time.Since(start)
	f.flush(t)
	t.Logf("1000 starts queued in %v, all written in %v", queued.Round(time.Microsecond), time.Since(start).Round(time.Millisecond))
	var count int
	f.db.pool.QueryRow(context.Background(), `SELECT count(*) FROM sensor_process WHERE worker = $1 AND status = 'running'
		AND pid >= 10000 AND log_artifact_ref = 'sensor.' || sensor_ref || '.stderr'`, f.workerID).Scan(&count)
	if count != n {
		t.Errorf("%d running rows after a mass start of %d", count, n)
	}
}

// TestStderrTail covers the excerpt as the reference formats it: 80 lines,
// 16 KiB read, "…" first when cut, blanks are none, bytes a TEXT column
// refuses cleaned.
func TestStderrTail(t *testing.T) {
	long := strings.Repeat("x", 300) + "\n"
	for _, c := range []struct {
		name string
		in   string
		cut  bool
		want func(string) bool
	}{
		{"short", "a\nb\n", false, func(s string) bool { return s == "a\nb" }},
		{"80 of 81", strings.Repeat("l\n", 80) + "first?\n", false, func(s string) bool { return strings.Count(s, "\n") == 79 && strings.HasSuffix(s, "first?") }},
		{"cut is marked", "tial\nwhole\n", true, func(s string) bool { return s == "…\ntial\nwhole" }},
		{"CRLF", "a\r\nb\r\n", false, func(s string) bool { return s == "a\nb" }},
		{"blanks are none", " \n\t\n", false, func(s string) bool { return s == "" }},
		{"NUL and bad UTF-8", "a\x00b\xffc\n", false, func(s string) bool { return s == "ab\uFFFDc" }},
		{"long lines", strings.Repeat(long, 50), false, func(s string) bool { return strings.Count(s, "\n") == 49 }},
	} {
		if got := stderrTail([]byte(c.in), c.cut); !c.want(got) {
			t.Errorf("%s: got %q", c.name, got)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "stderr.log")
	if readStderrExcerpt(p) != nil {
		t.Error("missing file gave an excerpt")
	}
	os.WriteFile(p, []byte(strings.Repeat(long, 200)), 0o644) // 60 KiB
	got := readStderrExcerpt(p)
	if got == nil || len(*got) > stderrExcerptMaxBytes+len("…\n") || !strings.HasPrefix(*got, "…\nx") || strings.Count(*got, "\n") > 80 {
		t.Errorf("excerpt of a 60 KiB log: %v", got)
	}
}

// TestProcessRowsStalledDatabase: with the database stalled (through the
// fault proxy: connections open, nothing answers), supervisor calls still
// return at once; once it answers again the rows catch up to the latest
// state, with nothing lost.
func TestProcessRowsStalledDatabase(t *testing.T) {
	direct := newRecorderFixture(t) // seeds; its own recorder stays idle
	proxy, viaProxy := newFaultProxyFor(t, direct.dbURL)
	proxied := newSeedDB(t, viaProxy)
	rec := newProcessRecorder(proxied.pool, schemaInfo{SensorProcess: true}, "sensor-rows", direct.dir,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	rec.setWorkerID(direct.workerID)
	t.Cleanup(func() { proxy.restore(); rec.close(5 * time.Second) })
	f := &recorderFixture{db: direct.db, rec: rec, workerID: direct.workerID, dir: direct.dir}
	specs := []sensorSpec{direct.spec(t, "stall_a", 1), direct.spec(t, "stall_b", 1)}
	for _, sp := range specs {
		rec.sensorStarted(sp, 5000, 0)
	}
	f.flush(t)

	proxy.stall()
	start := time.Now()
	for i := range 200 {
		for _, sp := range specs {
			rec.sensorExited(sp, exitStatus{Code: 1, At: time.Now()}, i+1, time.Now().Add(time.Second))
			rec.sensorStarted(sp, 6000+i, i+1)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("800 transitions took %v with the database stalled; supervisors must not wait for it", took)
	}
	time.Sleep(500 * time.Millisecond) // let a batch get stuck on the stalled connection
	proxy.restore()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if !rec.flush(ctx) {
		t.Fatal("rows not written within 60 s of the database answering again")
	}
	for _, sp := range specs {
		r, _ := f.row(t, sp.ID)
		if r.status != "running" || !intIs(r.pid, 6199) || r.failures != 200 {
			t.Errorf("%s after the stall: %+v; want running pid 6199 with 200 failures", sp.Ref, r)
		}
	}
}
