package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	workerJWTTTL           = 86400 * time.Second // reference DEFAULT_WORKER_TOKEN_TTL_SECONDS
	workerJWTRefreshBefore = 300 * time.Second   // reference DEFAULT_WORKER_TOKEN_REFRESH_BEFORE_SECONDS
	// workerJWTIdentity is the sub claim: the reference's sensor service
	// signs as identity 1 (the system identity).
	workerJWTIdentity = "1"
	// sensorTokenTTLSeconds is the lifetime requested for sensor tokens.
	sensorTokenTTLSeconds = 86400
	// sensorTokenMaxBody caps how much of an API answer is read.
	sensorTokenMaxBody = 1 << 20
)

// ErrNoJWTSecret means security.jwt_secret is empty, so no worker JWT can be
// signed and no sensor token can be requested.
var ErrNoJWTSecret = errors.New("security.jwt_secret is required to request sensor tokens")

// workerJWTSigner signs the agent's own worker JWT (HS256 with
// security.jwt_secret), the credential the API's internal sensor-token
// endpoint accepts. It caches the token and re-signs it 300 s before expiry.
type workerJWTSigner struct {
	secret   []byte
	instance string // uuid v4, fixed for the life of the process
	now      func() time.Time

	mu        sync.Mutex
	workerID  string
	token     string
	refreshAt time.Time
}

// newWorkerJWTSigner makes a signer whose worker id is sensor-<uuid> until
// setWorkerID is called after registration.
func newWorkerJWTSigner(secret string) (*workerJWTSigner, error) {
	if secret == "" {
		return nil, ErrNoJWTSecret
	}
	return &workerJWTSigner{secret: []byte(secret), instance: newUUIDv4(), now: time.Now, workerID: "sensor-" + newUUIDv4()}, nil
}

// instanceID is the worker_instance claim (and the token request field
// under leases).
func (s *workerJWTSigner) instanceID() string { return s.instance }

// setWorkerID switches the login and worker_id claims to the registered
// numeric id; the cached token is dropped because it names the old id.
func (s *workerJWTSigner) setWorkerID(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workerID = strconv.FormatInt(id, 10)
	s.token = ""
}

// current returns the cached JWT, signing a fresh one when there is none or
// the cached one is within 300 s of expiry.
func (s *workerJWTSigner) current() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Before(s.refreshAt) {
		return s.token, nil
	}
	return s.signLocked()
}

// refresh signs a new JWT unconditionally (after the API answered 401).
func (s *workerJWTSigner) refresh() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signLocked()
}

// signLocked builds header.claims.signature. Field order follows the
// reference's serialisation (jsonwebtoken Header: typ then alg; Claims: sub,
// login, iat, exp, token_type, scope, metadata with sorted keys).
func (s *workerJWTSigner) signLocked() (string, error) {
	now := s.now()
	type metadata struct {
		WorkerID       string `json:"worker_id"`
		WorkerInstance string `json:"worker_instance"`
	}
	claims := struct {
		Sub       string   `json:"sub"`
		Login     string   `json:"login"`
		Iat       int64    `json:"iat"`
		Exp       int64    `json:"exp"`
		TokenType string   `json:"token_type"`
		Scope     string   `json:"scope"`
		Metadata  metadata `json:"metadata"`
	}{
		Sub: workerJWTIdentity, Login: "worker:" + s.workerID,
		Iat: now.Unix(), Exp: now.Add(workerJWTTTL).Unix(),
		TokenType: "worker", Scope: "internal_files",
		Metadata: metadata{WorkerID: s.workerID, WorkerInstance: s.instance},
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode worker JWT claims: %w", err)
	}
	enc := base64.RawURLEncoding
	unsigned := enc.EncodeToString([]byte(`{"typ":"JWT","alg":"HS256"}`)) + "." + enc.EncodeToString(body)
	mac := hmac.New(sha256.New, s.secret)
	mac.Write([]byte(unsigned))
	s.token = unsigned + "." + enc.EncodeToString(mac.Sum(nil))
	s.refreshAt = now.Add(workerJWTTTL - workerJWTRefreshBefore)
	return s.token, nil
}

// sensorTokenRequest is the body of POST {api}/auth/internal/sensor-token;
// field order is the reference's. The lease fields stay out unless set.
type sensorTokenRequest struct {
	SensorRef            string   `json:"sensor_ref"`
	PackRef              string   `json:"pack_ref"`
	TriggerTypes         []string `json:"trigger_types"`
	PermissionSetRefs    []string `json:"permission_set_refs"`
	WorkloadID           *int64   `json:"workload_id,omitempty"`
	AssignmentGeneration *int64   `json:"assignment_generation,omitempty"`
	WorkerInstance       string   `json:"worker_instance,omitempty"`
	TTLSeconds           int64    `json:"ttl_seconds"`

	fence *workloadFence // the lease the answer's workload_fence must equal
}

// newSensorTokenRequest builds the token scope of a sensor: all its trigger
// refs (canonical) and the permission sets it opts into through
// config.cache_permission_set_refs.
func newSensorTokenRequest(spec sensorSpec) (sensorTokenRequest, error) {
	triggers := canonicalSensorRefs(spec.TriggerRefs)
	if len(triggers) == 0 {
		return sensorTokenRequest{}, fmt.Errorf("sensor %q: no trigger refs to scope a sensor token to", spec.Ref)
	}
	perms, err := sensorPermissionSetRefs(spec)
	if err != nil {
		return sensorTokenRequest{}, err
	}
	req := sensorTokenRequest{SensorRef: spec.Ref, PackRef: spec.PackRef, TriggerTypes: triggers,
		PermissionSetRefs: perms, TTLSeconds: sensorTokenTTLSeconds}
	if f := spec.Fence; f != nil {
		// Under a lease the newest API needs the fence (400 without it, 403
		// when it names no live assignment); worker_instance is the worker JWT's.
		req.WorkloadID, req.AssignmentGeneration, req.WorkerInstance = &f.WorkloadID, &f.Generation, f.WorkerInstance
		req.fence = f
	}
	return req, nil
}

// sensorPermissionSetRefs reads config.cache_permission_set_refs: absent
// (or a config that is not an object) gives []; otherwise it must be an
// array of non-empty strings, returned trimmed, sorted and unique.
func sensorPermissionSetRefs(spec sensorSpec) ([]string, error) {
	var cfg map[string]json.RawMessage
	if len(spec.Config) == 0 || json.Unmarshal(spec.Config, &cfg) != nil {
		return []string{}, nil
	}
	raw, ok := cfg["cache_permission_set_refs"]
	if !ok {
		return []string{}, nil
	}
	var items []any
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return nil, fmt.Errorf("sensor %q: config.cache_permission_set_refs must be an array of strings", spec.Ref)
	}
	refs := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := it.(string)
		if !ok || strings.TrimSpace(s) == "" {
			return nil, fmt.Errorf("sensor %q: config.cache_permission_set_refs entries must be non-empty strings", spec.Ref)
		}
		refs = append(refs, s)
	}
	return canonicalSensorRefs(refs), nil
}

// sensorToken is an issued sensor token. It never prints its secret part.
type sensorToken struct {
	Token      string
	IssuedAt   time.Time // local clock when the answer arrived
	ExpiresAt  time.Time
	IdentityID int64
}

func (t sensorToken) String() string {
	return "sensor token (expires " + t.ExpiresAt.UTC().Format(time.RFC3339) + ")"
}

// LogValue keeps the token out of slog output even when logged whole.
func (t sensorToken) LogValue() slog.Value {
	return slog.GroupValue(slog.Time("expires_at", t.ExpiresAt), slog.Int64("identity_id", t.IdentityID))
}

// sensorTokenHTTPError is a non-2xx answer of the token endpoint.
type sensorTokenHTTPError struct {
	Sensor string
	Status int
}

func (e *sensorTokenHTTPError) Error() string {
	return fmt.Sprintf("sensor %q: sensor token request: API answered HTTP %d", e.Sensor, e.Status)
}

// sensorTokenClient asks the Attune API for sensor tokens with the agent's
// worker JWT.
type sensorTokenClient struct {
	apiURL string
	signer *workerJWTSigner
	http   *http.Client
	now    func() time.Time
}

// newSensorTokenClient makes a client with bounded connect, header and
// overall timeouts, so an unresponsive API fails a start instead of hanging it.
func newSensorTokenClient(apiURL string, signer *workerJWTSigner) *sensorTokenClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = 20 * time.Second
	return &sensorTokenClient{
		apiURL: strings.TrimRight(apiURL, "/"),
		signer: signer,
		http:   &http.Client{Transport: tr, Timeout: 30 * time.Second},
		now:    time.Now,
	}
}

// issue requests a token for req, re-signing the worker JWT and retrying
// once when the API answers 401, and checks that the answer is for the
// requested scope. Errors name the sensor and the HTTP status only.
func (c *sensorTokenClient) issue(ctx context.Context, req sensorTokenRequest) (sensorToken, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return sensorToken{}, fmt.Errorf("sensor %q: encode sensor token request: %w", req.SensorRef, err)
	}
	jwt, err := c.signer.current()
	if err != nil {
		return sensorToken{}, fmt.Errorf("sensor %q: sign worker JWT: %w", req.SensorRef, err)
	}
	status, answer, err := c.post(ctx, req.SensorRef, jwt, body)
	if err == nil && status == http.StatusUnauthorized {
		if jwt, err = c.signer.refresh(); err != nil {
			return sensorToken{}, fmt.Errorf("sensor %q: re-sign worker JWT: %w", req.SensorRef, err)
		}
		status, answer, err = c.post(ctx, req.SensorRef, jwt, body)
	}
	if err != nil {
		return sensorToken{}, err
	}
	if status < 200 || status > 299 {
		return sensorToken{}, &sensorTokenHTTPError{Sensor: req.SensorRef, Status: status}
	}
	return parseSensorTokenAnswer(req, answer, c.now())
}

func (c *sensorTokenClient) post(ctx context.Context, sensor, jwt string, body []byte) (int, []byte, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.apiURL+"/auth/internal/sensor-token", bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("sensor %q: sensor token request: %w", sensor, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("Authorization", "Bearer "+jwt)
	resp, err := c.http.Do(hr)
	if err != nil {
		return 0, nil, fmt.Errorf("sensor %q: sensor token request: %w", sensor, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, sensorTokenMaxBody))
	if err != nil {
		return 0, nil, fmt.Errorf("sensor %q: read sensor token answer (HTTP %d): %w", sensor, resp.StatusCode, err)
	}
	return resp.StatusCode, answer, nil
}

// parseSensorTokenAnswer validates {"data": {...}} against the request the
// way the reference does: same sensor_ref, same canonical trigger_types and
// permission_set_refs, pack_ref equal when present (and required when
// permission sets were asked for), an RFC 3339 expires_at in the future.
func parseSensorTokenAnswer(req sensorTokenRequest, answer []byte, now time.Time) (sensorToken, error) {
	var env struct {
		Data *struct {
			IdentityID        int64    `json:"identity_id"`
			SensorRef         string   `json:"sensor_ref"`
			PackRef           *string  `json:"pack_ref"`
			Token             string   `json:"token"`
			ExpiresAt         string   `json:"expires_at"`
			TriggerTypes      []string `json:"trigger_types"`
			PermissionSetRefs []string `json:"permission_set_refs"`
			WorkloadFence     *struct {
				WorkloadID     int64  `json:"workload_id"`
				WorkerID       int64  `json:"worker_id"`
				WorkerInstance string `json:"worker_instance"`
				Generation     int64  `json:"generation"`
			} `json:"workload_fence"`
		} `json:"data"`
	}
	bad := func(why string) (sensorToken, error) {
		return sensorToken{}, fmt.Errorf("sensor %q: sensor token answer rejected: %s", req.SensorRef, why)
	}
	if err := json.Unmarshal(answer, &env); err != nil || env.Data == nil {
		return bad("not a {\"data\": {...}} JSON object")
	}
	d := env.Data
	switch {
	case d.SensorRef != req.SensorRef:
		return bad(fmt.Sprintf("it is for sensor %q", d.SensorRef))
	case !slices.Equal(canonicalSensorRefs(d.TriggerTypes), canonicalSensorRefs(req.TriggerTypes)):
		return bad("its trigger_types differ from the sensor's triggers")
	case !slices.Equal(canonicalSensorRefs(d.PermissionSetRefs), canonicalSensorRefs(req.PermissionSetRefs)):
		return bad("its permission_set_refs differ from the requested ones")
	case d.PackRef != nil && *d.PackRef != req.PackRef:
		return bad(fmt.Sprintf("it is for pack %q", *d.PackRef))
	case d.PackRef == nil && len(canonicalSensorRefs(req.PermissionSetRefs)) > 0:
		return bad("it omits pack_ref although permission sets were requested")
	case d.Token == "":
		return bad("it carries no token")
	}
	if f := req.fence; f != nil {
		got := d.WorkloadFence
		if got == nil {
			return bad("it carries no workload_fence although the request was fenced")
		}
		if (workloadFence{got.WorkloadID, got.WorkerID, strings.ToLower(got.WorkerInstance), got.Generation}) != *f {
			return bad(fmt.Sprintf("its workload_fence (workload %d, worker %d, generation %d) is not the lease held (workload %d, worker %d, generation %d)",
				got.WorkloadID, got.WorkerID, got.Generation, f.WorkloadID, f.WorkerID, f.Generation))
		}
	}
	exp, err := time.Parse(time.RFC3339, d.ExpiresAt)
	if err != nil {
		return bad(fmt.Sprintf("expires_at %q is not RFC 3339", d.ExpiresAt))
	}
	if !exp.After(now) {
		return bad("the token is already expired")
	}
	return sensorToken{Token: d.Token, IssuedAt: now, ExpiresAt: exp, IdentityID: d.IdentityID}, nil
}

// tokenRotationDelay is when to restart a sensor to give it a fresh token:
// at 80 % of the token's lifetime, as the reference does (never negative).
func tokenRotationDelay(issuedAt, expiresAt time.Time) time.Duration {
	life := expiresAt.Sub(issuedAt)
	if life <= 0 {
		return 0
	}
	return life / 100 * 80
}
