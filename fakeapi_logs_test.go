package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// fakeLogsAPI is the test double of the API's sensor log endpoints (CONTRACT
// §13), as strict as the newest API: segment PUTs authorised by the
// version's file_path (a sensor-scoped runtime-log artifact whose path is
// derived from its ref), sequences from 0 without gaps, 200 for an identical
// resend, 409 for different bytes or a wrong sequence (with
// x-attune-log-next-sequence), 413 above max_unflushed_bytes, 400 when empty;
// the seal checks that the committed segments are contiguous and marks the
// version ready; GET /api/v1/sensors/{ref}/logs/{stream} serves what was
// committed, oldest version first. It writes log_segment and log_stream in
// the test database as the real API does; segment bytes stay in memory
// (the object store). Faults can be injected per request.
type fakeLogsAPI struct {
	secret string

	mu       sync.Mutex
	pool     *pgxpool.Pool
	objects  map[string][]byte
	fault    func(op string, version, seq int64) fakeLogFault
	puts     int
	seals    int
	statuses map[int]int
}

// fakeLogFault is an injected answer: Status (0 = handle normally), Delay
// before handling, Drop to cut the connection without an answer.
type fakeLogFault struct {
	Status int
	Delay  time.Duration
	Drop   bool
}

func newFakeLogsAPI(mux *http.ServeMux, secret string) *fakeLogsAPI {
	f := &fakeLogsAPI{secret: secret, objects: map[string][]byte{}, statuses: map[int]int{}}
	mux.HandleFunc("PUT /api/v1/internal/logs/{version}/segments/{seq}", f.handleSegment)
	mux.HandleFunc("POST /api/v1/internal/logs/{version}/seal", f.handleSeal)
	mux.HandleFunc("GET /api/v1/sensors/{ref}/logs/{stream}", f.handleRead)
	return f
}

// attach gives the double the test database (search_path attune) to work on.
func (f *fakeLogsAPI) attach(pool *pgxpool.Pool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pool = pool
}

// inject sets (nil clears) the fault hook.
func (f *fakeLogsAPI) inject(h func(op string, version, seq int64) fakeLogFault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = h
}

// counts reports segment PUTs, seal POSTs and answers by status.
func (f *fakeLogsAPI) counts() (puts, seals int, statuses map[int]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := map[int]int{}
	for k, v := range f.statuses {
		st[k] = v
	}
	return f.puts, f.seals, st
}

func (f *fakeLogsAPI) answer(w http.ResponseWriter, status int, msg string) {
	f.mu.Lock()
	f.statuses[status]++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%q}`, msg)
}

// begin authorises a request and applies an injected fault; ok=false means
// it was answered.
func (f *fakeLogsAPI) begin(w http.ResponseWriter, r *http.Request, op string, version, seq int64) (*pgxpool.Pool, bool) {
	f.mu.Lock()
	pool, hook := f.pool, f.fault
	if op == "segment" {
		f.puts++
	} else if op == "seal" {
		f.seals++
	}
	f.mu.Unlock()
	if hook != nil {
		ft := hook(op, version, seq)
		if ft.Delay > 0 {
			select {
			case <-time.After(ft.Delay):
			case <-r.Context().Done():
				return nil, false
			}
		}
		if ft.Drop {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return nil, false
				}
			}
		}
		if ft.Status != 0 {
			f.answer(w, ft.Status, "injected fault")
			return nil, false
		}
	}
	if _, claims, ok := verifyFakeWorkerJWT(f.secret, r.Header.Get("Authorization")); !ok || claims["token_type"] != "worker" {
		f.answer(w, http.StatusUnauthorized, "Unauthorized")
		return nil, false
	}
	if pool == nil {
		f.answer(w, http.StatusNotFound, "log stream not found")
		return nil, false
	}
	return pool, true
}

// authorizeVersion checks the version's file_path the way the API does for
// a sensor log: a pending, file-backed version of a sensor-scoped runtime
// log artifact whose path is the one derived from its ref and number.
func authorizeVersion(ctx context.Context, tx pgx.Tx, version int64) (streamID, maxBytes int64, status int, msg string) {
	var ref, scope, owner, class string
	var path *string
	var num int
	var state *string
	err := tx.QueryRow(ctx, `
SELECT a.ref, a.scope::text, a.owner, a.classification::text, v.file_path, v.version, v.body_state::text, s.id, s.max_unflushed_bytes
  FROM artifact_version v JOIN artifact a ON a.id = v.artifact JOIN log_stream s ON s.artifact_version = v.id
 WHERE v.id = $1 FOR UPDATE OF s`, version).Scan(&ref, &scope, &owner, &class, &path, &num, &state, &streamID, &maxBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, http.StatusNotFound, "log stream not found"
	}
	if err != nil {
		return 0, 0, http.StatusInternalServerError, err.Error()
	}
	if path == nil || strings.Contains(*path, "..") || strings.HasPrefix(*path, "/") ||
		*path != sensorLogFilePath(ref, num) || scope != "sensor" || class != "runtime_log" ||
		(ref != sensorLogArtifactRef(owner, "stdout") && ref != sensorLogArtifactRef(owner, "stderr")) {
		return 0, 0, http.StatusForbidden, "file path not authorised for this token"
	}
	var sensorExists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sensor WHERE ref = $1)`, owner).Scan(&sensorExists); err != nil || !sensorExists {
		return 0, 0, http.StatusForbidden, "file path not owned by a sensor"
	}
	if state == nil || *state != "pending" {
		return 0, 0, http.StatusConflict, "artifact version is not pending"
	}
	return streamID, maxBytes, 0, ""
}

func pathInts(r *http.Request, names ...string) ([]int64, bool) {
	out := make([]int64, len(names))
	for i, n := range names {
		v, err := strconv.ParseInt(r.PathValue(n), 10, 64)
		if err != nil || v < 0 {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

func (f *fakeLogsAPI) handleSegment(w http.ResponseWriter, r *http.Request) {
	ids, ok := pathInts(r, "version", "seq")
	if !ok {
		f.answer(w, http.StatusBadRequest, "invalid version or sequence")
		return
	}
	version, seq := ids[0], ids[1]
	pool, ok := f.begin(w, r, "segment", version, seq)
	if !ok {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
		f.answer(w, http.StatusUnsupportedMediaType, "segments are application/octet-stream")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		f.answer(w, http.StatusBadRequest, "read body")
		return
	}
	if len(body) == 0 {
		f.answer(w, http.StatusBadRequest, "empty segment")
		return
	}
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	ctx := r.Context()
	status, msg, next := 0, "", int64(-1)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		streamID, maxBytes, st, m := authorizeVersion(ctx, tx, version)
		if st != 0 {
			status, msg = st, m
			return nil
		}
		if int64(len(body)) > maxBytes {
			status, msg = http.StatusRequestEntityTooLarge, "segment exceeds max_unflushed_bytes"
			return nil
		}
		var nextSeq, total int64
		var sealed bool
		if err := tx.QueryRow(ctx, `SELECT next_sequence, total_bytes, sealed FROM log_stream WHERE id = $1`, streamID).Scan(&nextSeq, &total, &sealed); err != nil {
			return err
		}
		if seq < nextSeq {
			var old string
			if err := tx.QueryRow(ctx, `SELECT sha256 FROM log_segment WHERE stream = $1 AND sequence = $2`, streamID, seq).Scan(&old); err != nil {
				return err
			}
			if old == digest {
				status = http.StatusOK
			} else {
				status, msg, next = http.StatusConflict, "segment differs from the committed one", nextSeq
			}
			return nil
		}
		if sealed {
			status, msg = http.StatusConflict, "log stream is sealed"
			return nil
		}
		if seq != nextSeq {
			status, msg, next = http.StatusConflict, "unexpected sequence", nextSeq
			return nil
		}
		key := fmt.Sprintf("logs/%d/%d/%s", streamID, seq, digest[:16])
		if _, err := tx.Exec(ctx, `
INSERT INTO log_segment (stream, sequence, byte_start, byte_end, size_bytes, sha256, object_key, provider_version)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'fake-1')`, streamID, seq, total, total+int64(len(body)), len(body), digest, key); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE log_stream SET next_sequence = next_sequence + 1, total_bytes = total_bytes + $2 WHERE id = $1`, streamID, len(body)); err != nil {
			return err
		}
		f.mu.Lock()
		f.objects[key] = body
		f.mu.Unlock()
		status = http.StatusCreated
		return nil
	})
	if err != nil {
		f.answer(w, http.StatusInternalServerError, err.Error())
		return
	}
	if next >= 0 {
		w.Header().Set("x-attune-log-next-sequence", strconv.FormatInt(next, 10))
	}
	f.answer(w, status, msg)
}

func (f *fakeLogsAPI) handleSeal(w http.ResponseWriter, r *http.Request) {
	ids, ok := pathInts(r, "version")
	if !ok {
		f.answer(w, http.StatusBadRequest, "invalid version")
		return
	}
	truncated, err := strconv.ParseBool(r.URL.Query().Get("truncated"))
	if err != nil {
		f.answer(w, http.StatusBadRequest, "truncated must be true or false")
		return
	}
	pool, ok := f.begin(w, r, "seal", ids[0], 0)
	if !ok {
		return
	}
	ctx := r.Context()
	status, msg := 0, ""
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var sealed bool
		err := tx.QueryRow(ctx, `SELECT s.sealed FROM log_stream s WHERE s.artifact_version = $1 FOR UPDATE`, ids[0]).Scan(&sealed)
		if err == nil && sealed {
			status = http.StatusOK // idempotent
			return nil
		}
		streamID, _, st, m := authorizeVersion(ctx, tx, ids[0])
		if st != 0 {
			status, msg = st, m
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT sequence, byte_start, byte_end, object_key FROM log_segment WHERE stream = $1 ORDER BY sequence`, streamID)
		if err != nil {
			return err
		}
		var want, pos int64
		h := sha256.New()
		for rows.Next() {
			var seq, start, end int64
			var key string
			if err := rows.Scan(&seq, &start, &end, &key); err != nil {
				rows.Close()
				return err
			}
			if seq != want || start != pos {
				rows.Close()
				status, msg = http.StatusConflict, "log segments are not contiguous"
				return nil
			}
			f.mu.Lock()
			h.Write(f.objects[key])
			f.mu.Unlock()
			want, pos = seq+1, end
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var next, total int64
		if err := tx.QueryRow(ctx, `SELECT next_sequence, total_bytes FROM log_stream WHERE id = $1`, streamID).Scan(&next, &total); err != nil {
			return err
		}
		if next != want || total != pos {
			status, msg = http.StatusConflict, "log stream counters disagree with its segments"
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE log_stream SET sealed = TRUE, sealed_at = NOW(), truncated = $2 WHERE id = $1`, streamID, truncated); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE artifact_version SET body_state = 'ready', provider_version = 'fake-1', sha256 = $2, size_bytes = $3 WHERE id = $1`,
			ids[0], hex.EncodeToString(h.Sum(nil)), pos); err != nil {
			return err
		}
		status = http.StatusOK
		return nil
	})
	if err != nil {
		f.answer(w, http.StatusInternalServerError, err.Error())
		return
	}
	f.answer(w, status, msg)
}
