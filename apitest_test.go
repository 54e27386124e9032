package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// fakeAPISecret is the security.jwt_secret the fake API shares with the
// agent under test.
const fakeAPISecret = "fake-attune-api-test-secret"

// fakeAttuneAPI stands in for the two Attune API endpoints the sensor side
// touches: the agent's POST /auth/internal/sensor-token (worker JWT checked
// with an independent HS256 verifier) and the sensors' POST /api/v1/events
// (Bearer must be a token this fake issued, for a trigger in its scope).
// Token answers can be scripted (401 once, 500, malformed bodies).
type fakeAttuneAPI struct {
	srv    *httptest.Server
	secret string

	mu          sync.Mutex
	ttl         time.Duration
	script      []fakeTokenAnswer
	issued      map[string]fakeIssuedToken
	tokenReqs   []fakeTokenRequest
	events      []fakeEvent
	nextEventID int64
	changed     chan struct{} // closed and replaced whenever an event arrives

	// Lease strictness (fakeapi_leases_test.go): the newest API refuses
	// unfenced token requests; preLease emulates an API from before leases
	// (legacy generation tests only), db is where fences are checked.
	preLease bool
	db       *pgxpool.Pool
	refused  []fakeRefusal
	logs     *fakeLogsAPI // sensor log endpoints (fakeapi_logs_test.go)
}

// fakeTokenAnswer scripts one answer of the token endpoint: a status and a
// raw body; an empty body means the fake's normal JSON error.
type fakeTokenAnswer struct {
	Status int
	Body   string
}

type fakeIssuedToken struct {
	SensorRef, PackRef string
	TriggerTypes       []string
	ExpiresAt          time.Time
	Fence              *workloadFence // nil only from a pre-lease fake
}

// fakeTokenRequest is one request to the token endpoint as the fake saw it.
type fakeTokenRequest struct {
	Authorization string
	JWTValid      bool
	JWTHeader     map[string]any
	Claims        map[string]any
	Body          map[string]any
	RawBody       string
	Status        int // what the fake answered
}

// fakeEvent is one accepted POST /api/v1/events.
type fakeEvent struct {
	ID                int64
	Token, SensorRef  string
	TriggerRef        string
	TriggerInstanceID string
	Payload           map[string]any
}

func newFakeAttuneAPI(t testing.TB) *fakeAttuneAPI {
	t.Helper()
	f := &fakeAttuneAPI{secret: fakeAPISecret, ttl: time.Hour, issued: map[string]fakeIssuedToken{}, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/internal/sensor-token", f.handleToken)
	mux.HandleFunc("POST /api/v1/events", f.handleEvent)
	registerFakePackRoutes(f, mux)
	f.logs = newFakeLogsAPI(mux, f.secret)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the API base URL (ATTUNE_API_URL).
func (f *fakeAttuneAPI) URL() string { return f.srv.URL }

// scriptToken queues answers used, in order, before normal handling resumes.
func (f *fakeAttuneAPI) scriptToken(answers ...fakeTokenAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script = append(f.script, answers...)
}

// setTokenTTL changes the lifetime of tokens issued from now on.
func (f *fakeAttuneAPI) setTokenTTL(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ttl = d
}

func (f *fakeAttuneAPI) tokenRequests() []fakeTokenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tokenReqs)
}

// issuedTo returns the sensor a token was issued to ("" when unknown).
func (f *fakeAttuneAPI) issuedTo(token string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued[token].SensorRef
}

func (f *fakeAttuneAPI) eventsSnapshot() []fakeEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// waitEvents waits until at least n events arrived and returns them all;
// it fails the test after timeout.
func (f *fakeAttuneAPI) waitEvents(t testing.TB, n int, timeout time.Duration) []fakeEvent {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		got, changed := slices.Clone(f.events), f.changed
		f.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("fake API: got %d event(s) within %v, want %d: %+v", len(got), timeout, n, got)
		}
	}
}

func (f *fakeAttuneAPI) handleToken(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := fakeTokenRequest{Authorization: r.Header.Get("Authorization"), RawBody: string(raw)}
	_ = json.Unmarshal(raw, &rec.Body)
	rec.JWTHeader, rec.Claims, rec.JWTValid = verifyFakeWorkerJWT(f.secret, rec.Authorization)

	f.mu.Lock()
	defer f.mu.Unlock()
	answer := func(status int, body any) {
		rec.Status = status
		f.tokenReqs = append(f.tokenReqs, rec)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if s, ok := body.(string); ok {
			io.WriteString(w, s)
			return
		}
		json.NewEncoder(w).Encode(body)
	}
	if len(f.script) > 0 {
		a := f.script[0]
		f.script = f.script[1:]
		if a.Body == "" {
			answer(a.Status, map[string]any{"error": http.StatusText(a.Status)})
		} else {
			answer(a.Status, a.Body)
		}
		return
	}
	if !rec.JWTValid {
		answer(http.StatusUnauthorized, map[string]any{"error": "invalid worker token"})
		return
	}
	sensor, _ := rec.Body["sensor_ref"].(string)
	pack, _ := rec.Body["pack_ref"].(string)
	var triggers []string
	list, _ := rec.Body["trigger_types"].([]any)
	for _, v := range list {
		if s, ok := v.(string); ok {
			triggers = append(triggers, s)
		}
	}
	perms, _ := rec.Body["permission_set_refs"].([]any)
	if sensor == "" || pack == "" || len(triggers) == 0 || len(triggers) != len(list) {
		answer(http.StatusBadRequest, map[string]any{"error": "sensor_ref, pack_ref and trigger_types are required"})
		return
	}
	fence, status, msg := f.checkTokenFence(r.Context(), rec, sensor)
	if status != 0 {
		answer(status, map[string]any{"error": msg})
		return
	}
	slices.Sort(triggers)
	token := "fake-sensor-token-" + fakeRandomHex()
	exp := time.Now().Add(f.ttl).UTC().Truncate(time.Second)
	f.issued[token] = fakeIssuedToken{SensorRef: sensor, PackRef: pack, TriggerTypes: triggers, ExpiresAt: exp, Fence: fence}
	data := map[string]any{
		"identity_id": 7, "sensor_ref": sensor, "pack_ref": pack, "token": token,
		"expires_at": exp.Format(time.RFC3339), "trigger_types": triggers,
		"permission_set_refs": append([]any{}, perms...),
	}
	if fence != nil {
		data["workload_fence"] = map[string]any{"workload_id": fence.WorkloadID, "worker_id": fence.WorkerID,
			"worker_instance": fence.WorkerInstance, "generation": fence.Generation}
	}
	answer(http.StatusOK, map[string]any{"data": data})
}

func (f *fakeAttuneAPI) handleEvent(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	var body struct {
		TriggerRef        string         `json:"trigger_ref"`
		Payload           map[string]any `json:"payload"`
		TriggerInstanceID string         `json:"trigger_instance_id"`
	}
	err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body)

	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	tok, ok := f.issued[token]
	switch {
	case !ok || time.Now().After(tok.ExpiresAt):
		reply(http.StatusUnauthorized, map[string]any{"error": "invalid sensor token"})
		return
	case err != nil || body.TriggerRef == "":
		reply(http.StatusBadRequest, map[string]any{"error": "bad event body"})
		return
	case !slices.Contains(tok.TriggerTypes, body.TriggerRef):
		reply(http.StatusForbidden, map[string]any{"error": "trigger not in token scope"})
		return
	}
	if why := f.checkEventFence(r.Context(), tok); why != "" {
		f.refused = append(f.refused, fakeRefusal{SensorRef: tok.SensorRef, TriggerRef: body.TriggerRef, Why: why})
		reply(http.StatusForbidden, map[string]any{"error": why})
		return
	}
	f.nextEventID++
	f.events = append(f.events, fakeEvent{ID: f.nextEventID, Token: token, SensorRef: tok.SensorRef,
		TriggerRef: body.TriggerRef, TriggerInstanceID: body.TriggerInstanceID, Payload: body.Payload})
	close(f.changed)
	f.changed = make(chan struct{})
	reply(http.StatusCreated, map[string]any{"data": map[string]any{"id": f.nextEventID, "trigger_ref": body.TriggerRef}})
}

// verifyFakeWorkerJWT checks "Bearer h.c.s" as the API would: HS256 over
// h.c with the shared secret, alg HS256, token_type worker, not expired.
// It is written independently of token.go so it can catch its mistakes.
func verifyFakeWorkerJWT(secret, authorization string) (header, claims map[string]any, ok bool) {
	jwt, found := strings.CutPrefix(authorization, "Bearer ")
	parts := strings.Split(jwt, ".")
	if !found || len(parts) != 3 {
		return nil, nil, false
	}
	dec := base64.RawURLEncoding
	h, err1 := dec.DecodeString(parts[0])
	c, err2 := dec.DecodeString(parts[1])
	sig, err3 := dec.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(h, &header) != nil || json.Unmarshal(c, &claims) != nil {
		return nil, nil, false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	exp, _ := claims["exp"].(float64)
	ok = hmac.Equal(sig, mac.Sum(nil)) && header["alg"] == "HS256" &&
		claims["token_type"] == "worker" && int64(exp) > time.Now().Unix()
	return header, claims, ok
}

func fakeRandomHex() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// String keeps test failure output readable.
func (e fakeEvent) String() string {
	return fmt.Sprintf("event#%d(%s %s %s)", e.ID, e.SensorRef, e.TriggerRef, e.TriggerInstanceID)
}
