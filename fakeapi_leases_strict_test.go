package main

// fakeapi_leases_strict_test.go proves that the API stand-in is as strict
// as the newest API about fences, so no lease test can pass against an API
// that accepts unfenced requests, and that the agent's token client checks
// the workload_fence of the answer.

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestFakeAPIIsStrictAboutFences(t *testing.T) {
	requireServices(t)
	f := newLeaseFixture(t)
	sp := f.sensor("one")
	w := f.worker("sensor-a", 10)
	got, err := w.acquire(t.Context(), sp)
	if err != nil {
		t.Fatal(err)
	}
	api := newFakeAttuneAPI(t)
	api.useDatabase(t, f.db.pool.Config().ConnString())
	signer, err := newWorkerJWTSigner(fakeAPISecret)
	if err != nil {
		t.Fatal(err)
	}
	signer.instance = got.fence.WorkerInstance
	post := func(body map[string]any, jwt string) (int, map[string]any) {
		t.Helper()
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, api.URL()+"/auth/internal/sensor-token", bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+jwt)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var answer map[string]any
		json.NewDecoder(resp.Body).Decode(&answer)
		return resp.StatusCode, answer
	}
	body := func(mut func(map[string]any)) map[string]any {
		b := map[string]any{"sensor_ref": "lp.one", "pack_ref": "lp", "trigger_types": []string{"lp.one_trigger"},
			"permission_set_refs": []string{}, "ttl_seconds": 3600, "workload_id": got.fence.WorkloadID,
			"assignment_generation": got.fence.Generation, "worker_instance": got.fence.WorkerInstance}
		if mut != nil {
			mut(b)
		}
		return b
	}
	unregistered, _ := signer.current() // worker_id is still sensor-<uuid>
	if code, _ := post(body(nil), unregistered); code != http.StatusUnauthorized {
		t.Errorf("worker JWT without a numeric worker_id: HTTP %d, want 401", code)
	}
	signer.setWorkerID(got.fence.WorkerID)
	jwt, _ := signer.current()
	cases := []struct {
		name string
		mut  func(map[string]any)
		want int
	}{
		{"no fence at all", func(b map[string]any) {
			delete(b, "workload_id")
			delete(b, "assignment_generation")
			delete(b, "worker_instance")
		}, http.StatusBadRequest},
		{"no workload_id", func(b map[string]any) { delete(b, "workload_id") }, http.StatusBadRequest},
		{"no assignment_generation", func(b map[string]any) { delete(b, "assignment_generation") }, http.StatusBadRequest},
		{"no worker_instance", func(b map[string]any) { delete(b, "worker_instance") }, http.StatusBadRequest},
		{"another instance than the JWT's", func(b map[string]any) { b["worker_instance"] = newUUIDv4() }, http.StatusForbidden},
		{"stale generation", func(b map[string]any) { b["assignment_generation"] = got.fence.Generation - 1 }, http.StatusForbidden},
		{"another workload", func(b map[string]any) { b["workload_id"] = got.fence.WorkloadID + 1000 }, http.StatusForbidden},
		{"another sensor", func(b map[string]any) { b["sensor_ref"] = "lp.other" }, http.StatusForbidden},
	}
	for _, tc := range cases {
		if code, answer := post(body(tc.mut), jwt); code != tc.want {
			t.Errorf("%s: HTTP %d %v, want %d", tc.name, code, answer, tc.want)
		}
	}

	// The live fence: a token whose answer carries it, accepted by the client.
	client := newSensorTokenClient(api.URL(), signer)
	spec := sensorSpec{Ref: "lp.one", PackRef: "lp", TriggerRefs: []string{"lp.one_trigger"}, Fence: &got.fence}
	req, err := newSensorTokenRequest(spec)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := client.issue(t.Context(), req)
	if err != nil {
		t.Fatalf("fenced token request: %v", err)
	}
	event := func() int {
		raw := `{"trigger_ref": "lp.one_trigger", "payload": {}}`
		r, _ := http.NewRequest(http.MethodPost, api.URL()+"/api/v1/events", strings.NewReader(raw))
		r.Header.Set("Authorization", "Bearer "+tok.Token)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := event(); code != http.StatusCreated {
		t.Fatalf("event under a live fence: HTTP %d, want 201", code)
	}
	if err := w.release(t.Context(), got.fence); err != nil {
		t.Fatal(err)
	}
	if code := event(); code != http.StatusForbidden {
		t.Errorf("event after the lease was released: HTTP %d, want 403", code)
	}
	if r := api.refusedEvents(); len(r) != 1 || r[0].SensorRef != "lp.one" {
		t.Errorf("refused events %+v, want the one after release", r)
	}
	if _, err := client.issue(t.Context(), req); err == nil {
		t.Error("token issued for a released lease")
	}

	// The client refuses an answer whose fence is not the lease it holds.
	wrong := `{"data": {"identity_id": 1, "sensor_ref": "lp.one", "pack_ref": "lp", "token": "x",
		"expires_at": "2999-01-01T00:00:00Z", "trigger_types": ["lp.one_trigger"], "permission_set_refs": [],
		"workload_fence": {"workload_id": 1, "worker_id": 2, "worker_instance": "` + got.fence.WorkerInstance + `", "generation": 99}}}`
	api.scriptToken(fakeTokenAnswer{Status: 200, Body: wrong}, fakeTokenAnswer{Status: 200, Body: strings.Replace(wrong, `, "workload_fence"`, `, "x"`, 1)})
	for _, why := range []string{"foreign fence", "no fence"} {
		_, err := client.issue(t.Context(), req)
		var httpErr *sensorTokenHTTPError
		if err == nil || errors.As(err, &httpErr) || !strings.Contains(err.Error(), "workload_fence") {
			t.Errorf("answer with %s: %v, want a workload_fence rejection", why, err)
		}
	}
}
