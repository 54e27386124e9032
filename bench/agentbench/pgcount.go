package main

// pgcount.go counts the statements one agent sends to PostgreSQL, grouped by
// transaction, without pg_stat_statements: a loopback proxy between the agent
// and the server reads the frontend side of the wire protocol (Query, and
// Parse/Bind/Execute with the statement text remembered per prepared name)
// and passes every byte through unchanged. Item 9 uses it to count the
// statements of each lease renewal tick of the real binary.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
)

// renewMarker identifies the agent's batched renewal statement (lease.go's
// UPDATE sensor_workload_assignment ... FROM unnest(...)).
func isRenewStatement(q string) bool {
	s := strings.Join(strings.Fields(q), " ")
	return strings.HasPrefix(s, "UPDATE sensor_workload_assignment") && strings.Contains(s, "unnest(") &&
		strings.Contains(s, "renewed_at = clock_timestamp()")
}

// txnTally is what the proxy saw: every transaction containing a renewal,
// by its statement count (BEGIN and COMMIT included).
type txnTally struct {
	mu         sync.Mutex
	statements int64 // every statement seen
	renewTicks []int // statements of each renewal transaction, in order
}

func (t *txnTally) snapshot() (int64, []int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.statements, append([]int(nil), t.renewTicks...)
}

// pgCountProxy listens on loopback and forwards to one PostgreSQL server.
type pgCountProxy struct {
	ln       net.Listener
	upstream string
	tally    txnTally
	wg       sync.WaitGroup
}

// startPGCountProxy proxies to the host:port of dbURL; url returns dbURL
// pointed at the proxy (TLS disabled, so the protocol stays readable).
func startPGCountProxy(dbURL string) (*pgCountProxy, string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, "", fmt.Errorf("database URL: %w", err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	p := &pgCountProxy{ln: ln, upstream: host}
	go p.accept()
	u.Host = ln.Addr().String()
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return p, u.String(), nil
}

func (p *pgCountProxy) close() { p.ln.Close() }

func (p *pgCountProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

// serve relays one connection: server to client as raw bytes, client to
// server message by message (counted).
func (p *pgCountProxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer server.Close()
	go func() {
		io.Copy(client, server)
		client.Close()
	}()
	p.relayFrontend(client, server)
}

// relayFrontend forwards the client's messages and counts its statements.
func (p *pgCountProxy) relayFrontend(r io.Reader, w io.Writer) {
	// Start-up phase: untyped messages (SSL/GSS requests, then the startup).
	for {
		msg, err := readUntyped(r)
		if err != nil || writeAll(w, msg) != nil {
			return
		}
		code := binary.BigEndian.Uint32(msg[4:8])
		if code != 80877103 && code != 80877104 { // not SSLRequest / GSSENCRequest
			break
		}
	}
	stmts := map[string]string{}   // prepared name → text
	portals := map[string]string{} // portal → text
	var txn []string
	inTx := false
	record := func(q string) {
		p.tally.mu.Lock()
		p.tally.statements++
		p.tally.mu.Unlock()
		verb := strings.ToLower(strings.TrimSpace(q))
		switch {
		case strings.HasPrefix(verb, "begin"):
			inTx, txn = true, []string{q}
		case inTx && (strings.HasPrefix(verb, "commit") || strings.HasPrefix(verb, "rollback")):
			txn = append(txn, q)
			for _, s := range txn {
				if isRenewStatement(s) {
					p.tally.mu.Lock()
					p.tally.renewTicks = append(p.tally.renewTicks, len(txn))
					p.tally.mu.Unlock()
					break
				}
			}
			inTx, txn = false, nil
		case inTx:
			txn = append(txn, q)
		}
	}
	for {
		typ, body, raw, err := readTyped(r)
		if err != nil || writeAll(w, raw) != nil {
			return
		}
		switch typ {
		case 'Q':
			record(cstring(body, 0))
		case 'P':
			name := cstring(body, 0)
			stmts[name] = cstring(body, len(name)+1)
		case 'B':
			portal := cstring(body, 0)
			portals[portal] = stmts[cstring(body, len(portal)+1)]
		case 'E':
			record(portals[cstring(body, 0)])
		case 'X':
			return
		}
	}
}

func readUntyped(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 8 || n > 1<<20 {
		return nil, errors.New("bad start-up message length")
	}
	msg := make([]byte, n)
	copy(msg, hdr[:])
	_, err := io.ReadFull(r, msg[4:])
	return msg, err
}

func readTyped(r io.Reader) (byte, []byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 4 || n > 1<<30 {
		return 0, nil, nil, errors.New("bad message length")
	}
	raw := make([]byte, 1+n)
	copy(raw, hdr[:])
	if _, err := io.ReadFull(r, raw[5:]); err != nil {
		return 0, nil, nil, err
	}
	return hdr[0], raw[5:], raw, nil
}

// cstring is the NUL-terminated string of b starting at off.
func cstring(b []byte, off int) string {
	if off >= len(b) {
		return ""
	}
	if i := strings.IndexByte(string(b[off:]), 0); i >= 0 {
		return string(b[off : off+i])
	}
	return string(b[off:])
}

func writeAll(w io.Writer, b []byte) error {
	_, err := w.Write(b)
	return err
}
