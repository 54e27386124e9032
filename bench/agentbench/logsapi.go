package main

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// benchLogs is the fake API's side of the sensor log streams (docs/
// benchmarks.md item 8): segment PUTs (sequence checked per version, 201)
// and seals (200), with the commit time of every segment, the bytes per
// kind of sensor output and, for the stamping sensor's lines ("stamp <unix
// ns>"), the latency from the line written to it committed, i.e. readable
// through GET /api/v1/sensors/{ref}/logs/{stream}. It stores no bytes and
// writes no database rows: that cost is the API's, not the agent's.
type benchLogs struct {
	mu         sync.Mutex
	next       map[int64]int64
	floodBytes int64
	firstAt    time.Time
	lastAt     time.Time
	latencies  []float64 // ms, stamp lines committed
	seals      int
	refused    int
}

func newBenchLogs(mux *http.ServeMux) *benchLogs {
	l := &benchLogs{next: map[int64]int64{}}
	mux.HandleFunc("PUT /api/v1/internal/logs/{version}/segments/{seq}", l.handleSegment)
	mux.HandleFunc("POST /api/v1/internal/logs/{version}/seal", l.handleSeal)
	return l
}

var stampPrefix = []byte("stamp ")

func (l *benchLogs) handleSegment(w http.ResponseWriter, r *http.Request) {
	version, err1 := strconv.ParseInt(r.PathValue("version"), 10, 64)
	seq, err2 := strconv.ParseInt(r.PathValue("seq"), 10, 64)
	body, err3 := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	now := time.Now()
	if err1 != nil || err2 != nil || err3 != nil || len(body) == 0 {
		http.Error(w, "bad segment", http.StatusBadRequest)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq != l.next[version] {
		l.refused++
		w.Header().Set("x-attune-log-next-sequence", strconv.FormatInt(l.next[version], 10))
		http.Error(w, "unexpected sequence", http.StatusConflict)
		return
	}
	l.next[version]++
	if !bytes.Contains(body, stampPrefix) {
		if l.firstAt.IsZero() {
			l.firstAt = now
		}
		l.lastAt = now
		l.floodBytes += int64(len(body))
	}
	for line := range bytes.Lines(body) {
		if v, ok := bytes.CutPrefix(bytes.TrimSpace(line), stampPrefix); ok {
			if ns, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				l.latencies = append(l.latencies, ms(now.Sub(time.Unix(0, ns))))
			}
		}
	}
	w.WriteHeader(http.StatusCreated)
}

func (l *benchLogs) handleSeal(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.seals++
	l.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// snapshot returns the flood counters and a copy of the latencies.
func (l *benchLogs) snapshot() (flood int64, first, last time.Time, lat []float64, seals, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.floodBytes, l.firstAt, l.lastAt, append([]float64(nil), l.latencies...), l.seals, l.refused
}

// resetLatencies forgets the samples taken so far (those during the flood).
func (l *benchLogs) resetLatencies() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.latencies = nil
}
