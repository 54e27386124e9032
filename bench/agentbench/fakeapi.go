package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// benchAPI stands in for the two Attune API endpoints the sensor side calls:
// the agent's POST /auth/internal/sensor-token and the sensors' POST
// /api/v1/events. It answers at once and checks little (the worker JWT's
// signature and the fence's liveness are the agent tests' business, not the
// benchmarks'; see fakeapi_leases_test.go): the point is that the agent's
// token round trip is real HTTP on loopback, as in production, with no more
// delay than the agent itself causes. Like the newest API it refuses a token
// request without a workload fence (400) and echoes the fence, with the
// worker JWT's worker_id, as workload_fence (the agent refuses a token
// without it).
type benchAPI struct {
	srv          *http.Server
	url          string
	tokenCalls   atomic.Int64
	unfenced     atomic.Int64 // token requests refused for lack of a fence
	events       atomic.Int64
	logs         *benchLogs // sensor log streams (logsapi.go)
	serveStopped chan struct{}
}

// startBenchAPI listens on a free loopback port and serves until close.
func startBenchAPI(addr string) (*benchAPI, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	a := &benchAPI{url: "http://" + ln.Addr().String(), serveStopped: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/internal/sensor-token", a.handleToken)
	mux.HandleFunc("POST /api/v1/events", a.handleEvent)
	a.logs = newBenchLogs(mux)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(a.serveStopped)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			// Serve fails only if the listener breaks; the agent then fails
			// its token requests and the benchmark reports the timeout.
			return
		}
	}()
	return a, nil
}

// close stops the server.
func (a *benchAPI) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.srv.Shutdown(ctx)
	<-a.serveStopped
}

// handleToken answers {"data": {...}} for the requested scope: trigger types
// sorted, permission sets echoed, a random token valid for a day.
func (a *benchAPI) handleToken(w http.ResponseWriter, r *http.Request) {
	a.tokenCalls.Add(1)
	var req struct {
		SensorRef         string          `json:"sensor_ref"`
		PackRef           string          `json:"pack_ref"`
		TriggerTypes      []string        `json:"trigger_types"`
		PermissionSetRefs json.RawMessage `json:"permission_set_refs"`
		WorkloadID        *int64          `json:"workload_id"`
		Generation        *int64          `json:"assignment_generation"`
		WorkerInstance    string          `json:"worker_instance"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.SensorRef == "" {
		writeBenchJSON(w, http.StatusBadRequest, map[string]any{"error": "bad sensor token request"})
		return
	}
	if req.WorkloadID == nil || req.Generation == nil || req.WorkerInstance == "" {
		a.unfenced.Add(1)
		writeBenchJSON(w, http.StatusBadRequest, map[string]any{"error": "workload_id, assignment_generation and worker_instance are required for worker token sensor provisioning"})
		return
	}
	workerID, err := benchJWTWorkerID(r.Header.Get("Authorization"))
	if err != nil {
		writeBenchJSON(w, http.StatusUnauthorized, map[string]any{"error": err.Error()})
		return
	}
	perms := req.PermissionSetRefs
	if len(perms) == 0 || string(perms) == "null" {
		perms = json.RawMessage("[]")
	}
	triggers := slices.Clone(req.TriggerTypes)
	slices.Sort(triggers)
	writeBenchJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
		"identity_id": 1, "sensor_ref": req.SensorRef, "pack_ref": req.PackRef,
		"token": "t-" + benchRandomHex(16), "expires_at": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339),
		"trigger_types": triggers, "permission_set_refs": perms,
		"workload_fence": map[string]any{"workload_id": *req.WorkloadID, "worker_id": workerID,
			"worker_instance": req.WorkerInstance, "generation": *req.Generation},
	}})
}

// handleEvent accepts any event with 201 and a new id.
func (a *benchAPI) handleEvent(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	writeBenchJSON(w, http.StatusCreated, map[string]any{"data": map[string]any{"id": a.events.Add(1)}})
}

// benchJWTWorkerID reads metadata.worker_id from a worker JWT's claims (the
// signature is not checked: the agent tests do that).
func benchJWTWorkerID(authz string) (int64, error) {
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	parts := strings.Split(tok, ".")
	if !ok || len(parts) != 3 {
		return 0, errors.New("worker token missing or not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0, fmt.Errorf("worker token claims: %w", err)
	}
	var claims struct {
		Metadata struct {
			WorkerID string `json:"worker_id"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return 0, fmt.Errorf("worker token claims: %w", err)
	}
	id, err := strconv.ParseInt(claims.Metadata.WorkerID, 10, 64)
	if err != nil || id <= 0 {
		return 0, errors.New("Worker token has invalid worker_id metadata")
	}
	return id, nil
}

func writeBenchJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// benchRandomHex returns n random bytes as hex.
func benchRandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
