package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6} // 1..10, unsorted
	tests := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"median of ten is the fifth", xs, 50, 5},
		{"p95 of ten is the tenth", xs, 95, 10},
		{"p90 of ten is the ninth", xs, 90, 9},
		{"p100 is the max", xs, 100, 10},
		{"tiny p is the min", xs, 0.1, 1},
		{"one sample", []float64{42}, 50, 42},
		{"p95 of thirty is the 29th", seq(30), 95, 29},
		{"p50 of thirty is the 15th", seq(30), 50, 15},
		{"empty", nil, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.xs, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.xs, tt.p, got, tt.want)
			}
		})
	}
	if xs[0] != 5 {
		t.Error("percentile sorted its input in place")
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i + 1)
	}
	return out
}

func TestParseProcStatCPU(t *testing.T) {
	tests := []struct {
		name         string
		stat         string
		utime, stime int64
		wantErr      bool
	}{
		{"plain", "1234 (attune-sensor-) S 1 1234 1234 0 -1 4194560 900 0 0 0 317 52 0 0 20 0 11 0 4242 1000 2000", 317, 52, false},
		{"name with spaces and parens", "77 (a b) c)) R 1 77 77 0 -1 0 0 0 0 0 9 8 0 0 20 0 1 0 5", 9, 8, false},
		{"no closing paren", "77 (broken S 1", 0, 0, true},
		{"too short", "77 (x) S 1 2 3", 0, 0, true},
		{"not a number", "77 (x) S 1 77 77 0 -1 0 0 0 0 0 u 8 0", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, s, err := parseProcStatCPU(tt.stat)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errProcFormat) {
				t.Errorf("error %v does not wrap errProcFormat", err)
			}
			if u != tt.utime || s != tt.stime {
				t.Errorf("got %d+%d, want %d+%d", u, s, tt.utime, tt.stime)
			}
		})
	}
}

func TestParseProcStatusAndSigIgn(t *testing.T) {
	status := "Name:\tsleep\nState:\tS (sleeping)\nVmHWM:\t    1536 kB\nVmRSS:\t    1400 kB\nThreads:\t1\nSigIgn:\t0000000000004000\n"
	got := parseProcStatus([]byte(status))
	if got["VmHWM"] != 1536 || got["VmRSS"] != 1400 || got["Threads"] != 1 {
		t.Errorf("parseProcStatus = %v", got)
	}
	if _, ok := got["State"]; ok {
		t.Error("a non-numeric field was kept")
	}
	tests := []struct {
		name    string
		status  string
		want    bool
		wantErr bool
	}{
		{"SIGTERM ignored", status, true, false},
		{"only SIGINT ignored", "SigIgn:\t0000000000000002\n", false, false},
		{"nothing ignored", "SigIgn:\t0000000000000000\n", false, false},
		{"SIGTERM among others", "SigIgn:\t0000000000384004\n", true, false},
		{"no SigIgn line", "Name:\tx\n", false, true},
		{"garbage", "SigIgn:\tzz\n", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ign, err := sigIgnHasTERM(tt.status)
			if (err != nil) != tt.wantErr || ign != tt.want {
				t.Errorf("sigIgnHasTERM = %v, %v; want %v, err %v", ign, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestIsZombieStatLine(t *testing.T) {
	if !isZombieStatLine("12 (sh) Z 1 12") || isZombieStatLine("12 (a) Z) S 1 12") || isZombieStatLine("12 (sh)") {
		t.Error("isZombieStatLine misreads the state after the last ')'")
	}
}

func TestParseAgentLogLine(t *testing.T) {
	read := time.Unix(1700000000, 0)
	tests := []struct {
		name   string
		raw    string
		ok     bool
		msg    string
		sensor string
		nanos  int
	}{
		{"sensor line", `{"time":"2026-11-27T06:01:02.123456789Z","level":"WARN","msg":"sensor exited","sensor":"benchpack.c0001","pid":42}`,
			true, "sensor exited", "benchpack.c0001", 123456789},
		{"no sensor", `{"time":"2026-11-27T06:01:02.5Z","level":"INFO","msg":"Attune Sensor Agent is ready","worker_id":1}`,
			true, "Attune Sensor Agent is ready", "", 500000000},
		{"after a piece of a gctrace line", `gc 7 @4.1s 1%: 0.06+{"time":"2026-11-27T06:01:02.25Z","level":"INFO","msg":"sensor started","sensor":"benchpack.s0001"}`,
			true, "sensor started", "benchpack.s0001", 250000000},
		{"not JSON", "panic: something", false, "", "", 0},
		{"no time", `{"level":"INFO","msg":"x"}`, false, "", "", 0},
		{"no message", `{"time":"2026-11-27T06:01:02Z","level":"INFO"}`, false, "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, ok := parseAgentLogLine([]byte(tt.raw), read)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if l.Msg != tt.msg || l.Sensor != tt.sensor || l.Time.Nanosecond() != tt.nanos || !l.Read.Equal(read) {
				t.Errorf("got %+v", l)
			}
		})
	}
}

func TestClassifyAgentStatement(t *testing.T) {
	tests := []struct{ query, want string }{
		{"SELECT s.id, s.ref FROM sensor s\nJOIN runtime rt ON rt.id = s.runtime WHERE s.enabled", "reconcile-sensors"},
		{"SELECT t.sensor FROM trigger t\nLEFT JOIN rule r ON r.trigger = t.id WHERE t.sensor = ANY($1)", "reconcile-rules"},
		{"SELECT runtime, version FROM runtime_version WHERE runtime = ANY($1)", "reconcile-versions"},
		{"UPDATE worker SET last_heartbeat = now() WHERE id = $1", "heartbeat"},
		{"UPDATE worker SET capabilities = $2 WHERE id = $1", "heartbeat"},
		{"INSERT INTO sensor_process (sensor) VALUES ($1)", "other"},
	}
	for _, tt := range tests {
		if got := classifyAgentStatement(tt.query); got != tt.want {
			t.Errorf("classifyAgentStatement(%q) = %q, want %q", tt.query, got, tt.want)
		}
	}
}

// TestSummaryFileFormat: the item scripts read name<TAB>number lines, and
// run.sh rejects anything that is not a number.
func TestSummaryFileFormat(t *testing.T) {
	s := newSummary()
	s.put("n", 30)
	s.putDist("lat_ms", []float64{3, 1, 2})
	s.put("n", 31) // replaced, not repeated
	p := filepath.Join(t.TempDir(), "summary.tsv")
	if err := s.write(p); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := "n\t31\nlat_ms_n\t3\nlat_ms_p50\t2\nlat_ms_p95\t3\nlat_ms_min\t1\nlat_ms_max\t3\n"
	if string(b) != want {
		t.Errorf("summary:\n%s\nwant:\n%s", b, want)
	}
	if got := formatNumber(1.23456); got != "1.235" {
		t.Errorf("formatNumber(1.23456) = %q", got)
	}
	empty := newSummary()
	empty.putDist("none", nil)
	if len(empty.keys) != 1 || !strings.HasSuffix(empty.keys[0], "_n") {
		t.Errorf("an empty distribution should record only its count, got %v", empty.keys)
	}
}

func TestParseGCTrace(t *testing.T) {
	read := time.Unix(1700000000, 0)
	line := "gc 8 @14.893s 0%: 0.52+20+0.006 ms clock, 1.0+0.51/13/26+0.013 ms cpu, 52->53->36 MB, 54 MB goal, 2 MB stacks, 0 MB globals, 2 P\n"
	g, ok := parseGCTrace([]byte(line), read)
	if !ok || g.Start != 52 || g.End != 53 || g.Live != 36 || g.Stacks != 2 || !g.Read.Equal(read) {
		t.Errorf("parseGCTrace = %+v, %v", g, ok)
	}
	if _, ok := parseGCTrace([]byte(`{"time":"2026-11-27T06:01:02Z","msg":"x"}`), read); ok {
		t.Error("a log line parsed as a gctrace line")
	}
}
