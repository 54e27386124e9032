package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// errProcFormat reports a /proc file that does not read as the kernel writes it.
var errProcFormat = errors.New("unexpected /proc format")

// procStatusKB returns the numeric fields of /proc/<pid>/status that the
// benchmarks read (VmHWM, VmRSS in kB; Threads as a count).
func procStatusKB(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, fmt.Errorf("read status of %d: %w", pid, err)
	}
	return parseProcStatus(b), nil
}

// parseProcStatus reads "Key:\t value [kB]" lines into Key → value, keeping
// only lines whose first word is a number.
func parseProcStatus(b []byte) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// procCPUTicks returns utime+stime of pid (all its threads) in clock ticks.
func procCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	u, s, err := parseProcStatCPU(string(b))
	return u + s, err
}

// parseProcStatCPU extracts utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseProcStatCPU(stat string) (utime, stime int64, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("stat line without ')': %w", errProcFormat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("stat line with %d fields after the name: %w", len(f), errProcFormat)
	}
	if utime, err = strconv.ParseInt(f[11], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("utime %q: %w", f[11], errProcFormat)
	}
	if stime, err = strconv.ParseInt(f[12], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stime %q: %w", f[12], errProcFormat)
	}
	return utime, stime, nil
}

// isZombieStatLine reports whether a /proc/<pid>/stat line is a zombie's.
func isZombieStatLine(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// clockTicksPerSecond is USER_HZ (getconf CLK_TCK), 100 when getconf is missing.
func clockTicksPerSecond() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}

// markedProcs lists the live (non-zombie) processes whose environment
// contains marker ("NAME=value"): the sensors of one benchmark stack carry
// its fake API's URL, which nothing else on the machine has.
func markedProcs(marker string) []int {
	want := []byte(marker + "\x00")
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, want) || !bytes.Contains(env, []byte("ATTUNE_SENSOR_REF=")) {
			continue // gone, not ours, or the agent itself (API URL but no sensor ref)
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err != nil || isZombieStatLine(string(st)) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// procIgnoresSIGTERM reports whether pid has SIGTERM in its ignored set
// (SigIgn, a hex mask whose bit n-1 is signal n).
func procIgnoresSIGTERM(pid int) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false, fmt.Errorf("read status of %d: %w", pid, err)
	}
	return sigIgnHasTERM(string(b))
}

// sigIgnHasTERM parses the SigIgn line of a status file.
func sigIgnHasTERM(status string) (bool, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, fmt.Errorf("SigIgn %q: %w", v, errProcFormat)
			}
			return mask&(1<<(15-1)) != 0, nil
		}
	}
	return false, fmt.Errorf("no SigIgn line: %w", errProcFormat)
}

// countFDs is the number of open file descriptors of pid (-1 if unreadable).
func countFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}
