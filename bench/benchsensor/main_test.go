package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchSensorDirs makes {pack}/sensors and {pack}/marks and returns the
// path the role would be run as, and the marks directory.
func benchSensorDirs(t *testing.T, role string) (self, marks string) {
	t.Helper()
	pack := t.TempDir()
	marks = filepath.Join(pack, "marks")
	for _, d := range []string{filepath.Join(pack, "sensors"), marks} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(pack, "sensors", role), marks
}

// waitBenchMark waits for a mark file and returns its number.
func waitBenchMark(t *testing.T, path string) int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				t.Fatalf("mark %s holds %q", path, b)
			}
			return v
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no mark %s", path)
	return 0
}

// runBenchSensorAsync runs a role in a goroutine and returns its exit code channel.
func runBenchSensorAsync(started time.Time, self, ref string) <-chan int {
	done := make(chan int, 1)
	go func() { done <- runBenchSensor(started, self, ref) }()
	return done
}

func TestMarkRoleStampsItsStartAndStopsOnSIGTERM(t *testing.T) {
	self, marks := benchSensorDirs(t, "mark")
	started := time.Unix(0, 1_700_000_000_123_456_789)
	done := runBenchSensorAsync(started, self, "benchpack.r0001")
	if got := waitBenchMark(t, filepath.Join(marks, "benchpack.r0001.start")); got != started.UnixNano() {
		t.Errorf("start mark %d, want the start stamp %d", got, started.UnixNano())
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM) // caught: the role registered for it before writing the mark
	if code := <-done; code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

func TestCrashRoleExitsOnSIGUSR1AndIdlesWhenRestarted(t *testing.T) {
	self, marks := benchSensorDirs(t, "crash")
	done := runBenchSensorAsync(time.Now(), self, "benchpack.c0001")
	if pid := waitBenchMark(t, filepath.Join(marks, "benchpack.c0001.pid")); pid != int64(os.Getpid()) {
		t.Errorf("pid mark %d, want %d", pid, os.Getpid())
	}
	before := time.Now().UnixNano()
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	if code := <-done; code != 3 {
		t.Fatalf("exit code %d after SIGUSR1, want 3", code)
	}
	if at := waitBenchMark(t, filepath.Join(marks, "benchpack.c0001.crashed")); at < before || at > time.Now().UnixNano() {
		t.Errorf("exit stamp %d outside [%d, now]", at, before)
	}

	// The restart finds the exit stamp: it must not crash again, only idle.
	os.Remove(filepath.Join(marks, "benchpack.c0001.pid"))
	done = runBenchSensorAsync(time.Now(), self, "benchpack.c0001")
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(marks, "benchpack.c0001.pid")); err == nil {
		t.Error("the restarted crash sensor armed itself again")
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	if code := <-done; code != 0 {
		t.Errorf("restart exit code %d after SIGTERM, want 0", code)
	}
}

func TestUnknownRoleAndMissingRef(t *testing.T) {
	self, _ := benchSensorDirs(t, "other")
	if code := runBenchSensor(time.Now(), self, "benchpack.x"); code != 2 {
		t.Errorf("unknown role: exit %d, want 2", code)
	}
	self, _ = benchSensorDirs(t, "mark")
	if code := runBenchSensor(time.Now(), self, ""); code != 2 {
		t.Errorf("no ATTUNE_SENSOR_REF: exit %d, want 2", code)
	}
}
