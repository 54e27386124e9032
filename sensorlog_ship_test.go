package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Unit tests of the shipper (sensorlog_ship.go, sensorlog_commit.go) and
// the uploader against an in-test HTTP server and in-memory rows: segment
// sizing, rotation and seals, the bound under a hung API, latching, and the
// 401 re-sign.

// memRows allocates versions in memory.
type memRows struct {
	mu   sync.Mutex
	next int64
}

func (m *memRows) ensureArtifacts(context.Context, sensorSpec) ([2]logArtifact, error) {
	return [2]logArtifact{}, nil
}

func (m *memRows) createVersion(_ context.Context, a logArtifact, _, _ int64) (logVersion, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next++
	return logVersion{ID: m.next, Version: int(m.next), FilePath: sensorLogFilePath(a.Ref, int(m.next))}, nil
}

// segServer records segments and seals; answer (when set) may override.
type segServer struct {
	mu      sync.Mutex
	segs    map[int64][][]byte
	seals   map[int64]string // truncated value
	auths   []string
	answer  func(version, seq int64, auth string) int
	srv     *httptest.Server
	changed chan struct{}
}

func newSegServer(t *testing.T) *segServer {
	s := &segServer{segs: map[int64][][]byte{}, seals: map[int64]string{}, changed: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /api/v1/internal/logs/{v}/segments/{seq}", func(w http.ResponseWriter, r *http.Request) {
		v, _ := strconv.ParseInt(r.PathValue("v"), 10, 64)
		seq, _ := strconv.ParseInt(r.PathValue("seq"), 10, 64)
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.auths = append(s.auths, r.Header.Get("Authorization"))
		h := s.answer
		s.mu.Unlock()
		if h != nil {
			if st := h(v, seq, r.Header.Get("Authorization")); st != 0 {
				w.WriteHeader(st)
				return
			}
		}
		s.mu.Lock()
		if int64(len(s.segs[v])) != seq {
			s.mu.Unlock()
			w.WriteHeader(http.StatusConflict)
			return
		}
		s.segs[v] = append(s.segs[v], body)
		s.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("POST /api/v1/internal/logs/{v}/seal", func(w http.ResponseWriter, r *http.Request) {
		v, _ := strconv.ParseInt(r.PathValue("v"), 10, 64)
		s.mu.Lock()
		s.seals[v] = r.URL.Query().Get("truncated")
		s.mu.Unlock()
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// testJWT counts signatures; refresh returns a new token.
type testJWT struct {
	mu        sync.Mutex
	refreshes int
}

func (j *testJWT) current() (string, error) { return "jwt-0", nil }
func (j *testJWT) refresh() (string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.refreshes++
	return fmt.Sprintf("jwt-%d", j.refreshes), nil
}

func newTestShipper(t *testing.T, cfg shipperConfig, srv *segServer) (*logShipper, *testLogBuffer) {
	t.Helper()
	logs := &testLogBuffer{}
	up := newLogUploader(srv.srv.URL, &testJWT{})
	up.jitter = func() float64 { return 0 }
	a := logArtifact{ID: 1, Ref: "sensor.pk.s.stdout", SensorRef: "pk.s", Stream: "stdout"}
	return newLogShipper(cfg, a, &memRows{}, up, slog.New(slog.NewJSONHandler(logs, nil))), logs
}

func waitShipped(t *testing.T, s *logShipper) {
	t.Helper()
	s.finish()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("shipper did not finish within 30 s")
	}
}

func TestShipperSegmentTargetGrowsThenResets(t *testing.T) {
	srv := newSegServer(t)
	cfg := shipperConfig{flush: 300 * time.Millisecond, initial: 1 << 10, maxSegment: 8 << 10, attempts: 5, sealTimeout: 10 * time.Second}
	s, _ := newTestShipper(t, cfg, srv)
	in := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
	s.Write(in)
	time.Sleep(cfg.flush * 3) // idle past one flush interval: the target resets
	s.Write([]byte("tail\n"))
	waitShipped(t, s)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	segs := srv.segs[1]
	var sizes []int
	var all []byte
	for _, g := range segs {
		sizes = append(sizes, len(g))
		all = append(all, g...)
	}
	if !bytes.Equal(all, append(in, "tail\n"...)) {
		t.Fatalf("shipped %d bytes, not the %d written", len(all), len(in)+5)
	}
	if len(sizes) < 5 || sizes[0] != 1<<10 || sizes[1] != 2<<10 || sizes[2] != 4<<10 || sizes[3] != 8<<10 {
		t.Errorf("segment sizes %v, want 1024, 2048, 4096, 8192 first (doubling after size flushes)", sizes)
	}
	for _, n := range sizes {
		if n > cfg.maxSegment || n == 0 {
			t.Errorf("segment of %d bytes (bound %d)", n, cfg.maxSegment)
		}
	}
	if sizes[len(sizes)-1] != 5 {
		t.Errorf("last segment %d bytes, want the 5-byte tail flushed on its own", sizes[len(sizes)-1])
	}
	if srv.seals[1] != "false" {
		t.Errorf("version 1 seal %q, want truncated=false", srv.seals[1])
	}
}

func TestShipperRotatesAndSealsEveryVersion(t *testing.T) {
	srv := newSegServer(t)
	cfg := shipperConfig{flush: 50 * time.Millisecond, initial: 1 << 10, maxSegment: 4 << 10, rotateAt: 3000, attempts: 5, sealTimeout: 10 * time.Second}
	s, _ := newTestShipper(t, cfg, srv)
	in := bytes.Repeat([]byte("x"), 10000)
	for i := 0; i < len(in); i += 500 {
		s.Write(in[i : i+500])
	}
	waitShipped(t, s)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	want := []int{3000, 3000, 3000, 1000}
	if len(srv.segs) != len(want) {
		t.Fatalf("%d versions, want %d", len(srv.segs), len(want))
	}
	for i, n := range want {
		v := int64(i + 1)
		if got := len(bytes.Join(srv.segs[v], nil)); got != n {
			t.Errorf("version %d holds %d bytes, want %d", v, got, n)
		}
		if srv.seals[v] != "false" {
			t.Errorf("version %d seal %q, want sealed (truncated=false)", v, srv.seals[v])
		}
	}
}

func TestShipperBoundedWhenAPIHangs(t *testing.T) {
	srv := newSegServer(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv.answer = func(int64, int64, string) int { <-release; return 0 }
	cfg := shipperConfig{flush: 50 * time.Millisecond, initial: 1 << 10, maxSegment: 4 << 10, attempts: 5, sealTimeout: 2 * time.Second}
	s, logs := newTestShipper(t, cfg, srv)
	chunk := bytes.Repeat([]byte("y"), 4<<10)
	start := time.Now()
	for range 256 { // 1 MiB
		s.Write(chunk)
		s.mu.Lock()
		held := len(s.buf) + s.inflight
		s.mu.Unlock()
		if held > cfg.maxSegment {
			t.Fatalf("%d bytes held, bound %d", held, cfg.maxSegment)
		}
	}
	if d := time.Since(start); d > 3*backpressureWait {
		t.Errorf("writing 1 MiB against a hung API took %s: writers must stall at most once", d)
	}
	s.mu.Lock()
	dropped := s.dropped
	s.mu.Unlock()
	if dropped < 1<<20-2*int64(cfg.maxSegment) {
		t.Errorf("dropped %d bytes, want about 1 MiB minus the bound", dropped)
	}
	if !strings.Contains(logs.String(), "sensor output dropped: log stream buffer full") {
		t.Errorf("no drop warning: %s", logs.String())
	}
}

func TestShipperLatchesVersionOn409(t *testing.T) {
	srv := newSegServer(t)
	srv.answer = func(v, seq int64, _ string) int {
		if seq == 1 {
			return http.StatusConflict
		}
		return 0
	}
	cfg := shipperConfig{flush: 30 * time.Millisecond, initial: 1 << 10, maxSegment: 4 << 10, attempts: 5, sealTimeout: 5 * time.Second}
	s, logs := newTestShipper(t, cfg, srv)
	for i := range 5 {
		s.Write([]byte(fmt.Sprintf("line %d\n", i)))
		time.Sleep(100 * time.Millisecond) // one segment each
	}
	waitShipped(t, s)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.segs[1]) != 1 || len(srv.segs) != 1 {
		t.Errorf("segments %v: want only seq 0 of version 1 (latched at seq 1, no new version)", srv.segs)
	}
	if srv.seals[1] != "true" {
		t.Errorf("latched version seal %q, want truncated=true", srv.seals[1])
	}
	if !strings.Contains(logs.String(), "refused by the API") || !strings.Contains(logs.String(), `"dropped_bytes"`) {
		t.Errorf("no latch warning or drop count: %s", logs.String())
	}
}

func TestLogUploaderResignsOnceOn401(t *testing.T) {
	srv := newSegServer(t)
	srv.answer = func(_, _ int64, auth string) int {
		if auth == "Bearer jwt-0" {
			return http.StatusUnauthorized
		}
		return 0
	}
	jwt := &testJWT{}
	up := newLogUploader(srv.srv.URL, jwt)
	if err := up.putSegment(t.Context(), 1, 0, []byte("hello"), 1); err != nil {
		t.Fatalf("segment after a 401: %v", err)
	}
	if jwt.refreshes != 1 {
		t.Errorf("re-signed %d times, want once", jwt.refreshes)
	}
	srv.answer = func(int64, int64, string) int { return http.StatusUnauthorized }
	err := up.putSegment(t.Context(), 1, 1, []byte("again"), 3)
	if err == nil || isRetryableLogError(err) || !strings.Contains(err.Error(), "401") {
		t.Errorf("persistent 401: %v, want a non-retryable HTTP 401 error", err)
	}
}
