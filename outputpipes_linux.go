package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// outputPipes carries a child's stdout and stderr to their writers through
// pipes the runner owns, instead of letting os/exec copy them, because:
//   - with the reaper, calling cmd.Wait to drain I/O would also wait for a pid
//     the reaper already reaped (and without pidfd support it could reap a
//     recycled pid and steal another child's status);
//   - the exit is noticed at once even while descendants hold the pipes;
//   - a failing writer (a full disk) must not stop the draining, or the
//     sensor would block forever on a full pipe: output is discarded instead.
//
// An idle stream costs no goroutine and no buffer (docs/benchmarks.md item
// 6: at 500 sensors, one parked copy goroutine and one 4 KiB buffer per
// stream were 1000 goroutine stacks and 4 MiB of live heap). The read ends
// are registered, one-shot, with the process-wide outputPoller; when one
// becomes readable a short-lived goroutine borrows a buffer from a shared
// pool, copies until the pipe is empty, returns the buffer and re-arms the
// stream. A slow writer therefore delays only its own stream, as before.
type outputPipes struct {
	childEnds []*os.File
	streams   []*outputStream
	log       *slog.Logger
	ref       string
}

// outputStream is the agent's end of one child stream.
type outputStream struct {
	id   uint64
	name string
	fd   int // the read end, non-blocking
	dst  io.Writer
	log  *slog.Logger
	ref  string
	done chan struct{} // closed at EOF or when drain gives up

	stop   atomic.Bool // drain gave up: the copy loop returns at its next turn
	mu     sync.Mutex  // serialises copy turns and the close
	closed bool
	failed bool // dst failed once: the rest is read and discarded
}

// outputBufferSize is the size of the pooled copy buffers. A buffer is held
// only while a pipe has data, so it can be larger than the 4 KiB a buffer
// held for a sensor's whole life could afford: floods copy in fewer reads.
const outputBufferSize = 16 << 10

var outputBuffers = sync.Pool{New: func() any { b := make([]byte, outputBufferSize); return &b }}

// add returns what the child should get for a stream writing to dst: nil
// (/dev/null) for a nil dst, the file itself for an *os.File, else the write
// end of a new pipe whose read end is copied into dst once registered.
func (o *outputPipes) add(dst io.Writer, name string) (io.Writer, error) {
	if dst == nil {
		return nil, nil
	}
	if f, ok := dst.(*os.File); ok {
		return f, nil
	}
	poller, err := sharedOutputPoller()
	if err != nil {
		return nil, fmt.Errorf("%s pipe: %w", name, err)
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("%s pipe: %w", name, os.NewSyscallError("pipe2", err))
	}
	// Only the agent's end is non-blocking: the child gets an ordinary
	// blocking pipe, as os.Pipe would give it.
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, fmt.Errorf("%s pipe: %w", name, os.NewSyscallError("fcntl", err))
	}
	w := os.NewFile(uintptr(fds[1]), name)
	s := &outputStream{name: name, fd: fds[0], dst: dst, log: o.log, ref: o.ref, done: make(chan struct{})}
	if err := poller.register(s); err != nil {
		syscall.Close(fds[0])
		w.Close()
		return nil, fmt.Errorf("%s pipe: %w", name, err)
	}
	o.childEnds = append(o.childEnds, w)
	o.streams = append(o.streams, s)
	return w, nil
}

// closeChildEnds closes the agent's copies of the child's ends once the
// child holds them, so that EOF arrives when the last descendant closes them.
func (o *outputPipes) closeChildEnds() {
	for _, f := range o.childEnds {
		f.Close()
	}
	o.childEnds = nil
}

// abort releases everything when the child never started.
func (o *outputPipes) abort() {
	o.closeChildEnds()
	for _, s := range o.streams {
		s.close()
	}
	o.streams = nil
}

// drain waits for every stream to reach EOF. After delay it closes the read
// ends, which ends the copies: a descendant that escaped the process group
// must not keep a dead sensor's supervision open.
func (o *outputPipes) drain(delay time.Duration) {
	if o == nil || len(o.streams) == 0 {
		return
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for _, s := range o.streams {
		select {
		case <-s.done:
		case <-timer.C:
			for _, t := range o.streams {
				t.stop.Store(true)
				t.close()
			}
		}
	}
	for _, s := range o.streams {
		s.close()
	}
}

// copyTurn copies until the pipe is empty (then re-arms the stream) or at
// its end (then closes it). The buffer is borrowed for the turn only.
func (s *outputStream) copyTurn(p *outputPoller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	bp := outputBuffers.Get().(*[]byte)
	defer outputBuffers.Put(bp)
	buf := *bp
	for !s.stop.Load() {
		n, err := syscall.Read(s.fd, buf)
		if n > 0 {
			if !s.failed {
				if _, werr := s.dst.Write(buf[:n]); werr != nil {
					s.failed = true
					s.log.Warn("sensor output cannot be written, discarding it", "sensor", s.ref, "stream", s.name, "error", werr)
				}
			}
			continue
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.EAGAIN) {
			rerr := p.rearm(s)
			if rerr == nil {
				return
			}
			s.log.Warn("sensor output cannot be watched, closing it", "sensor", s.ref, "stream", s.name, "error", rerr)
		}
		break // EOF (n == 0), a read error or a failed re-arm
	}
	s.closeLocked(p)
}

// close ends the stream from outside a copy turn (waiting for one in
// progress, which stop shortens).
func (s *outputStream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, _ := sharedOutputPoller()
	s.closeLocked(p)
}

func (s *outputStream) closeLocked(p *outputPoller) {
	if s.closed {
		return
	}
	s.closed = true
	if p != nil {
		p.unregister(s)
	}
	syscall.Close(s.fd)
	close(s.done)
}
