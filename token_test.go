package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWorkerJWTSignatureAndClaims(t *testing.T) {
	s, err := newWorkerJWTSigner(fakeAPISecret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	s.now = func() time.Time { return now }
	check := func(workerID string) {
		t.Helper()
		jwt, err := s.current()
		if err != nil {
			t.Fatal(err)
		}
		header, claims, ok := verifyFakeWorkerJWT(fakeAPISecret, "Bearer "+jwt)
		if !ok {
			t.Errorf("the API-side verifier rejects %s", jwt)
		}
		if _, _, bad := verifyFakeWorkerJWT("another-secret", "Bearer "+jwt); bad {
			t.Errorf("JWT verifies with the wrong secret")
		}
		rawHeader, _ := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
		if string(rawHeader) != `{"typ":"JWT","alg":"HS256"}` || header["alg"] != "HS256" {
			t.Errorf("header = %s", rawHeader)
		}
		rawClaims, _ := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[1])
		want := fmt.Sprintf(`{"sub":"1","login":"worker:%s","iat":%d,"exp":%d,"token_type":"worker","scope":"internal_files","metadata":{"worker_id":"%s","worker_instance":"%s"}}`,
			workerID, now.Unix(), now.Unix()+86400, workerID, s.instanceID())
		if string(rawClaims) != want {
			t.Errorf("claims:\n got %s\nwant %s", rawClaims, want)
		}
		if claims["token_type"] != "worker" {
			t.Errorf("claims = %v", claims)
		}
	}
	if !uuidV4Pattern.MatchString(s.instanceID()) {
		t.Fatalf("worker_instance %q is not a uuid v4", s.instanceID())
	}
	provisional := strings.TrimPrefix(s.workerID, "sensor-")
	if !uuidV4Pattern.MatchString(provisional) || provisional == s.instanceID() {
		t.Fatalf("provisional worker id %q", s.workerID)
	}
	check(s.workerID)
	s.setWorkerID(42)
	check("42") // re-signed at once although the old token was still fresh
}

func TestWorkerJWTVerifiesAgainstFakeAPI(t *testing.T) {
	s, _ := newWorkerJWTSigner(fakeAPISecret)
	jwt, _ := s.current()
	if _, _, ok := verifyFakeWorkerJWT(fakeAPISecret, "Bearer "+jwt); !ok {
		t.Fatalf("fake API rejects the worker JWT")
	}
	i := len(jwt) - 10 // inside the signature, away from base64 padding bits
	flip := map[bool]string{true: "B", false: "A"}[jwt[i] == 'A']
	tampered := jwt[:i] + flip + jwt[i+1:]
	if _, _, ok := verifyFakeWorkerJWT(fakeAPISecret, "Bearer "+tampered); ok {
		t.Fatalf("tampered signature accepted")
	}
	if _, err := newWorkerJWTSigner(""); !errors.Is(err, ErrNoJWTSecret) {
		t.Errorf("empty secret: %v, want ErrNoJWTSecret", err)
	}
}

func TestWorkerJWTReSignsBeforeExpiry(t *testing.T) {
	s, _ := newWorkerJWTSigner(fakeAPISecret)
	start := time.Unix(1_700_000_000, 0)
	now := start
	s.now = func() time.Time { return now }
	first, _ := s.current()
	tests := []struct {
		at      time.Duration
		resigns bool
	}{
		{time.Hour, false},
		{86400*time.Second - 301*time.Second, false},
		{86400*time.Second - 300*time.Second, true},
	}
	for _, tc := range tests {
		now = start.Add(tc.at)
		got, _ := s.current()
		if (got != first) != tc.resigns {
			t.Errorf("at +%v: re-signed = %v, want %v", tc.at, got != first, tc.resigns)
		}
	}
	cached, _ := s.current()
	now = now.Add(time.Second)
	refreshed, _ := s.refresh()
	if again, _ := s.current(); refreshed == cached || again != refreshed {
		t.Errorf("refresh did not replace the cached token")
	}
}

func TestSensorPermissionSetRefs(t *testing.T) {
	tests := []struct {
		config  string
		want    []string
		wantErr bool
	}{
		{config: ``, want: []string{}},
		{config: `null`, want: []string{}},
		{config: `[1]`, want: []string{}},
		{config: `{"other": 1}`, want: []string{}},
		{config: `{"permission_set_refs": ["ignored"]}`, want: []string{}},
		{config: `{"cache_permission_set_refs": []}`, want: []string{}},
		{config: `{"cache_permission_set_refs": [" standard ", "pack.writer", "standard"]}`, want: []string{"pack.writer", "standard"}},
		{config: `{"cache_permission_set_refs": "standard"}`, wantErr: true},
		{config: `{"cache_permission_set_refs": null}`, wantErr: true},
		{config: `{"cache_permission_set_refs": ["ok", 3]}`, wantErr: true},
		{config: `{"cache_permission_set_refs": ["ok", "  "]}`, wantErr: true},
	}
	for _, tc := range tests {
		got, err := sensorPermissionSetRefs(sensorSpec{Ref: "p.s", Config: json.RawMessage(tc.config)})
		if tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), `"p.s"`) {
				t.Errorf("config %s: error = %v, want one naming the sensor", tc.config, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("config %s: got %q, %v; want %q", tc.config, got, err, tc.want)
		}
	}
}

func TestNewSensorTokenRequestBody(t *testing.T) {
	spec := sensorSpec{Ref: "pack.s", PackRef: "pack", TriggerRefs: []string{"pack.b", "pack.a", "pack.b"},
		Config: json.RawMessage(`{"cache_permission_set_refs": ["standard"]}`)}
	req, err := newSensorTokenRequest(spec)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(req)
	want := `{"sensor_ref":"pack.s","pack_ref":"pack","trigger_types":["pack.a","pack.b"],"permission_set_refs":["standard"],"ttl_seconds":86400}`
	if string(body) != want {
		t.Errorf("body:\n got %s\nwant %s", body, want)
	}
	gen := int64(3)
	req.WorkloadID, req.AssignmentGeneration, req.WorkerInstance = &gen, &gen, "u"
	body, _ = json.Marshal(req)
	if !strings.Contains(string(body), `"workload_id":3,"assignment_generation":3,"worker_instance":"u","ttl_seconds":86400}`) {
		t.Errorf("lease body: %s", body)
	}
	if _, err := newSensorTokenRequest(sensorSpec{Ref: "pack.s", PackRef: "pack"}); err == nil {
		t.Errorf("a sensor without triggers got a token request")
	}
}

func newTestTokenClient(t *testing.T, api *fakeAttuneAPI) (*sensorTokenClient, sensorTokenRequest) {
	t.Helper()
	signer, err := newWorkerJWTSigner(fakeAPISecret)
	if err != nil {
		t.Fatal(err)
	}
	signer.setWorkerID(5)
	req, err := newSensorTokenRequest(sensorSpec{Ref: "pack.s", PackRef: "pack", TriggerRefs: []string{"pack.t"}})
	if err != nil {
		t.Fatal(err)
	}
	return newSensorTokenClient(api.URL()+"/", signer), req
}

func TestSensorTokenClientIssue(t *testing.T) {
	api := newFakeAttuneAPI(t)
	api.preLeaseAPI() // these tests exercise the unfenced (pre-lease) token path
	api.setTokenTTL(2 * time.Hour)
	c, req := newTestTokenClient(t, api)
	tok, err := c.issue(t.Context(), req)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	if api.issuedTo(tok.Token) != "pack.s" {
		t.Errorf("token %v was not issued to pack.s", tok)
	}
	if life := tok.ExpiresAt.Sub(tok.IssuedAt); life < 2*time.Hour-5*time.Second || life > 2*time.Hour+time.Second {
		t.Errorf("lifetime %v, want about 2h", life)
	}
	reqs := api.tokenRequests()
	if len(reqs) != 1 || !reqs[0].JWTValid || reqs[0].Claims["login"] != "worker:5" {
		t.Fatalf("token requests = %+v", reqs)
	}
	if want := `{"sensor_ref":"pack.s","pack_ref":"pack","trigger_types":["pack.t"],"permission_set_refs":[],"ttl_seconds":86400}`; reqs[0].RawBody != want {
		t.Errorf("request body %s, want %s", reqs[0].RawBody, want)
	}
}

func TestSensorTokenClientRetriesOnceOn401(t *testing.T) {
	api := newFakeAttuneAPI(t)
	api.preLeaseAPI() // these tests exercise the unfenced (pre-lease) token path
	api.scriptToken(fakeTokenAnswer{Status: http.StatusUnauthorized})
	c, req := newTestTokenClient(t, api)
	if _, err := c.issue(t.Context(), req); err != nil {
		t.Fatalf("issue after one 401: %v", err)
	}
	reqs := api.tokenRequests()
	if len(reqs) != 2 || reqs[0].Status != 401 || reqs[1].Status != 200 || !reqs[1].JWTValid {
		t.Fatalf("requests = %+v, want a 401 then a 200 with a valid JWT", reqs)
	}
}

func TestSensorTokenClientErrors(t *testing.T) {
	tests := []struct {
		name    string
		script  []fakeTokenAnswer
		calls   int
		status  int    // expected in a *sensorTokenHTTPError; 0 = another error
		message string // substring of the error
	}{
		{name: "401 twice", script: []fakeTokenAnswer{{Status: 401}, {Status: 401}}, calls: 2, status: 401, message: "HTTP 401"},
		{name: "500 is not retried", script: []fakeTokenAnswer{{Status: 500}}, calls: 1, status: 500, message: "HTTP 500"},
		{name: "403", script: []fakeTokenAnswer{{Status: 403, Body: `{"error": "worker jwt-secret-looking text"}`}}, calls: 1, status: 403, message: "HTTP 403"},
		{name: "not JSON", script: []fakeTokenAnswer{{Status: 200, Body: `<html>`}}, calls: 1, message: "not a {\"data\""},
		{name: "no data", script: []fakeTokenAnswer{{Status: 200, Body: `{"token": "x"}`}}, calls: 1, message: "not a {\"data\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAttuneAPI(t)
			api.preLeaseAPI() // these tests exercise the unfenced (pre-lease) token path
			api.scriptToken(tc.script...)
			c, req := newTestTokenClient(t, api)
			jwt, _ := c.signer.current()
			_, err := c.issue(t.Context(), req)
			if err == nil || !strings.Contains(err.Error(), tc.message) || !strings.Contains(err.Error(), `"pack.s"`) {
				t.Fatalf("error = %v, want %q naming the sensor", err, tc.message)
			}
			var httpErr *sensorTokenHTTPError
			if tc.status != 0 && (!errors.As(err, &httpErr) || httpErr.Status != tc.status) {
				t.Errorf("error %v is not an HTTP %d error", err, tc.status)
			}
			for _, secret := range []string{fakeAPISecret, jwt, "jwt-secret-looking"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q leaks %q", err, secret)
				}
			}
			if n := len(api.tokenRequests()); n != tc.calls {
				t.Errorf("%d requests, want %d", n, tc.calls)
			}
		})
	}
}

func TestSensorTokenClientHonoursContext(t *testing.T) {
	api := newFakeAttuneAPI(t)
	api.preLeaseAPI() // these tests exercise the unfenced (pre-lease) token path
	c, req := newTestTokenClient(t, api)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.issue(ctx, req); !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
}

func TestParseSensorTokenAnswer(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	req := sensorTokenRequest{SensorRef: "pack.s", PackRef: "pack", TriggerTypes: []string{"pack.a", "pack.b"}, PermissionSetRefs: []string{}}
	perms := req
	perms.PermissionSetRefs = []string{"standard"}
	answer := func(mod string) string {
		base := `"identity_id": 3, "sensor_ref": "pack.s", "pack_ref": "pack", "token": "T", "expires_at": "2030-01-02T00:00:00Z", "trigger_types": ["pack.b", "pack.a"], "permission_set_refs": []`
		return `{"data": {` + base + mod + `}}`
	}
	tests := []struct {
		name    string
		req     sensorTokenRequest
		body    string
		wantErr string
	}{
		{name: "valid, trigger order ignored", req: req, body: answer("")},
		{name: "legacy answer without pack_ref or permission sets", req: req,
			body: `{"data": {"identity_id": 3, "sensor_ref": "pack.s", "token": "T", "expires_at": "2030-01-01T06:00:00+02:00", "trigger_types": ["pack.a", "pack.b"]}}`},
		{name: "other sensor", req: req, body: answer(`, "sensor_ref": "pack.other"`), wantErr: `for sensor "pack.other"`},
		{name: "missing trigger", req: req, body: answer(`, "trigger_types": ["pack.a"]`), wantErr: "trigger_types differ"},
		{name: "extra trigger", req: req, body: answer(`, "trigger_types": ["pack.a", "pack.b", "pack.c"]`), wantErr: "trigger_types differ"},
		{name: "other pack", req: req, body: answer(`, "pack_ref": "other"`), wantErr: `for pack "other"`},
		{name: "permission sets differ", req: perms, body: answer(""), wantErr: "permission_set_refs differ"},
		{name: "permission sets without pack_ref", req: perms,
			body: `{"data": {"sensor_ref": "pack.s", "token": "T", "expires_at": "2030-01-02T00:00:00Z", "trigger_types": ["pack.a", "pack.b"], "permission_set_refs": ["standard"]}}`, wantErr: "omits pack_ref"},
		{name: "no token", req: req, body: answer(`, "token": ""`), wantErr: "no token"},
		{name: "bad expires_at", req: req, body: answer(`, "expires_at": "tomorrow"`), wantErr: "not RFC 3339"},
		{name: "already expired", req: req, body: answer(`, "expires_at": "2029-12-31T23:59:59Z"`), wantErr: "already expired"},
		{name: "wrong type", req: req, body: answer(`, "trigger_types": "pack.a"`), wantErr: "not a {\"data\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSensorTokenAnswer(tc.req, []byte(tc.body), now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), `"T"`) {
					t.Fatalf("error = %v, want %q (and no token)", err, tc.wantErr)
				}
				return
			}
			if err != nil || got.Token != "T" || !got.IssuedAt.Equal(now) || got.ExpiresAt.Sub(now) <= 0 {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func TestSensorTokenNeverPrinted(t *testing.T) {
	tok := sensorToken{Token: "very-secret-token", ExpiresAt: time.Unix(1_900_000_000, 0)}
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("issued", "token", tok)
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %s", tok, tok), sb.String()} {
		if strings.Contains(s, "very-secret-token") {
			t.Errorf("token printed: %s", s)
		}
	}
}

func TestTokenRotationDelay(t *testing.T) {
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		life, want time.Duration
	}{
		{24 * time.Hour, 19*time.Hour + 12*time.Minute},
		{time.Hour, 48 * time.Minute},
		{100 * time.Second, 80 * time.Second},
		{0, 0},
		{-time.Hour, 0},
	}
	for _, tc := range tests {
		if got := tokenRotationDelay(at, at.Add(tc.life)); got != tc.want {
			t.Errorf("tokenRotationDelay(lifetime %v) = %v, want %v", tc.life, got, tc.want)
		}
	}
}
