package main

import (
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultMode is what a faultProxy does with traffic right now.
type faultMode int

const (
	faultPass  faultMode = iota // forward both ways
	faultCut                    // reset every connection, reset new ones at once
	faultStall                  // hold connections open, forward nothing
)

// faultProxy is a TCP proxy between the agent under test and a real service
// (PostgreSQL, RabbitMQ) that the test drives: cut resets every connection
// and refuses new ones with a reset (a crashed server or a restart), stall
// keeps connections open but forwards nothing (a dead peer or a black-holing
// network: no RST, no FIN, only silence), and restore forwards again. The
// machine-wide services are never touched, so tests stay independent.
//
// After a stall, restore resets the connections that were held: their peer
// lost every byte sent meanwhile, as a restarted server answers a
// retransmission with a reset. Connections made after restore work.
type faultProxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	accepted atomic.Int64 // connections accepted since start, whatever the mode

	mu      sync.Mutex
	accepts []time.Time // when each connection was accepted
	mode    faultMode
	wake    chan struct{} // closed and replaced when the mode changes
	conns   map[*faultProxyConn]struct{}
}

// faultProxyConn is one client connection and its upstream (nil until dialled).
type faultProxyConn struct {
	client, upstream net.Conn
	once             sync.Once
}

// newFaultProxy listens on a free loopback port and forwards to target
// (host:port); it is closed, with every connection, when the test ends.
func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fault proxy: listen: %v", err)
	}
	p := &faultProxy{t: t, ln: ln, target: target, wake: make(chan struct{}), conns: map[*faultProxyConn]struct{}{}}
	go p.acceptLoop()
	t.Cleanup(p.close)
	return p
}

// newFaultProxyFor starts a proxy to the host of rawURL and returns it with
// rawURL rewritten to go through it (user, path and query kept).
func newFaultProxyFor(t testing.TB, rawURL string) (*faultProxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("fault proxy: parse URL: %v", err)
	}
	p := newFaultProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	return p, u.String()
}

// addr is the proxy's listening address.
func (p *faultProxy) addr() string { return p.ln.Addr().String() }

// connections is how many connections the proxy has accepted so far.
func (p *faultProxy) connections() int64 { return p.accepted.Load() }

// acceptedSince returns when each connection accepted after since arrived.
func (p *faultProxy) acceptedSince(since time.Time) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Time
	for _, at := range p.accepts {
		if at.After(since) {
			out = append(out, at)
		}
	}
	return out
}

// cut resets every connection and makes new ones fail at once.
func (p *faultProxy) cut() { p.setMode(faultCut, true) }

// stall stops forwarding: open connections stay open but silent, new ones
// are accepted and never answered.
func (p *faultProxy) stall() { p.setMode(faultStall, false) }

// restore forwards again; connections held by a stall are reset.
func (p *faultProxy) restore() { p.setMode(faultPass, true) }

func (p *faultProxy) setMode(m faultMode, resetAll bool) {
	p.mu.Lock()
	p.mode = m
	close(p.wake)
	p.wake = make(chan struct{})
	var doomed []*faultProxyConn
	if resetAll {
		for c := range p.conns {
			doomed = append(doomed, c)
		}
	}
	p.mu.Unlock()
	for _, c := range doomed {
		p.reset(c)
	}
}

// gate blocks while the proxy stalls; it reports false once c was reset.
func (p *faultProxy) gate(c *faultProxyConn) bool {
	for {
		p.mu.Lock()
		mode, wake := p.mode, p.wake
		_, live := p.conns[c]
		p.mu.Unlock()
		switch {
		case !live || mode == faultCut:
			return false
		case mode == faultPass:
			return true
		}
		<-wake
	}
}

func (p *faultProxy) acceptLoop() {
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		c := &faultProxyConn{client: nc}
		p.mu.Lock()
		p.accepts = append(p.accepts, time.Now())
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		go p.serve(c)
	}
}

// serve dials upstream once the proxy lets traffic through, then copies both ways.
func (p *faultProxy) serve(c *faultProxyConn) {
	if !p.gate(c) {
		p.reset(c)
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.reset(c)
		return
	}
	p.mu.Lock()
	_, live := p.conns[c]
	if live {
		c.upstream = up
	}
	p.mu.Unlock()
	if !live {
		up.Close()
		return
	}
	go p.pipe(c, up, c.client)
	p.pipe(c, c.client, up)
}

// pipe copies src to dst chunk by chunk, waiting at the gate before each
// read and each write so that nothing crosses while the proxy stalls.
func (p *faultProxy) pipe(c *faultProxyConn, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for p.gate(c) {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate(c) {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// Half-close: pass the FIN on, the other direction may still flow.
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
					return
				}
			}
			break
		}
	}
	p.reset(c)
}

// reset closes both sides of c with an RST (SO_LINGER 0) and forgets it.
func (p *faultProxy) reset(c *faultProxyConn) {
	c.once.Do(func() {
		p.mu.Lock()
		delete(p.conns, c)
		up := c.upstream
		p.mu.Unlock()
		for _, nc := range []net.Conn{c.client, up} {
			if tc, ok := nc.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			if nc != nil {
				nc.Close()
			}
		}
		// A goroutine parked at the gate must notice that c is gone.
		p.mu.Lock()
		close(p.wake)
		p.wake = make(chan struct{})
		p.mu.Unlock()
	})
}

func (p *faultProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	var all []*faultProxyConn
	for c := range p.conns {
		all = append(all, c)
	}
	p.mu.Unlock()
	for _, c := range all {
		p.reset(c)
	}
}

// TestFaultProxy checks the proxy's three modes against an echo server:
// pass forwards, cut resets open and new connections, stall forwards
// nothing and restore resets what the stall held while new connections work.
func TestFaultProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	p := newFaultProxy(t, ln.Addr().String())
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.addr())
		if err != nil {
			t.Fatalf("dial proxy: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	echo := func(c net.Conn, wait time.Duration) error {
		c.SetDeadline(time.Now().Add(wait))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return err
	}
	var timeout interface{ Timeout() bool }

	c1 := dial()
	if err := echo(c1, 5*time.Second); err != nil {
		t.Fatalf("pass: %v", err)
	}
	p.cut()
	if err := echo(c1, 5*time.Second); err == nil || errors.As(err, &timeout) && timeout.Timeout() {
		t.Errorf("cut: open connection answered %v, want a reset", err)
	}
	// A new connection is reset at once: at connect or at the first exchange.
	if c, err := net.Dial("tcp", p.addr()); err == nil {
		if err := echo(c, 5*time.Second); err == nil || errors.As(err, &timeout) && timeout.Timeout() {
			t.Errorf("cut: new connection answered %v, want a reset", err)
		}
		c.Close()
	}
	p.restore()
	c2 := dial()
	if err := echo(c2, 5*time.Second); err != nil {
		t.Fatalf("restore after cut: %v", err)
	}
	p.stall()
	if err := echo(c2, 300*time.Millisecond); !errors.As(err, &timeout) || !timeout.Timeout() {
		t.Errorf("stall: open connection gave %v, want silence (timeout)", err)
	}
	c3 := dial()
	if err := echo(c3, 300*time.Millisecond); !errors.As(err, &timeout) || !timeout.Timeout() {
		t.Errorf("stall: new connection gave %v, want silence (timeout)", err)
	}
	p.restore()
	if err := echo(c2, 5*time.Second); err == nil || errors.As(err, &timeout) && timeout.Timeout() {
		t.Errorf("restore after stall: held connection answered %v, want a reset", err)
	}
	if err := echo(dial(), 5*time.Second); err != nil {
		t.Errorf("restore after stall: new connection: %v", err)
	}
	if got := p.connections(); got != 5 {
		t.Errorf("proxy counted %d connections, want 5", got)
	}
}
