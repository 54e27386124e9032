package main

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseTimeitCommands(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    [][]string // name then argv, per command
		wantErr bool
	}{
		{"one", []string{"a", "/bin/true"}, [][]string{{"a", "/bin/true"}}, false},
		{"two with args", []string{"a", "/bin/echo", "x", "", ":::", "b", "/bin/sleep", "0"},
			[][]string{{"a", "/bin/echo", "x", ""}, {"b", "/bin/sleep", "0"}}, false},
		{"none", nil, nil, true},
		{"name only", []string{"a"}, nil, true},
		{"empty group", []string{"a", "/bin/true", ":::"}, nil, true},
		{"repeated name", []string{"a", "/bin/true", ":::", "a", "/bin/false"}, nil, true},
		{"name with slash", []string{"a/b", "/bin/true"}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmds, err := parseTimeitCommands(tc.args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			var got [][]string
			for _, c := range cmds {
				got = append(got, append([]string{c.name}, c.argv...))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("commands: want %q, got %q", tc.want, got)
			}
		})
	}
}

func TestSummarizeDurations(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name        string
		in          []time.Duration
		med, lo, hi time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one", []time.Duration{5 * ms}, 5 * ms, 5 * ms, 5 * ms},
		{"odd unsorted", []time.Duration{9 * ms, 1 * ms, 4 * ms}, 4 * ms, 1 * ms, 9 * ms},
		{"even takes the middle mean", []time.Duration{4 * ms, 1 * ms, 10 * ms, 2 * ms}, 3 * ms, 1 * ms, 10 * ms},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			med, lo, hi := summarizeDurations(tc.in)
			if med != tc.med || lo != tc.lo || hi != tc.hi {
				t.Errorf("want %v %v %v, got %v %v %v", tc.med, tc.lo, tc.hi, med, lo, hi)
			}
		})
	}
}

// TestRunTimeitRoundRobin runs real commands: every command gets n samples,
// the output has one line per command in the given order, and a failing
// command fails the run instead of being timed.
func TestRunTimeitRoundRobin(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := t.TempDir()
	code := runTimeit(context.Background(), []string{"-n", "3", "-warmup", "1", "-samples", dir, "--",
		"fast", "/bin/sh", "-c", "exit 0", ":::", "slow", "/bin/sh", "-c", "sleep 0.05"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "fast\t3\t") || !strings.HasPrefix(lines[1], "slow\t3\t") {
		t.Fatalf("output:\n%s", out.String())
	}
	var slowMin float64
	if _, err := fmtSscanField(lines[1], 3, &slowMin); err != nil || slowMin < 50 {
		t.Errorf("slow min %v ms (err %v): a 50 ms sleep was not timed", slowMin, err)
	}

	code = runTimeit(context.Background(), []string{"-n", "1", "--", "bad", "/bin/sh", "-c", "exit 3"}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "bad") {
		t.Errorf("failing command: exit %d, stderr %q", code, errOut.String())
	}
}

// fmtSscanField parses the i-th tab-separated field of line as a float.
func fmtSscanField(line string, i int, v *float64) (int, error) {
	return fmt.Sscan(strings.Split(line, "\t")[i], v)
}
