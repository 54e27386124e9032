package main

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
)

// pgMsg frames one typed frontend message.
func pgMsg(typ byte, parts ...string) []byte {
	var body []byte
	for _, p := range parts {
		body = append(append(body, p...), 0)
	}
	out := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(4+len(body)))
	return append(out, body...)
}

// TestPGCountProxyGroupsRenewalTransactions: a start-up with an SSL request
// first, a renewal transaction mixing the simple and the extended protocol
// (a named prepared statement bound twice), a transaction without the
// renewal and an autocommit statement; only the renewal transaction is a
// tick, with its statement count, and every byte is passed through.
func TestPGCountProxyGroupsRenewalTransactions(t *testing.T) {
	var in bytes.Buffer
	ssl := make([]byte, 8)
	binary.BigEndian.PutUint32(ssl, 8)
	binary.BigEndian.PutUint32(ssl[4:], 80877103)
	in.Write(ssl)
	startup := make([]byte, 8)
	binary.BigEndian.PutUint32(startup, 8)
	binary.BigEndian.PutUint32(startup[4:], 196608)
	in.Write(startup)
	renew := "UPDATE sensor_workload_assignment a\nSET lease_expires_at = x, renewed_at = clock_timestamp()\nFROM unnest($3::bigint[], $4::bigint[]) AS h"
	for _, m := range [][]byte{
		pgMsg('Q', "begin"),
		pgMsg('P', "s1", "SELECT pg_advisory_xact_lock_shared(1)"), pgMsg('B', "", "s1"), pgMsg('E', ""), pgMsg('S'),
		pgMsg('P', "", renew), pgMsg('B', "", ""), pgMsg('E', ""), pgMsg('S'),
		pgMsg('Q', "commit"),
		pgMsg('Q', "begin"), pgMsg('B', "", "s1"), pgMsg('E', ""), pgMsg('Q', "commit"),
		pgMsg('Q', "SELECT 1"),
		pgMsg('X'),
	} {
		in.Write(m)
	}
	want := slices.Clone(in.Bytes())
	var p pgCountProxy
	var out bytes.Buffer
	p.relayFrontend(&in, &out)
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("proxy changed the byte stream (%d bytes in, %d out)", len(want), out.Len())
	}
	stmts, ticks := p.tally.snapshot()
	if stmts != 8 {
		t.Errorf("statements = %d, want 8", stmts)
	}
	if !slices.Equal(ticks, []int{4}) {
		t.Errorf("renewal ticks = %v, want [4] (begin, lock, renew, commit)", ticks)
	}
}

func TestIsRenewStatement(t *testing.T) {
	if isRenewStatement("UPDATE sensor_workload_assignment SET lease_expires_at = now() WHERE workload = $1") {
		t.Error("a single-lease UPDATE is not the batched renewal")
	}
}
