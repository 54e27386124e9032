package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBenchLogsCountsFloodAndStamps: segments are sequence-checked per
// version, flood bytes counted, and each stamp line yields one latency.
func TestBenchLogsCountsFloodAndStamps(t *testing.T) {
	mux := http.NewServeMux()
	l := newBenchLogs(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	put := func(v, seq int, body string) int {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/api/v1/internal/logs/%d/segments/%d", srv.URL, v, seq), strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	stamp := time.Now().Add(-200 * time.Millisecond).UnixNano()
	if st := put(1, 0, "flood flood\n"); st != 201 {
		t.Fatalf("first segment: %d", st)
	}
	if st := put(1, 2, "flood\n"); st != 409 {
		t.Errorf("gap: %d, want 409", st)
	}
	if st := put(2, 0, fmt.Sprintf("stamp %d\nstamp %d\n", stamp, stamp)); st != 201 {
		t.Fatalf("stamp segment: %d", st)
	}
	flood, _, _, lat, _, refused := l.snapshot()
	if flood != 12 || refused != 1 {
		t.Errorf("flood %d bytes, refused %d; want 12 and 1", flood, refused)
	}
	if len(lat) != 2 || lat[0] < 190 || lat[0] > 5000 {
		t.Errorf("latencies %v, want two of about 200 ms", lat)
	}
}
