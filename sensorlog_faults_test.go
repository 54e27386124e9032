package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// sensorlog_faults_test.go: the log streams under API faults (CONTRACT
// §13): an outage costs the sensors nothing and output written after it
// arrives; 5xx answers and timeouts are retried to a byte-exact result; a
// 409 latches only its own version; a 200 MB flood stays within the memory
// bound.

// tickerScript prints "<name> out N" on stdout and "<name> err N" on stderr
// every 100 ms.
func tickerScript(name string) string {
	return fmt.Sprintf("#!/bin/sh\ni=0\nwhile true; do echo \"%[1]s out $i\"; echo \"%[1]s err $i\" >&2; i=$((i+1)); sleep 0.1; done\n", name)
}

// lastTick is the highest N of "<prefix> N" lines in b, -1 when none.
func lastTick(b []byte, prefix string) int {
	re := regexp.MustCompile(regexp.QuoteMeta(prefix) + ` (\d+)\n`)
	last := -1
	for _, m := range re.FindAllSubmatch(b, -1) {
		if n, _ := strconv.Atoi(string(m[1])); n > last {
			last = n
		}
	}
	return last
}

func TestSensorLogsUnderAPIFaults(t *testing.T) {
	s, pool := newLogStack(t)
	s.nativeSensor("ticker", tickerScript("ticker"))
	s.nativeSensor("victim", tickerScript("victim"))
	flakyOut, _ := expectedRunOutput(9, 100)
	s.nativeSensor("flaky", "#!/bin/sh\ni=0\nwhile [ $i -lt 100 ]; do printf 'run 9 stdout line %04d the quick brown fox jumps over the lazy dog\\n' $i; i=$((i+1)); done\nexec sleep 100000\n")

	var down atomic.Bool
	var mu sync.Mutex
	attempts := map[[2]int64]int{}
	refOf := map[int64]string{}
	s.api.logs.inject(func(op string, version, seq int64) fakeLogFault {
		if down.Load() && op != "read" {
			return fakeLogFault{Drop: true}
		}
		if op != "segment" {
			return fakeLogFault{}
		}
		mu.Lock()
		ref, ok := refOf[version]
		mu.Unlock()
		if !ok {
			pool.QueryRow(context.Background(), `SELECT a.ref FROM artifact_version v JOIN artifact a ON a.id = v.artifact WHERE v.id = $1`, version).Scan(&ref)
			mu.Lock()
			refOf[version] = ref
			mu.Unlock()
		}
		mu.Lock()
		attempts[[2]int64{version, seq}]++
		n := attempts[[2]int64{version, seq}]
		mu.Unlock()
		switch {
		case ref == "sensor.testpack.victim.stdout" && seq == 1:
			return fakeLogFault{Status: 409}
		case ref == "sensor.testpack.flaky.stdout" && n == 1:
			return fakeLogFault{Status: 503}
		case ref == "sensor.testpack.flaky.stdout" && n == 2 && seq == 0:
			return fakeLogFault{Delay: 11 * time.Second} // beyond the 10 s attempt timeout
		}
		return fakeLogFault{}
	})
	a := s.start()
	mark := markAgentLog(a)

	// 5xx and a timeout, retried: byte for byte.
	waitLogEquals(t, s, a, "testpack.flaky", "stdout", flakyOut, 60*time.Second)

	// 409 on victim stdout seq 1: that version is latched, victim stderr and
	// the other sensors keep arriving.
	mark.waitSince(t, 30*time.Second, "sensor log version refused by the API; the rest of this run's stream is dropped")
	_, vOut := readSensorLog(t, s.api, "testpack.victim", "stdout")
	frozen := lastTick(vOut, "victim out")
	if !waitUntil(20*time.Second, func() bool {
		_, e := readSensorLog(t, s.api, "testpack.victim", "stderr")
		_, o := readSensorLog(t, s.api, "testpack.ticker", "stdout")
		return lastTick(e, "victim err") > frozen+15 && lastTick(o, "ticker out") > frozen+15
	}) {
		t.Fatalf("after the 409 on victim stdout, victim stderr and ticker stdout did not keep arriving")
	}
	if _, vOut = readSensorLog(t, s.api, "testpack.victim", "stdout"); lastTick(vOut, "victim out") != frozen {
		t.Errorf("victim stdout grew after its version was latched: last tick %d, was %d", lastTick(vOut, "victim out"), frozen)
	}

	// Outage: connections cut for 4 s. The sensors keep running and writing.
	leaders := map[string]int{}
	for _, ref := range []string{"testpack.ticker", "testpack.victim", "testpack.flaky"} {
		l := s.sensorLeaders(ref)
		if len(l) != 1 {
			t.Fatalf("sensor %s leaders %v before the outage", ref, l)
		}
		leaders[ref] = l[0]
	}
	localOut := filepath.Join(s.dir, "artifacts", "sensors", "testpack.ticker", "stdout.log")
	before, _ := os.ReadFile(localOut)
	down.Store(true)
	time.Sleep(4 * time.Second) // the outage itself: its length is the point
	during, _ := os.ReadFile(localOut)
	down.Store(false)
	s.requireSameLeaders(t, leaders, "API outage")
	if got, was := lastTick(during, "ticker out"), lastTick(before, "ticker out"); got < was+20 {
		t.Errorf("ticker wrote only up to tick %d during a 4 s outage (from %d): the sensor was held up", got, was)
	}
	time.Sleep(time.Second)
	after, _ := os.ReadFile(localOut)
	want := lastTick(after, "ticker out")
	if !waitUntil(30*time.Second, func() bool {
		_, o := readSensorLog(t, s.api, "testpack.ticker", "stdout")
		return bytes.Contains(o, []byte(fmt.Sprintf("ticker out %d\n", want)))
	}) {
		t.Fatalf("ticker output written after the outage (tick %d) never reached the API; agent log:\n%s", want, tail(a.stderr.String(), 3000))
	}
	if code := a.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("agent exit code %d", code)
	}
	var unsealed int
	pool.QueryRow(context.Background(), `SELECT count(*) FROM log_stream WHERE NOT sealed`).Scan(&unsealed)
	if unsealed != 0 {
		t.Errorf("%d log streams left unsealed after a controlled stop", unsealed)
	}
	if !strings.Contains(a.stderr.String()+a.stdout.String(), "sensor log segment not shipped (API unreachable); dropped") {
		t.Errorf("no warning for the segments lost in the outage")
	}
}

// floodBytes is the flood of TestSensorLogFloodStaysBounded.
const floodBytes = 200 << 20

// floodRSSBoundKB is the agent's peak resident memory allowed while one
// sensor floods 200 MB: the per-stream bound (log_segment_max_bytes buffered
// plus one segment in flight) is a few MiB; the rest is the agent itself.
const floodRSSBoundKB = 64 << 10

func TestSensorLogFloodStaysBounded(t *testing.T) {
	s, pool := newLogStack(t)
	s.nativeSensor("flood", fmt.Sprintf("#!/bin/sh\nyes 'flood flood flood flood flood flood flood flood flood flood' | head -c %d\necho 'FLOOD DONE' >&2\nexec sleep 100000\n", floodBytes))
	a := s.start()
	start := time.Now()
	if !waitUntil(180*time.Second, func() bool {
		_, e := readSensorLog(t, s.api, "testpack.flood", "stderr")
		return bytes.Contains(e, []byte("FLOOD DONE\n"))
	}) {
		t.Fatalf("flood never finished; agent log:\n%s", tail(a.stderr.String(), 3000))
	}
	var shipped int64
	waitUntil(30*time.Second, func() bool {
		var n int64
		pool.QueryRow(context.Background(), `SELECT COALESCE(sum(l.total_bytes), 0) FROM log_stream l JOIN artifact_version v ON v.id = l.artifact_version
		  JOIN artifact a ON a.id = v.artifact WHERE a.ref = 'sensor.testpack.flood.stdout'`).Scan(&n)
		if n == shipped && n > 0 {
			return true
		}
		shipped = n
		return false
	})
	elapsed := time.Since(start)
	hwm := procStatusKB(t, a.cmd.Process.Pid, "VmHWM")
	t.Logf("flood: %d of %d bytes shipped in %s (%.1f MB/s), agent VmHWM %d kB", shipped, floodBytes, elapsed.Round(time.Millisecond),
		float64(shipped)/elapsed.Seconds()/1e6, hwm)
	if hwm > floodRSSBoundKB {
		t.Errorf("agent peak RSS %d kB during a 200 MB flood, bound %d kB", hwm, floodRSSBoundKB)
	}
	if shipped < floodBytes/2 {
		t.Errorf("only %d of %d flood bytes reached the API with a healthy API", shipped, floodBytes)
	}
}
