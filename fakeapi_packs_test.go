package main

// fakeapi_packs_test.go is the fake Attune API's pack release archive route,
// GET /api/v1/internal/pack-releases/{id}/archive, as strict as the newest
// API (routes/internal.rs download_pack_release_archive): a valid worker JWT
// whose metadata carries a worker_id, else 401 (no or bad credential) or 403
// (another kind of token, no worker_id scope); 400 for an id that is not a
// positive integer; 404 for an unknown release. Tests store archives and can
// make the next answers lie (tampered bytes, a truncated body, a 401).

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
)

// fakePackServe says how the route answers for one request.
type fakePackServe int

const (
	fakePackServeNormal     fakePackServe = iota
	fakePackServeTampered                 // one byte flipped, length kept
	fakePackServeTruncated                // Content-Length of the whole, half the body, then the connection drops
	fakePackServeShortClean               // the first half, with a matching Content-Length
	fakePackServe401                      // 401, as for an expired JWT
)

// fakePackRequest is one archive request as the fake saw it.
type fakePackRequest struct {
	ReleaseID     string
	Authorization string
	Status        int
}

type fakePackReleases struct {
	secret string

	mu       sync.Mutex
	archives map[int64][]byte
	script   []fakePackServe
	requests []fakePackRequest
}

// fakePackRoutes maps each fake API to its pack route state, so that
// apitest_test.go only needs one registration line.
var fakePackRoutes sync.Map // *fakeAttuneAPI → *fakePackReleases

func registerFakePackRoutes(f *fakeAttuneAPI, mux *http.ServeMux) {
	p := &fakePackReleases{secret: f.secret, archives: map[int64][]byte{}}
	fakePackRoutes.Store(f, p)
	mux.HandleFunc("GET /api/v1/internal/pack-releases/{id}/archive", p.handleArchive)
}

// packs is the fake's pack release state.
func (f *fakeAttuneAPI) packs() *fakePackReleases {
	p, _ := fakePackRoutes.Load(f)
	return p.(*fakePackReleases)
}

// putRelease stores the archive served for release id.
func (p *fakePackReleases) putRelease(id int64, archive []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.archives[id] = slices.Clone(archive)
}

// scriptServe queues how the next requests are answered.
func (p *fakePackReleases) scriptServe(modes ...fakePackServe) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.script = append(p.script, modes...)
}

func (p *fakePackReleases) requestLog() []fakePackRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.requests)
}

func (p *fakePackReleases) handleArchive(w http.ResponseWriter, r *http.Request) {
	rec := fakePackRequest{ReleaseID: r.PathValue("id"), Authorization: r.Header.Get("Authorization")}
	status, body, mode := p.answer(rec)
	rec.Status = status
	p.mu.Lock()
	p.requests = append(p.requests, rec)
	p.mu.Unlock()
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("X-Attune-Pack-Release-Id", rec.ReleaseID)
	switch mode {
	case fakePackServeTampered:
		body = slices.Clone(body)
		body[len(body)/2] ^= 0xff
	case fakePackServeShortClean:
		body = body[:len(body)/2]
	case fakePackServeTruncated:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// answer decides status and body for one request, consuming the script.
func (p *fakePackReleases) answer(rec fakePackRequest) (int, []byte, fakePackServe) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mode := fakePackServeNormal
	if len(p.script) > 0 {
		mode, p.script = p.script[0], p.script[1:]
	}
	if mode == fakePackServe401 {
		return http.StatusUnauthorized, nil, mode
	}
	_, claims, ok := verifyFakeWorkerJWT(p.secret, rec.Authorization)
	if !ok {
		return http.StatusUnauthorized, nil, mode
	}
	meta, _ := claims["metadata"].(map[string]any)
	if wid, _ := meta["worker_id"].(string); wid == "" {
		return http.StatusForbidden, nil, mode
	}
	id, err := strconv.ParseInt(rec.ReleaseID, 10, 64)
	if err != nil || id <= 0 {
		return http.StatusBadRequest, nil, mode
	}
	body, found := p.archives[id]
	if !found {
		return http.StatusNotFound, nil, mode
	}
	return http.StatusOK, body, mode
}
