package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// fakeapi_logs_read_test.go: the read side of the sensor log API double,
// GET /api/v1/sensors/{ref}/logs/{stream}, and the helper tests read with.

func (f *fakeLogsAPI) handleRead(w http.ResponseWriter, r *http.Request) {
	ref, stream := r.PathValue("ref"), r.PathValue("stream")
	if stream != "stdout" && stream != "stderr" {
		f.answer(w, http.StatusBadRequest, "stream must be 'stdout' or 'stderr'")
		return
	}
	pool, ok := f.begin(w, r, "read", 0, 0)
	if !ok {
		return
	}
	body, status, msg := f.read(r.Context(), pool, ref, stream)
	if status != http.StatusOK {
		f.answer(w, status, msg)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(body)
}

// read concatenates the committed segments of every version of the
// sensor's stream artifact, oldest version first.
func (f *fakeLogsAPI) read(ctx context.Context, pool *pgxpool.Pool, ref, stream string) ([]byte, int, string) {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sensor WHERE ref = $1)`, ref).Scan(&exists); err != nil {
		return nil, http.StatusInternalServerError, err.Error()
	}
	if !exists {
		return nil, http.StatusNotFound, fmt.Sprintf("Sensor '%s' not found", ref)
	}
	rows, err := pool.Query(ctx, `
SELECT g.object_key FROM artifact a JOIN artifact_version v ON v.artifact = a.id
  JOIN log_stream s ON s.artifact_version = v.id JOIN log_segment g ON g.stream = s.id
 WHERE a.id = (SELECT id FROM artifact WHERE ref = $1 ORDER BY id LIMIT 1)
 ORDER BY v.version, g.sequence`, sensorLogArtifactRef(ref, stream))
	if err != nil {
		return nil, http.StatusInternalServerError, err.Error()
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, http.StatusInternalServerError, err.Error()
		}
		keys = append(keys, k)
	}
	var found bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM artifact WHERE ref = $1)`, sensorLogArtifactRef(ref, stream)).Scan(&found); err != nil || !found {
		return nil, http.StatusNotFound, "Sensor log not found"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []byte
	for _, k := range keys {
		out = append(out, f.objects[k]...)
	}
	return out, http.StatusOK, ""
}

// readSensorLog GETs a sensor's stream through the double's HTTP endpoint
// with a worker JWT, as the UI would read it.
func readSensorLog(t testing.TB, api *fakeAttuneAPI, ref, stream string) (int, []byte) {
	t.Helper()
	signer, err := newWorkerJWTSigner(fakeAPISecret)
	if err != nil {
		t.Fatal(err)
	}
	jwt, _ := signer.current()
	req, _ := http.NewRequest(http.MethodGet, api.URL()+"/api/v1/sensors/"+ref+"/logs/"+stream, nil)
	req.Header.Set("Authorization", "Bearer "+jwt)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET sensor log: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
