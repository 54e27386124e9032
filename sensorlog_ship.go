package main

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// sensorlog_ship.go owns one stream of one process generation on its way to
// the API: a bounded buffer the pipe reader writes into, and a worker
// goroutine that exists only while there is something to ship, so an idle
// sensor costs no goroutine and no timer. The worker cuts segments (target
// log_segment_initial_bytes, doubled after each size flush up to
// log_segment_max_bytes; a flush flush_interval_ms after the first buffered
// byte ships what is there and resets the target), allocates a version on
// the first byte and after each rotation, and seals every version it opened.
//
// Backpressure: at most log_segment_max_bytes are uncommitted. A writer that
// finds the buffer full waits for room (the sensor then waits on its pipe,
// as with the reference) but at most backpressureWait; after that it drops,
// counted, and keeps dropping without waiting until a segment commits again,
// so an API that is down costs the sensor one short stall, never a hang.

// backpressureWait bounds one wait of a writer for room in the buffer.
const backpressureWait = time.Second

// logShipper buffers and ships one stream of one process generation.
type logShipper struct {
	cfg  shipperConfig
	art  logArtifact
	rows logRows
	up   *logUploader
	log  *slog.Logger

	ctx    context.Context // cancelled sealTimeout after finish
	cancel context.CancelFunc

	mu       sync.Mutex
	buf      []byte // accepted, not yet cut into a segment
	inflight int    // bytes of the segment being uploaded
	firstAt  time.Time
	ended    bool
	running  bool  // a worker goroutine exists
	dropped  int64 // bytes dropped since the last report
	dropping bool  // writers drop without waiting until a commit
	room     chan struct{}
	wake     chan struct{}
	done     chan struct{} // closed when every version is sealed (or given up)
	release  func()        // called once after done is closed (streamOutputs.pending)

	// Worker state: touched only by the one running worker.
	cur     *shipVersion
	target  int
	latched bool // a 4xx ended this generation's shipping
}

// shipVersion is the version currently receiving segments.
type shipVersion struct {
	v         logVersion
	seq       int64
	handed    int64
	truncated bool
}

func newLogShipper(cfg shipperConfig, a logArtifact, rows logRows, up *logUploader, log *slog.Logger) *logShipper {
	ctx, cancel := context.WithCancel(context.Background())
	return &logShipper{cfg: cfg, art: a, rows: rows, up: up, log: log, ctx: ctx, cancel: cancel,
		target: cfg.initial, room: make(chan struct{}, 1), wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Write accepts p, waiting a bounded time for room, and drops (counted)
// what does not fit. It never fails.
func (s *logShipper) Write(p []byte) (int, error) {
	n := len(p)
	var deadline *time.Timer
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()
	s.mu.Lock()
	for len(p) > 0 && !s.ended {
		room := s.cfg.maxSegment - len(s.buf) - s.inflight
		if room > 0 {
			take := min(room, len(p))
			if len(s.buf) == 0 {
				s.firstAt = time.Now()
			}
			s.buf = append(s.buf, p[:take]...)
			p = p[take:]
			s.kickLocked()
			continue
		}
		if s.dropping {
			break
		}
		if deadline == nil {
			deadline = time.NewTimer(backpressureWait)
		}
		s.mu.Unlock()
		select {
		case <-s.room:
			s.mu.Lock()
		case <-deadline.C:
			s.mu.Lock()
			s.dropping = true
		}
	}
	if len(p) > 0 {
		if s.dropped == 0 {
			s.log.Warn("sensor output dropped: log stream buffer full (API slow or unreachable)",
				"sensor", s.art.SensorRef, "stream", s.art.Stream, "bound_bytes", s.cfg.maxSegment)
		}
		s.dropped += int64(len(p))
	}
	s.mu.Unlock()
	return n, nil
}

// kickLocked starts the worker when there is none, else wakes it.
func (s *logShipper) kickLocked() {
	if !s.running {
		s.running = true
		go s.work()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// finish marks the end of the stream (its pipe is drained): the worker ships
// what is left and seals, within cfg.sealTimeout.
func (s *logShipper) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	time.AfterFunc(s.cfg.sealTimeout, s.cancel)
	s.kickLocked()
}

// work ships until the buffer is empty and the flush is done, then exits;
// after finish it seals and closes done.
func (s *logShipper) work() {
	for {
		seg, ok := s.next()
		if !ok {
			return
		}
		if seg != nil {
			s.ship(seg)
		}
	}
}

// next waits for the next segment to ship. It returns (nil, true) to loop
// again and ok=false when the worker should exit (after sealing if ended).
func (s *logShipper) next() ([]byte, bool) {
	s.mu.Lock()
	n := len(s.buf)
	if n == 0 {
		if s.ended {
			s.mu.Unlock()
			s.sealCurrent()
			s.reportDrops("stream ended")
			s.cancel()
			close(s.done)
			if s.release != nil {
				s.release()
			}
			return nil, false
		}
		s.running = false
		s.mu.Unlock()
		return nil, false
	}
	timed := time.Since(s.firstAt) >= s.cfg.flush
	if n < s.target && !s.ended && !timed {
		wait := s.cfg.flush - time.Since(s.firstAt)
		s.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
		return nil, true
	}
	size := min(n, s.cfg.maxSegment)
	if !timed && !s.ended {
		size = min(size, s.target)
	}
	if s.cfg.rotateAt > 0 {
		var handed int64
		if s.cur != nil {
			handed = s.cur.handed
		}
		size = int(min(int64(size), s.cfg.rotateAt-handed))
	}
	seg := make([]byte, size)
	copy(seg, s.buf)
	s.buf = s.buf[:copy(s.buf, s.buf[size:])]
	if len(s.buf) == 0 && cap(s.buf) > 2*s.cfg.initial {
		s.buf = nil // an idle sensor keeps no megabyte buffer
	}
	s.inflight = size
	s.firstAt = time.Now()
	if timed {
		s.target = s.cfg.initial
	} else if size == s.target {
		s.target = min(2*s.target, s.cfg.maxSegment)
	}
	s.mu.Unlock()
	return seg, true
}

// committed releases the in-flight bytes and lets waiting writers in.
func (s *logShipper) committed(ok bool) {
	s.mu.Lock()
	s.inflight = 0
	if ok {
		s.dropping = false
	}
	s.mu.Unlock()
	select {
	case s.room <- struct{}{}:
	default:
	}
}

// drop counts bytes the worker could not ship.
func (s *logShipper) drop(n int) {
	s.mu.Lock()
	s.dropped += int64(n)
	s.mu.Unlock()
}
