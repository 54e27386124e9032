package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// outputPoller owns the one epoll instance that watches every sensor's
// output pipes, and the one goroutine that waits on it. Streams are armed
// one-shot: an event disarms its stream until its copy turn has emptied the
// pipe and re-armed it, so one stream never has two copy turns at once and
// a ready pipe costs exactly one short-lived goroutine. Events carry a
// stream id, never an fd, so an event that arrives after its stream was
// closed (and its fd number reused) finds no stream and is ignored.
//
// It is process-wide and lives as long as the process: a goroutine blocked
// in epoll_wait holds one OS thread and no buffers.
type outputPoller struct {
	epfd int

	mu      sync.Mutex
	nextID  uint64
	streams map[uint64]*outputStream
}

var (
	outputPollerOnce sync.Once
	outputPollerInst *outputPoller
	outputPollerErr  error
)

// sharedOutputPoller returns the process's poller, starting it on first use.
func sharedOutputPoller() (*outputPoller, error) {
	outputPollerOnce.Do(func() {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			outputPollerErr = fmt.Errorf("output poller: %w", os.NewSyscallError("epoll_create1", err))
			return
		}
		outputPollerInst = &outputPoller{epfd: epfd, streams: make(map[uint64]*outputStream)}
		go outputPollerInst.loop()
	})
	return outputPollerInst, outputPollerErr
}

// outputPollEvents: readable, or the write end closed (EPOLLHUP is always
// reported), once.
const outputPollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// epollEvent builds the event of stream id (the id rides in Fd and Pad,
// the 8 bytes of epoll_data).
func epollEvent(id uint64) *syscall.EpollEvent {
	return &syscall.EpollEvent{Events: outputPollEvents, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
}

// register assigns s its id and arms it.
func (p *outputPoller) register(s *outputStream) error {
	p.mu.Lock()
	p.nextID++
	s.id = p.nextID
	p.streams[s.id] = s
	p.mu.Unlock()
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, s.fd, epollEvent(s.id)); err != nil {
		p.mu.Lock()
		delete(p.streams, s.id)
		p.mu.Unlock()
		return fmt.Errorf("watch output pipe: %w", os.NewSyscallError("epoll_ctl", err))
	}
	return nil
}

// rearm re-enables s after a copy turn emptied its pipe. A pipe that
// became readable meanwhile is reported at once (epoll checks the state).
func (p *outputPoller) rearm(s *outputStream) error {
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, s.fd, epollEvent(s.id)); err != nil {
		return fmt.Errorf("re-arm output pipe: %w", os.NewSyscallError("epoll_ctl", err))
	}
	return nil
}

// unregister forgets s; its fd is closed by the caller right after.
func (p *outputPoller) unregister(s *outputStream) {
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, s.fd, nil) // closing the fd removes it anyway
	p.mu.Lock()
	delete(p.streams, s.id)
	p.mu.Unlock()
}

// loop waits for ready pipes and starts one copy turn per event.
func (p *outputPoller) loop() {
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			panic(fmt.Sprintf("output poller: epoll_wait: %v", err)) // EBADF/EINVAL: a bug, not a condition
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if s := p.streams[id]; s != nil {
				go s.copyTurn(p)
			}
		}
		p.mu.Unlock()
	}
}
