package main

// stderrexcerpt.go owns sensor_process.stderr_excerpt: the tail of a
// sensor's local stderr log, read when the sensor crashes (CONTRACT §7).

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// The reference keeps the last 80 lines of the stderr log, at most 16 KiB.
const (
	stderrExcerptMaxLines = 80
	stderrExcerptMaxBytes = 16 << 10
)

// sensorStderrLogPath is where rotatingSensorLogs (manager.go) writes a
// sensor's stderr: {artifacts_dir}/sensors/<ref>/stderr.log, with the ref
// reduced to one path element so that no ref can name another directory.
func sensorStderrLogPath(artifactsDir, ref string) string {
	return filepath.Join(artifactsDir, "sensors", filepath.Base(filepath.Clean("/"+ref)), "stderr.log")
}

// readStderrExcerpt returns the tail of the file at path, or nil when the
// file is missing, unreadable or empty: a crash without output records no
// excerpt rather than an empty one. It reads at most stderrExcerptMaxBytes,
// so a huge log costs one bounded read.
func readStderrExcerpt(path string) *string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return nil
	}
	off := max(st.Size()-stderrExcerptMaxBytes, 0)
	buf := make([]byte, st.Size()-off)
	n, err := f.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return nil
	}
	s := stderrTail(buf[:n], off > 0)
	if s == "" {
		return nil
	}
	return &s
}

// stderrTail keeps the last stderrExcerptMaxLines lines of b. When b was
// cut from a longer file (cut), its first line is partial and is dropped,
// unless it is the only line. The text is made storable in a TEXT column:
// invalid UTF-8 becomes U+FFFD and NUL bytes are removed.
func stderrTail(b []byte, cut bool) string {
	b = bytes.TrimRight(b, "\n")
	if cut {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	lines := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			lines++
			if lines == stderrExcerptMaxLines {
				b = b[i+1:]
				break
			}
		}
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "")
}
