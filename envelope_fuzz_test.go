package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecodeEnvelope feeds arbitrary bodies to the decoder the consumer runs
// on every broker message. Plain `go test` replays the seed corpus in
// testdata/fuzz/FuzzDecodeEnvelope; `go test -fuzz FuzzDecodeEnvelope` explores.
// Properties: it never panics; a rejection always wraps ErrBadEnvelope; an
// accepted envelope is internally consistent and survives an encode/decode
// round trip unchanged (so what the agent publishes, it can read).
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(testEnvelopeJSON("RuleEnabled", `{"rule_id":1,"rule_ref":"a.b","trigger_ref":"core.timer"}`))
	f.Add(testEnvelopeJSON("PackDeleted", `{"pack_id":1,"pack_ref":"a"}`))
	f.Add([]byte(`{"message_type":"RuleCreated","timestamp":"2025-05-01T12:00:00Z","payload":null}`))
	f.Add([]byte(`{"foo":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := decodeEnvelope(body)
		if err != nil {
			if !errors.Is(err, ErrBadEnvelope) {
				t.Fatalf("rejection does not wrap ErrBadEnvelope: %v", err)
			}
			return
		}
		if !knownMessageTypes[e.MessageType] {
			t.Fatalf("accepted unknown message_type %q", e.MessageType)
		}
		if _, ok := normalizeMessageUUID(e.MessageID); !ok {
			t.Fatalf("accepted envelope has message_id %q", e.MessageID)
		}
		if _, ok := normalizeMessageUUID(e.CorrelationID); !ok {
			t.Fatalf("accepted envelope has correlation_id %q", e.CorrelationID)
		}
		if e.Timestamp.IsZero() || len(e.Payload) == 0 {
			t.Fatalf("accepted envelope lacks timestamp or payload: %+v", e)
		}
		// Whatever promptFromEnvelope says, it must say it with the sentinel.
		if _, err := promptFromEnvelope(e); err != nil && !errors.Is(err, ErrBadEnvelope) {
			t.Fatalf("promptFromEnvelope error does not wrap ErrBadEnvelope: %v", err)
		}
		again, err := e.encode()
		if err != nil {
			if e.Timestamp.Year() > 9999 || e.Timestamp.Year() < 0 {
				return // RFC 3339 cannot spell it; time.Parse still took it
			}
			t.Fatalf("re-encode accepted envelope: %v", err)
		}
		back, err := decodeEnvelope(again)
		if err != nil {
			t.Fatalf("re-decode own encoding: %v\n%s", err, again)
		}
		var want, got bytes.Buffer
		_ = json.Compact(&want, e.Payload)
		_ = json.Compact(&got, back.Payload)
		if bytes.Contains(again, []byte(`\u0026`)) && !bytes.Contains(body, []byte(`\u0026`)) {
			t.Fatalf("encode escaped '&' where serde would not: %s", again)
		}
		if back.MessageID != e.MessageID || back.CorrelationID != e.CorrelationID ||
			back.MessageType != e.MessageType || back.Version != e.Version ||
			!back.Timestamp.Equal(e.Timestamp) || back.Headers != e.Headers ||
			!bytes.Equal(want.Bytes(), got.Bytes()) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", e, back)
		}
	})
}
