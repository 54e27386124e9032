package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrBadEnvelope marks a broker message body that is not a valid Attune
// message envelope. The consumer nacks such messages without requeue: no
// amount of redelivery can make them valid (CONTRACT §9).
var ErrBadEnvelope = errors.New("invalid message envelope")

// maxEnvelopeBytes caps the body the agent will parse. Lifecycle prompts are a
// few hundred bytes; anything near this size is junk or an attack, and parsing
// it would only cost memory. The reference has no cap; this is an [agent] limit.
const maxEnvelopeBytes = 1 << 20

// envelopeVersion is the version the reference stamps on, and defaults for,
// every envelope.
const envelopeVersion = "1.0"

// Lifecycle message types the sensor side reacts to specially.
const (
	msgTypePackDeleted  = "PackDeleted"
	msgTypeEventCreated = "EventCreated"
)

// knownMessageTypes is the reference's MessageType enum
// (crates/common/src/mq/messages.rs). The reference deserializes
// message_type into that enum, so any other string fails the whole envelope:
// an unknown type is nacked, not acked.
var knownMessageTypes = map[string]bool{
	"EventCreated": true, "EnforcementCreated": true, "ExecutionRequested": true,
	"ExecutionStatusChanged": true, "ExecutionCompleted": true, "InquiryCreated": true,
	"InquiryResponded": true, "NotificationCreated": true, "RuleCreated": true,
	"RuleEnabled": true, "RuleDisabled": true, "RuleDeleted": true,
	"PackRegistered": true, "PackDeleted": true, "ActionChanged": true,
	"TriggerChanged": true, "RuntimeChanged": true, "PackChanged": true,
	"PermissionSetChanged": true, "IdentityAuthorizationChanged": true,
	"ExecutionCancelRequested": true, "PackTestRequested": true,
}

// envelope is Attune's JSON message wrapper. Field names and defaults follow
// the reference MessageEnvelope so that what the agent publishes is readable
// by every Rust service and what they publish decodes here.
type envelope struct {
	MessageID     string          `json:"message_id"`
	CorrelationID string          `json:"correlation_id"`
	MessageType   string          `json:"message_type"`
	Version       string          `json:"version"`
	Timestamp     time.Time       `json:"timestamp"`
	Headers       envelopeHeaders `json:"headers"`
	Payload       json.RawMessage `json:"payload"`
}

// envelopeHeaders is the envelope's headers object. The reference also keeps
// arbitrary extra header keys; the agent neither needs nor forwards them.
type envelopeHeaders struct {
	RetryCount    uint32 `json:"retry_count"`
	SourceService string `json:"source_service,omitempty"`
	TraceID       string `json:"trace_id,omitempty"`
}

// packDeletedPayload is the PackDeleted payload. The two optional lists exist
// only in newer reference generations; runtime_environment_paths feeds the
// purge (packpurge.go), release_digests is read but not used.
type packDeletedPayload struct {
	PackID                  int64
	PackRef                 string
	RuntimeEnvironmentPaths []string
	ReleaseDigests          []string
}

// prompt is what one valid lifecycle message tells the agent: reconcile now,
// and for PackDeleted, which pack's sensors to stop first.
type prompt struct {
	MessageType string
	PackRef     string
}

// decodeEnvelope parses and validates one message body with the reference's
// rules: message_type, timestamp (RFC 3339) and payload are required;
// message_id and correlation_id, when absent or null, get fresh UUIDs but must
// be UUIDs when given; version defaults to "1.0"; headers default to
// {"retry_count":0}. Every failure wraps ErrBadEnvelope.
func decodeEnvelope(body []byte) (envelope, error) {
	var env envelope
	if len(body) > maxEnvelopeBytes {
		return env, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrBadEnvelope, len(body), maxEnvelopeBytes)
	}
	fields, err := envelopeObjectFields(body)
	if err != nil {
		return env, err
	}
	if env.MessageID, err = envelopeUUIDField(fields, "message_id"); err != nil {
		return env, err
	}
	if env.CorrelationID, err = envelopeUUIDField(fields, "correlation_id"); err != nil {
		return env, err
	}
	raw, ok := fields["message_type"]
	if !ok {
		return env, fmt.Errorf("%w: missing message_type", ErrBadEnvelope)
	}
	if err := json.Unmarshal(raw, &env.MessageType); err != nil || !knownMessageTypes[env.MessageType] {
		return env, fmt.Errorf("%w: unknown message_type %s", ErrBadEnvelope, truncateForLog(raw))
	}
	env.Version = envelopeVersion
	if raw, ok := fields["version"]; ok {
		if err := json.Unmarshal(raw, &env.Version); err != nil || isJSONNull(raw) {
			return env, fmt.Errorf("%w: version is not a string", ErrBadEnvelope)
		}
	}
	raw, ok = fields["timestamp"]
	if !ok {
		return env, fmt.Errorf("%w: missing timestamp", ErrBadEnvelope)
	}
	if env.Timestamp, err = parseEnvelopeTime(raw); err != nil {
		return env, err
	}
	if raw, ok := fields["headers"]; ok {
		if env.Headers, err = decodeEnvelopeHeaders(raw); err != nil {
			return env, err
		}
	}
	raw, ok = fields["payload"]
	if !ok {
		return env, fmt.Errorf("%w: missing payload", ErrBadEnvelope)
	}
	env.Payload = raw
	return env, nil
}

// envelopeObjectFields checks that body is exactly one JSON object in valid
// UTF-8 and returns its top-level members. Like serde's derived decoder (and
// unlike encoding/json into a struct) it matches keys case-sensitively and
// rejects a key that appears twice.
func envelopeObjectFields(body []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(body) || !json.Valid(body) {
		return nil, fmt.Errorf("%w: body is not valid JSON", ErrBadEnvelope)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: body is not a JSON object", ErrBadEnvelope)
	}
	fields := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadEnvelope, err)
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadEnvelope, err)
		}
		if _, dup := fields[key]; dup {
			return nil, fmt.Errorf("%w: duplicate field %q", ErrBadEnvelope, key)
		}
		fields[key] = raw
	}
	return fields, nil
}

// envelopeUUIDField reads an optional UUID member: absent or null yields a
// fresh UUID, anything else must parse as one (normalised to lower-case
// hyphenated form), as in the reference.
func envelopeUUIDField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok || isJSONNull(raw) {
		return newUUIDv4(), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: %s is not a string", ErrBadEnvelope, name)
	}
	id, ok := normalizeMessageUUID(s)
	if !ok {
		return "", fmt.Errorf("%w: %s is not a UUID", ErrBadEnvelope, name)
	}
	return id, nil
}

// normalizeMessageUUID accepts the spellings the Rust uuid crate parses
// (hyphenated, 32 plain hex digits, braced, urn:uuid:) and returns the
// canonical lower-case hyphenated form.
func normalizeMessageUUID(s string) (string, bool) {
	switch {
	case len(s) == 38 && s[0] == '{' && s[37] == '}':
		s = s[1:37]
	case len(s) == 45 && strings.HasPrefix(strings.ToLower(s[:9]), "urn:uuid:"):
		s = s[9:]
	}
	if len(s) == 36 {
		if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
			return "", false
		}
		s = s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	}
	if len(s) != 32 {
		return "", false
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return "", false
	}
	return formatMessageUUID(b), true
}

// formatMessageUUID renders 16 bytes as a hyphenated UUID.
func formatMessageUUID(b []byte) string {
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newUUIDv4 returns a random (version 4) UUID from crypto/rand: ids of
// envelopes that arrive without them and of the ones the agent publishes,
// and the worker instance id of the worker JWT.
func newUUIDv4() string {
	var b [16]byte
	rand.Read(b[:]) // never fails on supported platforms (Go 1.24+ crashes instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatMessageUUID(b[:])
}

// rfc3339Shape is the exact RFC 3339 date-time layout.
var rfc3339Shape = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`)

// parseEnvelopeTime parses an RFC 3339 timestamp. chrono (the reference) also
// takes a lower-case 't'/'z' or a space between date and time, so those are
// accepted too; the result is in UTC.
func parseEnvelopeTime(raw json.RawMessage) (time.Time, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, fmt.Errorf("%w: timestamp is not a string", ErrBadEnvelope)
	}
	norm := s
	if len(norm) > 10 && (norm[10] == 't' || norm[10] == ' ') {
		norm = norm[:10] + "T" + norm[11:]
	}
	if strings.HasSuffix(norm, "z") {
		norm = norm[:len(norm)-1] + "Z"
	}
	// time.Parse alone takes a one-digit hour; the pattern enforces the shape,
	// time.Parse the ranges.
	t, err := time.Parse(time.RFC3339Nano, norm)
	if err != nil || !rfc3339Shape.MatchString(norm) {
		return time.Time{}, fmt.Errorf("%w: timestamp %s is not RFC 3339", ErrBadEnvelope, truncateForLog(raw))
	}
	return t.UTC(), nil
}

// decodeEnvelopeHeaders validates the headers object with the reference's
// types: retry_count an unsigned 32-bit integer, source_service a string,
// trace_id a UUID; the latter two may be null. Other keys are ignored.
func decodeEnvelopeHeaders(raw json.RawMessage) (envelopeHeaders, error) {
	var h envelopeHeaders
	fields, err := envelopeObjectFields(raw)
	if err != nil {
		return h, fmt.Errorf("%w: headers is not an object", ErrBadEnvelope)
	}
	if rc, ok := fields["retry_count"]; ok {
		n, err := strconv.ParseUint(string(rc), 10, 32)
		if err != nil {
			return h, fmt.Errorf("%w: headers.retry_count %s is not a u32", ErrBadEnvelope, truncateForLog(rc))
		}
		h.RetryCount = uint32(n)
	}
	if ss, ok := fields["source_service"]; ok && !isJSONNull(ss) {
		if err := json.Unmarshal(ss, &h.SourceService); err != nil {
			return h, fmt.Errorf("%w: headers.source_service is not a string", ErrBadEnvelope)
		}
	}
	if tr, ok := fields["trace_id"]; ok && !isJSONNull(tr) {
		var s string
		if err := json.Unmarshal(tr, &s); err != nil {
			return h, fmt.Errorf("%w: headers.trace_id is not a string", ErrBadEnvelope)
		}
		id, ok := normalizeMessageUUID(s)
		if !ok {
			return h, fmt.Errorf("%w: headers.trace_id is not a UUID", ErrBadEnvelope)
		}
		h.TraceID = id
	}
	return h, nil
}

// packDeleted decodes the payload of a PackDeleted envelope: pack_id (a 64-bit
// integer) and pack_ref (a string) are required, as in the reference, whose
// listener nacks the message without requeue when they are not.
func (e envelope) packDeleted() (packDeletedPayload, error) {
	var p packDeletedPayload
	fields, err := envelopeObjectFields(e.Payload)
	if err != nil {
		return p, fmt.Errorf("%w: PackDeleted payload is not an object", ErrBadEnvelope)
	}
	id, ok := fields["pack_id"]
	if !ok {
		return p, fmt.Errorf("%w: PackDeleted payload lacks pack_id", ErrBadEnvelope)
	}
	if p.PackID, err = strconv.ParseInt(string(id), 10, 64); err != nil {
		return p, fmt.Errorf("%w: PackDeleted pack_id %s is not an i64", ErrBadEnvelope, truncateForLog(id))
	}
	ref, ok := fields["pack_ref"]
	if !ok || isJSONNull(ref) || json.Unmarshal(ref, &p.PackRef) != nil {
		return p, fmt.Errorf("%w: PackDeleted payload lacks a string pack_ref", ErrBadEnvelope)
	}
	for name, dst := range map[string]*[]string{
		"runtime_environment_paths": &p.RuntimeEnvironmentPaths,
		"release_digests":           &p.ReleaseDigests,
	} {
		if raw, ok := fields[name]; ok && !isJSONNull(raw) {
			if err := json.Unmarshal(raw, dst); err != nil {
				return p, fmt.Errorf("%w: PackDeleted %s is not a list of strings", ErrBadEnvelope, name)
			}
		}
	}
	return p, nil
}

// promptFromEnvelope turns a decoded envelope into the agent's prompt. Only
// PackDeleted has a payload the agent must understand; for every other type
// the reference ignores the payload and just reconciles.
func promptFromEnvelope(e envelope) (prompt, error) {
	p := prompt{MessageType: e.MessageType}
	if e.MessageType == msgTypePackDeleted {
		pd, err := e.packDeleted()
		if err != nil {
			return prompt{}, err
		}
		p.PackRef = pd.PackRef
	}
	return p, nil
}

// decodePrompt is what the consumer runs on each body: a valid envelope whose
// payload, where it matters, is valid too; anything else wraps ErrBadEnvelope.
func decodePrompt(body []byte) (prompt, error) {
	e, err := decodeEnvelope(body)
	if err != nil {
		return prompt{}, err
	}
	return promptFromEnvelope(e)
}

// newEnvelope wraps payload the way the reference's MessageEnvelope::new
// does: fresh message id, correlation id equal to it, version "1.0", current
// UTC time, retry_count 0, plus the publishing service's name.
func newEnvelope(messageType, source string, payload any) (envelope, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return envelope{}, fmt.Errorf("encode %s payload: %w", messageType, err)
	}
	id := newUUIDv4()
	return envelope{
		MessageID:     id,
		CorrelationID: id,
		MessageType:   messageType,
		Version:       envelopeVersion,
		Timestamp:     time.Now().UTC(),
		Headers:       envelopeHeaders{SourceService: source},
		Payload:       body,
	}, nil
}

// encode renders the envelope as the reference's serde_json would: no HTML
// escaping of '<', '>' and '&' (encoding/json's default), no trailing newline.
func (e envelope) encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("encode %s envelope: %w", e.MessageType, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// isJSONNull reports whether a raw member is the literal null.
func isJSONNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// truncateForLog keeps error messages about junk bodies short: a 1 MiB
// "message_type" must not become a 1 MiB log line.
func truncateForLog(raw []byte) string {
	const limit = 64
	if len(raw) <= limit {
		return string(raw)
	}
	return string(raw[:limit]) + "..."
}
