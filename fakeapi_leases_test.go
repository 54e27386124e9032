package main

// fakeapi_leases_test.go makes the fake Attune API as strict about workload
// leases as the newest API (CONTRACT §6, §12): a worker-JWT token request
// without workload_id, assignment_generation and worker_instance is a 400;
// bad worker_id / worker_instance metadata a 401; an instance other than the
// JWT's, or a fence that names no live assignment of that sensor, a 403; the
// fence goes into the token, and an event whose token fence is no longer a
// live assignment is refused with 403.

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// fakeRefusal is one event the fake refused because its fence was not live.
type fakeRefusal struct {
	SensorRef, TriggerRef, Why string
}

var fakeUUIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// useDatabase makes the fake check fences against the test database, as the
// real API does. Every fake on the current generation must have it.
func (f *fakeAttuneAPI) useDatabase(t testing.TB, dbURL string) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = "attune, public"
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f.mu.Lock()
	f.db = pool
	logs := f.logs
	f.mu.Unlock()
	if logs != nil {
		logs.attach(pool) // the newest API serves sensor logs too
	}
}

// preLeaseAPI makes the fake behave like an API from before leases: token
// requests without a fence are accepted. Legacy-generation tests only.
func (f *fakeAttuneAPI) preLeaseAPI() {
	f.mu.Lock()
	f.preLease = true
	f.mu.Unlock()
}

// refusedEvents returns the events refused for a stale fence.
func (f *fakeAttuneAPI) refusedEvents() []fakeRefusal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.refused)
}

// checkTokenFence applies the newest API's fence rules to a token request
// whose worker JWT is valid. status 0: accepted (fence nil only pre-lease).
// Called with f.mu held.
func (f *fakeAttuneAPI) checkTokenFence(ctx context.Context, rec fakeTokenRequest, sensorRef string) (*workloadFence, int, string) {
	_, hasWorkload := rec.Body["workload_id"]
	_, hasGen := rec.Body["assignment_generation"]
	_, hasInstance := rec.Body["worker_instance"]
	if f.preLease && !hasWorkload && !hasGen && !hasInstance {
		return nil, 0, ""
	}
	switch {
	case !hasWorkload:
		return nil, http.StatusBadRequest, "workload_id is required for worker token sensor provisioning"
	case !hasGen:
		return nil, http.StatusBadRequest, "assignment_generation is required for worker token sensor provisioning"
	case !hasInstance:
		return nil, http.StatusBadRequest, "worker_instance is required for worker token sensor provisioning"
	}
	workload, ok1 := rec.Body["workload_id"].(float64)
	gen, ok2 := rec.Body["assignment_generation"].(float64)
	instance, ok3 := rec.Body["worker_instance"].(string)
	if !ok1 || !ok2 || !ok3 || !fakeUUIDPattern.MatchString(strings.ToLower(instance)) {
		return nil, http.StatusBadRequest, "workload_id, assignment_generation and worker_instance have the wrong type"
	}
	meta, _ := rec.Claims["metadata"].(map[string]any)
	idText, _ := meta["worker_id"].(string)
	workerID, err := strconv.ParseInt(strings.TrimSpace(idText), 10, 64)
	if err != nil || workerID <= 0 {
		return nil, http.StatusUnauthorized, "Worker token has invalid worker_id metadata"
	}
	jwtInstance, _ := meta["worker_instance"].(string)
	if !fakeUUIDPattern.MatchString(strings.ToLower(jwtInstance)) {
		return nil, http.StatusUnauthorized, "Worker token has invalid worker_instance metadata"
	}
	if !strings.EqualFold(jwtInstance, instance) {
		return nil, http.StatusForbidden, "Worker token instance does not match the requested sensor workload assignment"
	}
	fence := &workloadFence{WorkloadID: int64(workload), WorkerID: workerID, WorkerInstance: strings.ToLower(instance), Generation: int64(gen)}
	if f.db == nil {
		return nil, http.StatusInternalServerError, "fake API has no database to check the fence against (call useDatabase)"
	}
	live, err := fakeFenceLive(ctx, f.db, fence, sensorRef)
	if err != nil {
		return nil, http.StatusInternalServerError, err.Error()
	}
	if !live {
		return nil, http.StatusForbidden, "Sensor workload assignment is stale or expired"
	}
	return fence, 0, ""
}

// checkEventFence: "" when the token's fence is still a live assignment.
func (f *fakeAttuneAPI) checkEventFence(ctx context.Context, tok fakeIssuedToken) string {
	if tok.Fence == nil {
		if f.preLease {
			return ""
		}
		return "sensor token carries no workload fence"
	}
	live, err := fakeFenceLive(ctx, f.db, tok.Fence, tok.SensorRef)
	if err != nil {
		return err.Error()
	}
	if !live {
		return "Sensor workload assignment is stale or expired"
	}
	return ""
}

// fakeFenceLive is the API's fence check: the assignment row of that
// workload, owned by that worker and instance at that generation, with an
// unexpired lease, for that sensor.
func fakeFenceLive(ctx context.Context, db *pgxpool.Pool, f *workloadFence, sensorRef string) (bool, error) {
	var live bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sensor_workload_assignment a
JOIN sensor_workload w ON w.id = a.workload JOIN sensor s ON s.id = w.sensor
WHERE a.workload = $1 AND a.worker = $2 AND a.worker_instance = $3::uuid AND a.generation = $4
  AND a.lease_expires_at > clock_timestamp() AND s.ref = $5)`,
		f.WorkloadID, f.WorkerID, f.WorkerInstance, f.Generation, sensorRef).Scan(&live)
	if err != nil {
		return false, fmt.Errorf("fake API fence check: %w", err)
	}
	return live, nil
}
