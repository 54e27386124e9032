package main

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// uuidV4Pattern is the canonical form newUUIDv4 must produce.
var uuidV4Pattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// testEnvelopeJSON builds a valid envelope body for messageType around payload.
func testEnvelopeJSON(messageType, payload string) []byte {
	return []byte(`{"message_id":"6f1c2b1e-8a1d-4c7e-9f00-0123456789ab","correlation_id":"6f1c2b1e-8a1d-4c7e-9f00-0123456789ab",` +
		`"message_type":"` + messageType + `","version":"1.0","timestamp":"2025-05-01T12:00:00.123456Z",` +
		`"headers":{"retry_count":0,"source_service":"api"},"payload":` + payload + `}`)
}

func TestDecodeEnvelope(t *testing.T) {
	ts := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		body    string
		wantErr bool
		check   func(t *testing.T, e envelope)
	}{
		{name: "full RuleEnabled", body: string(testEnvelopeJSON("RuleEnabled", `{"rule_id":1,"rule_ref":"core.r","trigger_ref":"core.t"}`)),
			check: func(t *testing.T, e envelope) {
				if e.MessageType != "RuleEnabled" || e.MessageID != "6f1c2b1e-8a1d-4c7e-9f00-0123456789ab" ||
					e.Headers.SourceService != "api" || e.Version != "1.0" {
					t.Errorf("decoded %+v", e)
				}
				if want := ts.Add(123456 * time.Microsecond); !e.Timestamp.Equal(want) {
					t.Errorf("timestamp %v, want %v", e.Timestamp, want)
				}
			}},
		{name: "defaults for ids version headers", body: `{"message_type":"RuleCreated","timestamp":"2025-05-01T12:00:00Z","payload":{}}`,
			check: func(t *testing.T, e envelope) {
				if !uuidV4Pattern.MatchString(e.MessageID) || !uuidV4Pattern.MatchString(e.CorrelationID) {
					t.Errorf("generated ids %q %q are not UUID v4", e.MessageID, e.CorrelationID)
				}
				if e.MessageID == e.CorrelationID {
					t.Errorf("independently generated ids are equal")
				}
				if e.Version != "1.0" || e.Headers != (envelopeHeaders{}) {
					t.Errorf("defaults: version %q headers %+v", e.Version, e.Headers)
				}
			}},
		{name: "null ids are generated", body: `{"message_id":null,"correlation_id":null,"message_type":"RuleCreated","timestamp":"2025-05-01T12:00:00Z","payload":1}`,
			check: func(t *testing.T, e envelope) {
				if !uuidV4Pattern.MatchString(e.MessageID) {
					t.Errorf("message_id %q", e.MessageID)
				}
			}},
		{name: "uuid spellings normalised", body: `{"message_id":"{6F1C2B1E-8A1D-4C7E-9F00-0123456789AB}","correlation_id":"urn:uuid:6f1c2b1e-8a1d-4c7e-9f00-0123456789ab","message_type":"PackRegistered","timestamp":"2025-05-01T12:00:00Z","payload":null}`,
			check: func(t *testing.T, e envelope) {
				const want = "6f1c2b1e-8a1d-4c7e-9f00-0123456789ab"
				if e.MessageID != want || e.CorrelationID != want {
					t.Errorf("ids %q %q, want %q", e.MessageID, e.CorrelationID, want)
				}
				if string(e.Payload) != "null" {
					t.Errorf("payload %s, want null", e.Payload)
				}
			}},
		{name: "simple uuid accepted", body: `{"message_id":"6F1C2B1E8A1D4C7E9F000123456789AB","message_type":"RuleCreated","timestamp":"2025-05-01T12:00:00Z","payload":{}}`,
			check: func(t *testing.T, e envelope) {
				if e.MessageID != "6f1c2b1e-8a1d-4c7e-9f00-0123456789ab" {
					t.Errorf("message_id %q", e.MessageID)
				}
			}},
		{name: "offset timestamp becomes UTC", body: `{"message_type":"RuleDeleted","timestamp":"2025-05-01T14:00:00+02:00","payload":{}}`,
			check: func(t *testing.T, e envelope) {
				if !e.Timestamp.Equal(ts) || e.Timestamp.Location() != time.UTC {
					t.Errorf("timestamp %v", e.Timestamp)
				}
			}},
		{name: "chrono-style space and lower-case z", body: `{"message_type":"RuleDeleted","timestamp":"2025-05-01 12:00:00z","payload":{}}`,
			check: func(t *testing.T, e envelope) {
				if !e.Timestamp.Equal(ts) {
					t.Errorf("timestamp %v", e.Timestamp)
				}
			}},
		{name: "headers trace id and extra keys", body: `{"message_type":"TriggerChanged","timestamp":"2025-05-01T12:00:00Z","headers":{"retry_count":4294967295,"trace_id":"6F1C2B1E-8A1D-4C7E-9F00-0123456789AB","x-custom":[1]},"payload":{}}`,
			check: func(t *testing.T, e envelope) {
				if e.Headers.RetryCount != 4294967295 || e.Headers.TraceID != "6f1c2b1e-8a1d-4c7e-9f00-0123456789ab" {
					t.Errorf("headers %+v", e.Headers)
				}
			}},
		{name: "known non-lifecycle type is valid", body: `{"message_type":"EventCreated","timestamp":"2025-05-01T12:00:00Z","payload":{}}`},
		{name: "unknown top-level keys ignored", body: `{"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{},"extra":{"a":[1,2]}}`},

		{name: "empty body", body: ``, wantErr: true},
		{name: "not json", body: `\x00\x01garbage`, wantErr: true},
		{name: "array", body: `[1,2,3]`, wantErr: true},
		{name: "string", body: `"RuleEnabled"`, wantErr: true},
		{name: "non-envelope object", body: `{"foo":1}`, wantErr: true},
		{name: "trailing garbage", body: `{"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}} x`, wantErr: true},
		{name: "two objects", body: `{"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}{}`, wantErr: true},
		{name: "invalid utf8", body: "{\"message_type\":\"RuleEnabled\",\"timestamp\":\"2025-05-01T12:00:00Z\",\"payload\":\"\xff\"}", wantErr: true},
		{name: "missing message_type", body: `{"timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "unknown message_type", body: `{"message_type":"RuleUpdated","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "snake message_type", body: `{"message_type":"rule_enabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "null message_type", body: `{"message_type":null,"timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "numeric message_type", body: `{"message_type":7,"timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "key case matters", body: `{"Message_Type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "duplicate key", body: `{"message_type":"RuleEnabled","message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "missing timestamp", body: `{"message_type":"RuleEnabled","payload":{}}`, wantErr: true},
		{name: "null timestamp", body: `{"message_type":"RuleEnabled","timestamp":null,"payload":{}}`, wantErr: true},
		{name: "unix timestamp", body: `{"message_type":"RuleEnabled","timestamp":1714564800,"payload":{}}`, wantErr: true},
		{name: "timestamp without zone", body: `{"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00","payload":{}}`, wantErr: true},
		{name: "single-digit hour", body: `{"message_type":"RuleEnabled","timestamp":"2025-05-01T1:00:00Z","payload":{}}`, wantErr: true},
		{name: "missing payload", body: `{"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z"}`, wantErr: true},
		{name: "bad message_id", body: `{"message_id":"abc","message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "numeric correlation_id", body: `{"correlation_id":12,"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "uuid with bad hyphens", body: `{"message_id":"6f1c2b1e8-a1d-4c7e-9f00-0123456789ab","message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "urn with simple uuid", body: `{"message_id":"urn:uuid:6f1c2b1e8a1d4c7e9f000123456789ab","message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "null version", body: `{"version":null,"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "numeric version", body: `{"version":1,"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "null headers", body: `{"headers":null,"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "negative retry_count", body: `{"headers":{"retry_count":-1},"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "huge retry_count", body: `{"headers":{"retry_count":4294967296},"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "exponent retry_count", body: `{"headers":{"retry_count":1e999},"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "float retry_count", body: `{"headers":{"retry_count":1.0},"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "bad trace_id", body: `{"headers":{"trace_id":"x"},"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
		{name: "numeric source_service", body: `{"headers":{"source_service":1},"message_type":"RuleEnabled","timestamp":"2025-05-01T12:00:00Z","payload":{}}`, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := decodeEnvelope([]byte(tc.body))
			if tc.wantErr {
				if !errors.Is(err, ErrBadEnvelope) {
					t.Fatalf("decodeEnvelope(%s): err %v, want ErrBadEnvelope", tc.body, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeEnvelope(%s): %v", tc.body, err)
			}
			if tc.check != nil {
				tc.check(t, e)
			}
		})
	}
}

func TestDecodeEnvelopeSizeCap(t *testing.T) {
	pad := strings.Repeat("a", maxEnvelopeBytes)
	big := testEnvelopeJSON("RuleEnabled", `{"pad":"`+pad+`"}`)
	if _, err := decodeEnvelope(big); !errors.Is(err, ErrBadEnvelope) || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized body: err %v, want size error", err)
	}
	// Just under the cap still decodes: the cap is on size, not on content.
	fit := testEnvelopeJSON("RuleEnabled", `{"pad":"`+pad[:maxEnvelopeBytes-400]+`"}`)
	if _, err := decodeEnvelope(fit); err != nil {
		t.Fatalf("body of %d bytes under the cap: %v", len(fit), err)
	}
}

func TestPromptFromEnvelope(t *testing.T) {
	cases := []struct {
		name        string
		messageType string
		payload     string
		want        prompt
		wantErr     bool
	}{
		{name: "rule enabled ignores payload", messageType: "RuleEnabled", payload: `"anything"`, want: prompt{MessageType: "RuleEnabled"}},
		{name: "trigger changed", messageType: "TriggerChanged", payload: `{}`, want: prompt{MessageType: "TriggerChanged"}},
		{name: "pack deleted", messageType: "PackDeleted", payload: `{"pack_id":7,"pack_ref":"slack"}`, want: prompt{MessageType: "PackDeleted", PackRef: "slack"}},
		{name: "pack deleted newer fields", messageType: "PackDeleted",
			payload: `{"pack_id":-9223372036854775808,"pack_ref":"aws","runtime_environment_paths":["/opt/x"],"release_digests":null}`,
			want:    prompt{MessageType: "PackDeleted", PackRef: "aws"}},
		{name: "pack deleted without pack_ref", messageType: "PackDeleted", payload: `{"pack_id":7}`, wantErr: true},
		{name: "pack deleted null pack_ref", messageType: "PackDeleted", payload: `{"pack_id":7,"pack_ref":null}`, wantErr: true},
		{name: "pack deleted numeric pack_ref", messageType: "PackDeleted", payload: `{"pack_id":7,"pack_ref":7}`, wantErr: true},
		{name: "pack deleted without pack_id", messageType: "PackDeleted", payload: `{"pack_ref":"slack"}`, wantErr: true},
		{name: "pack deleted huge pack_id", messageType: "PackDeleted", payload: `{"pack_id":9223372036854775808,"pack_ref":"slack"}`, wantErr: true},
		{name: "pack deleted float pack_id", messageType: "PackDeleted", payload: `{"pack_id":7.5,"pack_ref":"slack"}`, wantErr: true},
		{name: "pack deleted bad paths", messageType: "PackDeleted", payload: `{"pack_id":7,"pack_ref":"s","runtime_environment_paths":[1]}`, wantErr: true},
		{name: "pack deleted null payload", messageType: "PackDeleted", payload: `null`, wantErr: true},
		{name: "pack deleted array payload", messageType: "PackDeleted", payload: `[7,"slack"]`, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := decodeEnvelope(testEnvelopeJSON(tc.messageType, tc.payload))
			if err != nil {
				t.Fatalf("decodeEnvelope: %v", err)
			}
			got, err := promptFromEnvelope(e)
			if tc.wantErr {
				if !errors.Is(err, ErrBadEnvelope) {
					t.Fatalf("err %v, want ErrBadEnvelope", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("promptFromEnvelope = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestNewMessageID(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id := newUUIDv4()
		if !uuidV4Pattern.MatchString(id) {
			t.Fatalf("newUUIDv4() = %q, not a canonical UUID v4", id)
		}
		if seen[id] {
			t.Fatalf("newUUIDv4() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestNewEnvelopeRoundTrip(t *testing.T) {
	e, err := newEnvelope("EventCreated", "system-alert", map[string]any{"event_id": 5})
	if err != nil {
		t.Fatal(err)
	}
	if e.MessageID != e.CorrelationID || e.Version != "1.0" || e.Headers.RetryCount != 0 {
		t.Errorf("newEnvelope defaults: %+v", e)
	}
	body, err := e.encode()
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(string(body), "\n") {
		t.Errorf("encode leaves a trailing newline")
	}
	var wire map[string]any
	if err := json.Unmarshal(body, &wire); err != nil {
		t.Fatal(err)
	}
	headers, _ := wire["headers"].(map[string]any)
	if headers["retry_count"] != float64(0) || headers["source_service"] != "system-alert" {
		t.Errorf("wire headers %v", headers)
	}
	if _, has := headers["trace_id"]; has {
		t.Errorf("absent trace_id must be omitted like the reference's skip_serializing_if: %v", headers)
	}
	back, err := decodeEnvelope(body)
	if err != nil {
		t.Fatalf("own envelope does not decode: %v\n%s", err, body)
	}
	if back.MessageID != e.MessageID || !back.Timestamp.Equal(e.Timestamp) || string(back.Payload) != `{"event_id":5}` {
		t.Errorf("round trip: got %+v, want %+v", back, e)
	}
}
