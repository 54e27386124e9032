package main

// stderrexcerpt.go owns sensor_process.stderr_excerpt: the tail of a
// sensor's local stderr log, read when the sensor crashes (CONTRACT §7).

import (
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

// stderrTail keeps the last stderrExcerptMaxLines lines of b, as the
// reference formats its excerpt: when b was cut from a longer file (cut),
// the excerpt starts with "…" on a line of its own (the first line may be
// partial); line ends ("\n", "\r\n") are not kept at the end; an excerpt
// of blanks only is none (""). The text is made storable in a TEXT column:
// invalid UTF-8 becomes U+FFFD and NUL bytes are removed.
func stderrTail(b []byte, cut bool) string {
	s := strings.ReplaceAll(strings.ToValidUTF8(string(b), "\uFFFD"), "\x00", "")
	s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	lines := strings.Split(s, "\n")
	if len(lines) > stderrExcerptMaxLines {
		lines = lines[len(lines)-stderrExcerptMaxLines:]
	}
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	out := strings.Join(lines, "\n")
	if strings.TrimSpace(out) == "" {
		return ""
	}
	if cut {
		return "…\n" + out
	}
	return out
}
