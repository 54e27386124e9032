package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestRotatingFile(t *testing.T) {
	cases := []struct {
		name     string
		existing string // content of the live file before opening
		maxBytes int64
		maxFiles int
		writes   []string
		want     []string // live, .1, .2, ... (and nothing beyond)
	}{
		{"under the limit", "", 100, 3, []string{"a\n", "b\n"}, []string{"a\nb\n"}},
		{"rotates at the last newline that fits", "", 10, 3, []string{"aaaa\nbbbb\ncccc\n"}, []string{"cccc\n", "aaaa\nbbbb\n"}},
		{"a line longer than the limit is cut", "", 4, 3, []string{"abcdefghij"}, []string{"ij", "efgh", "abcd"}},
		{"the oldest file is dropped", "", 5, 2, []string{"aaaa\n", "bbbb\n", "cccc\n"}, []string{"cccc\n", "bbbb\n"}},
		{"one file keeps no history", "", 5, 1, []string{"1234\n5678\n"}, []string{"5678\n"}},
		{"a partial line completes before rotating", "", 4, 3, []string{"aa", "a\nbb\n"}, []string{"bb\n", "aaa\n"}},
		{"an existing live file counts", "xxxx\n", 8, 3, []string{"yyyy\n"}, []string{"yyyy\n", "xxxx\n"}},
		{"an oversized existing file rotates first", "0123456789\n", 4, 3, []string{"ab\n"}, []string{"ab\n", "0123456789\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "deep", "dir", "stdout.log")
			if tc.existing != "" {
				os.MkdirAll(filepath.Dir(path), 0o755)
				os.WriteFile(path, []byte(tc.existing), 0o644)
			}
			w, err := newRotatingFile(path, tc.maxBytes, tc.maxFiles)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := readRotatedFiles(t, path); !slices.Equal(got, tc.want) {
				t.Errorf("files (-want +got):\n- %q\n+ %q", tc.want, got)
			}
		})
	}
}

// readRotatedFiles returns the contents of path, path.1, path.2... and
// fails on any other file in the directory.
func readRotatedFiles(t *testing.T, path string) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Dir(path))
	var got []string
	for i := range entries {
		name := path
		if i > 0 {
			name = path + "." + string(rune('0'+i))
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("unexpected files in %s: %v", filepath.Dir(path), entries)
		}
		got = append(got, string(data))
	}
	return got
}

func TestRotatingFileLimits(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		maxBytes int64
		maxFiles int
	}{{"zero bytes", 0, 4}, {"negative bytes", -1, 4}, {"zero files", 1024, 0}} {
		if _, err := newRotatingFile(filepath.Join(dir, "x.log"), tc.maxBytes, tc.maxFiles); !errors.Is(err, ErrLogConfig) {
			t.Errorf("%s: want ErrLogConfig, got %v", tc.name, err)
		}
	}
}

// TestRotatingFileWriteAndClose runs a writer goroutine against Close (the
// runner's drain goroutine and the service's cleanup) under -race.
func TestRotatingFileWriteAndClose(t *testing.T) {
	w, err := newRotatingFile(filepath.Join(t.TempDir(), "stdout.log"), 1<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var wg sync.WaitGroup
	var lastErr error
	wg.Go(func() {
		line := []byte(strings.Repeat("z", 99) + "\n")
		for i := 0; ; i++ {
			if i == 10 {
				close(started)
			}
			if _, err := w.Write(line); err != nil {
				lastErr = err
				return
			}
		}
	})
	<-started
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if !errors.Is(lastErr, os.ErrClosed) {
		t.Fatalf("write after close: want os.ErrClosed, got %v", lastErr)
	}
}

func TestLogMirror(t *testing.T) {
	long := strings.Repeat("x", mirrorLineMax+100)
	cases := []struct {
		name   string
		writes []string
		want   []string // logged lines; a "~" prefix marks truncated=true
	}{
		{"complete lines", []string{"a\nb\n"}, []string{"a", "b"}},
		{"a line split across writes", []string{"par", "tial\nne", "xt\n"}, []string{"partial", "next"}},
		{"an unterminated tail is logged on close", []string{"done\ntail"}, []string{"done", "tail"}},
		{"CRLF", []string{"win\r\n"}, []string{"win"}},
		{"empty line", []string{"\n"}, []string{""}},
		{"invalid UTF-8 is replaced", []string{"a\xffb\n"}, []string{"a\uFFFDb"}},
		{"a long line is cut and its tail dropped", []string{long + "\nnext\n"}, []string{"~" + long[:mirrorLineMax], "next"}},
		{"a long line across writes", []string{long[:5000], long[5000:], "\nnext\n"}, []string{"~" + long[:mirrorLineMax], "next"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			m := newLogMirror(slog.New(slog.NewJSONHandler(&buf, nil)), "core.timer", "stdout")
			for _, s := range tc.writes {
				if n, err := m.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			m.Close()
			if got := mirroredLines(t, &buf); !slices.Equal(got, tc.want) {
				t.Errorf("lines (-want +got):\n- %.80q\n+ %.80q", tc.want, got)
			}
		})
	}
}

// TestLogMirrorFloodIsBounded writes 10 MB without a newline: one truncated
// line is logged and the buffer never grows past the cap.
func TestLogMirrorFloodIsBounded(t *testing.T) {
	var buf bytes.Buffer
	m := newLogMirror(slog.New(slog.NewJSONHandler(&buf, nil)), "s", "stderr")
	chunk := bytes.Repeat([]byte("y"), 64<<10)
	for range 160 {
		m.Write(chunk)
		if cap(m.buf) > 2*mirrorLineMax {
			t.Fatalf("mirror buffer grew to %d bytes", cap(m.buf))
		}
	}
	m.Write([]byte("\n"))
	if got := mirroredLines(t, &buf); len(got) != 1 || len(got[0]) != mirrorLineMax+1 {
		t.Fatalf("want one truncated line of %d bytes, got %d lines", mirrorLineMax, len(got))
	}
}

// mirroredLines decodes the JSON log records of a mirror.
func mirroredLines(t *testing.T, buf *bytes.Buffer) []string {
	t.Helper()
	var lines []string
	dec := json.NewDecoder(buf)
	for dec.More() {
		var rec struct {
			Msg, Sensor, Stream, Line string
			Truncated                 bool
		}
		if err := dec.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		if rec.Msg != "sensor output" || rec.Sensor == "" || rec.Stream == "" {
			t.Fatalf("record %+v lacks the stable keys", rec)
		}
		if rec.Truncated {
			rec.Line = "~" + rec.Line
		}
		lines = append(lines, rec.Line)
	}
	return lines
}

// checkFloodFiles asserts the rotation limits and that the newest files hold
// the end of the flood, whole lines, in order, without gaps.
func checkFloodFiles(t *testing.T, path string, maxBytes int64, maxFiles int) {
	t.Helper()
	names, _ := filepath.Glob(path + "*")
	want := []string{path, path + ".1", path + ".2"}
	if !slices.Equal(names, want) {
		t.Fatalf("files: want %q, got %q", want, names)
	}
	next := -1
	for i := maxFiles - 1; i >= 0; i-- {
		name := path
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(data)) > maxBytes || len(data) == 0 || data[len(data)-1] != '\n' {
			t.Fatalf("%s: %d bytes (max %d), must be non-empty whole lines", name, len(data), maxBytes)
		}
		for line := range strings.Lines(string(data)) {
			if line == "END\n" {
				if i != 0 {
					t.Fatalf("END in %s, want it in the live file", name)
				}
				return
			}
			seq, err := strconv.Atoi(line[:9])
			if err != nil || len(line) != 100 || (next >= 0 && seq != next) {
				t.Fatalf("%s: line %q: want sequence %d", name, line, next)
			}
			next = seq + 1
		}
	}
	t.Fatalf("the flood's END line is missing")
}
