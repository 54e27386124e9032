package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"unicode/utf8"
)

// ErrLogConfig reports unusable rotation limits (a sensor log must be bounded).
var ErrLogConfig = errors.New("invalid sensor log limits")

// rotatingFile is the on-disk home of one sensor stream
// ({artifacts_dir}/sensors/<ref>/stdout.log, CONTRACT §7 [agent]). It keeps the
// disk use of a chatty or runaway sensor bounded: no file grows past maxBytes
// and at most maxFiles files exist.
//
// maxFiles counts every file, the live one included: with maxFiles = 4 there
// are path, path.1, path.2 and path.3 (path.1 the newest rotated file). This
// matches the reference's artifact retention of 4 versions for the default
// sensor_log_max_files of 4. maxFiles = 1 keeps no history: the live file is
// truncated when it is full.
//
// Rotation happens before a write that would push the live file past
// maxBytes, at the last newline that still fits when there is one, so lines
// stay whole across files; a single line longer than maxBytes is cut.
// An existing live file is appended to, so a restarted sensor continues its log.
//
// It is safe for one writer goroutine plus a concurrent Close.
type rotatingFile struct {
	path     string
	maxBytes int64
	maxFiles int

	mu     sync.Mutex
	f      *os.File
	size   int64
	closed bool
}

// newRotatingFile opens (creating it and its directory when needed) the live
// file at path for appending.
func newRotatingFile(path string, maxBytes int64, maxFiles int) (*rotatingFile, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("sensor log %s: max bytes %d: %w", path, maxBytes, ErrLogConfig)
	}
	if maxFiles < 1 {
		return nil, fmt.Errorf("sensor log %s: max files %d: %w", path, maxFiles, ErrLogConfig)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sensor log directory: %w", err)
	}
	w := &rotatingFile{path: path, maxBytes: maxBytes, maxFiles: maxFiles}
	if err := w.open(os.O_APPEND); err != nil {
		return nil, err
	}
	return w, nil
}

// open opens the live file with the extra flag (append or truncate) and
// records its current size.
func (w *rotatingFile) open(flag int) error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|flag, 0o644)
	if err != nil {
		return fmt.Errorf("open sensor log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat sensor log: %w", err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Write appends p, rotating as often as needed so that every file stays
// within maxBytes. It reports len(p) on success.
func (w *rotatingFile) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, os.ErrClosed
	}
	if w.f == nil { // a failed rotation left no live file: try again
		if err := w.open(os.O_APPEND); err != nil {
			return 0, err
		}
	}
	written := 0
	for len(p) > 0 {
		room := w.maxBytes - w.size
		chunk := p
		if int64(len(chunk)) > room {
			chunk = p[:max(room, 0)]
			if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
				chunk = chunk[:i+1]
			} else if w.size > 0 {
				chunk = nil // the line may fit whole in a fresh file
			}
		}
		if len(chunk) > 0 {
			n, err := w.f.Write(chunk)
			w.size += int64(n)
			written += n
			if err != nil {
				return written, fmt.Errorf("write sensor log: %w", err)
			}
			p = p[n:]
		}
		if len(p) > 0 {
			if err := w.rotate(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// rotate shifts path.N to path.N+1 (dropping the oldest), moves the live file
// to path.1 and starts an empty live file. Missing files are normal (young
// logs) and are skipped.
func (w *rotatingFile) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("close sensor log for rotation: %w", err)
	}
	w.f = nil
	if w.maxFiles == 1 {
		return w.open(os.O_TRUNC)
	}
	name := func(i int) string { return w.path + "." + strconv.Itoa(i) }
	if err := os.Remove(name(w.maxFiles - 1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rotate sensor log: %w", err)
	}
	for i := w.maxFiles - 2; i >= 1; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate sensor log: %w", err)
		}
	}
	if err := os.Rename(w.path, name(1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rotate sensor log: %w", err)
	}
	return w.open(os.O_TRUNC)
}

// Close closes the live file; later writes fail with os.ErrClosed.
func (w *rotatingFile) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.f == nil {
		return nil
	}
	return w.f.Close()
}

// mirrorLineMax bounds one mirrored line: a sensor that prints megabytes
// without a newline must not make the agent buffer megabytes.
const mirrorLineMax = 8 << 10

// logMirror copies a sensor stream line by line into the agent's own log
// (log.mirror_runtime_stdout_to_stdio / ..._stderr_to_stdio), so that
// `docker logs` shows sensor output without reading artifact files.
// Only complete lines are logged; a partial line waits for its newline in a
// buffer of at most mirrorLineMax bytes. A longer line is logged cut at the
// cap (truncated=true) and the rest of it, up to the next newline, dropped.
// Memory use is therefore bounded whatever the sensor writes.
type logMirror struct {
	log    *slog.Logger
	ref    string
	stream string

	mu       sync.Mutex
	buf      []byte
	skipping bool // dropping the tail of a line that was already cut
}

// newLogMirror returns a mirror that logs the lines of sensorRef's stream
// ("stdout" or "stderr").
func newLogMirror(log *slog.Logger, sensorRef, stream string) *logMirror {
	return &logMirror{log: log, ref: sensorRef, stream: stream, buf: make([]byte, 0, 256)}
}

// Write consumes p and logs each line it completes. It never fails, so a
// mirror cannot stop a sensor's output from reaching its log file.
func (m *logMirror) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
			p = p[i+1:]
		} else {
			p = nil
		}
		if !m.skipping {
			take := min(len(seg), mirrorLineMax-len(m.buf))
			m.buf = append(m.buf, seg[:take]...)
			if take < len(seg) || (i < 0 && len(m.buf) == mirrorLineMax) {
				m.emit(true)
				m.skipping = i < 0
				continue
			}
		}
		if i >= 0 {
			if !m.skipping {
				m.emit(false)
			}
			m.skipping = false
		}
	}
	return n, nil
}

// Close logs a final unterminated line, if any.
func (m *logMirror) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.buf) > 0 {
		m.emit(false)
	}
	return nil
}

// emit logs the buffered line and empties the buffer. Invalid UTF-8 is
// replaced so that JSON log output stays valid.
func (m *logMirror) emit(truncated bool) {
	line := m.buf
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	text := string(line)
	if !utf8.ValidString(text) {
		text = string(bytes.ToValidUTF8(line, []byte("\uFFFD")))
	}
	attrs := []any{"sensor", m.ref, "stream", m.stream, "line", text}
	if truncated {
		attrs = append(attrs, "truncated", true)
	}
	m.log.Info("sensor output", attrs...)
	m.buf = m.buf[:0]
}
