package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func testDigest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// testPackReleases is a packReleases over a fresh packs_base_dir.
func testPackReleases(t *testing.T, transport, apiURL string) (*packReleases, string) {
	t.Helper()
	base := t.TempDir()
	cfg := &Config{PacksBaseDir: base, APIURL: apiURL}
	cfg.Packs.Transport = transport
	return newPackReleases(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))), base
}

// testWorkerJWT is a registered worker's signer for the fake API's secret.
func testWorkerJWT(t *testing.T) *workerJWTSigner {
	t.Helper()
	s, err := newWorkerJWTSigner(fakeAPISecret)
	if err != nil {
		t.Fatal(err)
	}
	s.setWorkerID(42)
	return s
}

var testFence = workloadFence{WorkloadID: 7, WorkerID: 42, WorkerInstance: "0b7e5b2e-3c55-4a8e-9d7c-1f2e3d4c5b6a", Generation: 3}

// layVolumeRelease writes a release as the API lays it on a shared volume:
// .releases/sha256/{digest}/pack.tar.gz and pack/ with pack.yaml.
func layVolumeRelease(t *testing.T, base string, archive []byte, digest string, withYAML bool) string {
	t.Helper()
	dir := filepath.Join(base, ".releases", "sha256", digest, "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if withYAML {
		if err := os.WriteFile(filepath.Join(dir, "pack.yaml"), []byte("ref: demo\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if archive != nil {
		if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "pack.tar.gz"), archive, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestPackReleaseVolumeVerification: a release on the shared volume is used
// only with pack.yaml and a pack.tar.gz hashing to the pinned digest; every
// other case fails with the reference's text and says what is wrong.
func TestPackReleaseVolumeVerification(t *testing.T) {
	archive := goodTestPack(t)
	digest := testDigest(archive)
	other := testDigest([]byte("another archive"))
	cases := map[string]struct {
		lay    func(t *testing.T, base string)
		digest string
		reason string
	}{
		"good":            {lay: func(t *testing.T, base string) { layVolumeRelease(t, base, archive, digest, true) }, digest: digest},
		"nothing there":   {lay: func(*testing.T, string) {}, digest: digest, reason: "no pack.yaml"},
		"no pack.yaml":    {lay: func(t *testing.T, base string) { layVolumeRelease(t, base, archive, digest, false) }, digest: digest, reason: "no pack.yaml"},
		"no pack.tar.gz":  {lay: func(t *testing.T, base string) { layVolumeRelease(t, base, nil, digest, true) }, digest: digest, reason: "pack.tar.gz"},
		"digest mismatch": {lay: func(t *testing.T, base string) { layVolumeRelease(t, base, archive, other, true) }, digest: other, reason: "has sha256 " + digest + ", want " + other},
		"tampered archive": {lay: func(t *testing.T, base string) {
			layVolumeRelease(t, base, append(archive[:len(archive):len(archive)], 0), digest, true)
		}, digest: digest, reason: "want " + digest},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r, base := testPackReleases(t, "volume", "http://127.0.0.1:1")
			tc.lay(t, base)
			dir, err := r.ensureLocal(context.Background(), "demo", packRelease{ID: 9, Digest: tc.digest}, testFence, testWorkerJWT(t))
			if tc.reason == "" {
				want := filepath.Join(base, ".releases", "sha256", digest, "pack")
				if err != nil || dir != want {
					t.Fatalf("ensureLocal = %q, %v; want %q", dir, err, want)
				}
				return
			}
			if !errors.Is(err, ErrPackNotLocal) || !strings.Contains(err.Error(), "Required pack 'demo' is not local on the shared volume") ||
				!strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err = %v; want the not-local error naming %q", err, tc.reason)
			}
		})
	}
}

// TestPackReleaseRefusesBadNames: a pack ref or digest that could steer the
// path off the volume, or a release id that is not positive, is refused
// before anything is read.
func TestPackReleaseRefusesBadNames(t *testing.T) {
	r, _ := testPackReleases(t, "volume", "")
	good := testDigest([]byte("x"))
	for name, c := range map[string]struct {
		ref string
		rel packRelease
	}{
		"ref with dot-dot": {ref: "../etc", rel: packRelease{ID: 1, Digest: good}},
		"ref with slash":   {ref: "a/b", rel: packRelease{ID: 1, Digest: good}},
		"digest path":      {ref: "demo", rel: packRelease{ID: 1, Digest: "../../../../etc"}},
		"digest uppercase": {ref: "demo", rel: packRelease{ID: 1, Digest: strings.ToUpper(good)}},
		"digest prefixed":  {ref: "demo", rel: packRelease{ID: 1, Digest: "sha256:" + good}},
		"id zero":          {ref: "demo", rel: packRelease{ID: 0, Digest: good}},
	} {
		if _, err := r.ensureLocal(context.Background(), c.ref, c.rel, testFence, testWorkerJWT(t)); err == nil || errors.Is(err, ErrPackNotLocal) {
			t.Errorf("%s: err = %v; want a refusal of the name", name, err)
		}
	}
}

// TestPackReleaseAPIDownload: with packs.transport api the release is
// downloaded with the worker JWT, unpacked as {digest}/pack with the ready
// marker, nothing is left in staging, and a second start does not download
// again.
func TestPackReleaseAPIDownload(t *testing.T) {
	api := newFakeAttuneAPI(t)
	archive := goodTestPack(t)
	digest := testDigest(archive)
	api.packs().putRelease(11, archive)
	r, base := testPackReleases(t, "api", api.URL()+"/")
	jwt := testWorkerJWT(t)
	dir, err := r.ensureLocal(context.Background(), "demo", packRelease{ID: 11, Digest: digest}, testFence, jwt)
	if err != nil {
		t.Fatalf("ensureLocal: %v", err)
	}
	if want := filepath.Join(base, ".releases", "sha256", digest, "pack"); dir != want {
		t.Fatalf("dir %q, want %q", dir, want)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "sensors", "tick.sh")); err != nil || string(b) != "#!/bin/sh\necho tick\n" {
		t.Fatalf("tick.sh = %q, %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(filepath.Dir(dir), ".attune-release-ready")); string(b) != digest {
		t.Fatalf("ready marker %q, want the digest", b)
	}
	assertNoPackStaging(t, base)
	reqs := api.packs().requestLog()
	if len(reqs) != 1 || reqs[0].Status != http.StatusOK || reqs[0].ReleaseID != "11" {
		t.Fatalf("archive requests %+v, want one 200 for release 11", reqs)
	}
	if _, _, ok := verifyFakeWorkerJWT(fakeAPISecret, reqs[0].Authorization); !ok {
		t.Fatalf("archive request not authorised by a valid worker JWT: %q", reqs[0].Authorization)
	}
	// Cached: a verified release is used as it is, even by a new agent process.
	r2 := newPackReleases(&Config{PacksBaseDir: base, APIURL: api.URL(), Packs: PacksConfig{Transport: "api"}}, r.log)
	for _, rr := range []*packReleases{r, r2} {
		if again, err := rr.ensureLocal(context.Background(), "demo", packRelease{ID: 11, Digest: digest}, testFence, jwt); err != nil || again != dir {
			t.Fatalf("second ensureLocal = %q, %v", again, err)
		}
	}
	if n := len(api.packs().requestLog()); n != 1 {
		t.Fatalf("%d archive requests after the cached starts, want 1", n)
	}
}

// TestPackReleaseAPIRefusesBadArchives: a tampered, a truncated (connection
// dropped, or a consistent short body) and a path-traversal archive are each
// refused with a clear error, nothing is published, no staging is left, and
// nothing is written outside packs_base_dir.
func TestPackReleaseAPIRefusesBadArchives(t *testing.T) {
	good := goodTestPack(t)
	evil := testPackArchive(t, testTarEntry{Name: "demo/pack.yaml", Body: "ref: demo\n"}, testTarEntry{Name: "demo/../../../evil", Body: "pwned"})
	cases := map[string]struct {
		archive []byte
		mode    fakePackServe
		want    string
	}{
		"tampered":            {archive: good, mode: fakePackServeTampered, want: "digest mismatch"},
		"truncated, reset":    {archive: good, mode: fakePackServeTruncated, want: "reading archive"},
		"truncated, short":    {archive: good, mode: fakePackServeShortClean, want: "digest mismatch"},
		"path traversal":      {archive: evil, mode: fakePackServeNormal, want: `component ".."`},
		"not gzip, digest ok": {archive: []byte("not an archive at all"), mode: fakePackServeNormal, want: "not a gzip stream"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			api := newFakeAttuneAPI(t)
			api.packs().putRelease(5, tc.archive)
			api.packs().scriptServe(tc.mode)
			outer := t.TempDir()
			base := filepath.Join(outer, "packs")
			r := newPackReleases(&Config{PacksBaseDir: base, APIURL: api.URL(), Packs: PacksConfig{Transport: "api"}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			digest := testDigest(tc.archive)
			_, err := r.ensureLocal(context.Background(), "demo", packRelease{ID: 5, Digest: digest}, testFence, testWorkerJWT(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `pack "demo" release 5`) {
				t.Fatalf("err = %v; want a refusal naming the release and %q", err, tc.want)
			}
			if tc.mode != fakePackServeTruncated && !errors.Is(err, ErrPackArchiveRejected) {
				t.Fatalf("err = %v; want ErrPackArchiveRejected", err)
			}
			if _, err := os.Stat(filepath.Join(base, ".releases", "sha256", digest)); !os.IsNotExist(err) {
				t.Fatalf("release directory exists after a refused archive (%v)", err)
			}
			assertNoPackStaging(t, base)
			if entries, _ := os.ReadDir(outer); len(entries) != 1 {
				t.Fatalf("written beside packs_base_dir: %v", entries)
			}
			// The next start retries and succeeds once the API serves the truth.
			if name == "tampered" || strings.HasPrefix(name, "truncated") {
				if _, err := r.ensureLocal(context.Background(), "demo", packRelease{ID: 5, Digest: digest}, testFence, testWorkerJWT(t)); err != nil {
					t.Fatalf("retry after a bad download: %v", err)
				}
			}
		})
	}
}

// TestPackReleaseAPIRetriesOnce401: a 401 earns one freshly signed JWT and
// one retry, as the reference's force_refresh; a 403 is reported.
func TestPackReleaseAPIRetriesOnce401(t *testing.T) {
	api := newFakeAttuneAPI(t)
	archive := goodTestPack(t)
	api.packs().putRelease(3, archive)
	api.packs().scriptServe(fakePackServe401)
	r, _ := testPackReleases(t, "api", api.URL())
	if _, err := r.ensureLocal(context.Background(), "demo", packRelease{ID: 3, Digest: testDigest(archive)}, testFence, testWorkerJWT(t)); err != nil {
		t.Fatalf("ensureLocal after one 401: %v", err)
	}
	if reqs := api.packs().requestLog(); len(reqs) != 2 || reqs[0].Status != 401 || reqs[1].Status != 200 {
		t.Fatalf("requests %+v, want 401 then 200", reqs)
	}
	unregistered, _ := newWorkerJWTSigner(fakeAPISecret)
	unregistered.workerID = "" // a JWT without a worker_id scope
	r2, _ := testPackReleases(t, "api", api.URL())
	_, err := r2.ensureLocal(context.Background(), "demo", packRelease{ID: 3, Digest: testDigest(archive)}, testFence, unregistered)
	if err == nil || !strings.Contains(err.Error(), "returned 403") {
		t.Fatalf("err = %v; want the 403 reported", err)
	}
}

// TestFakePackArchiveRouteIsStrict proves the fake refuses what the newest
// API refuses, so the download tests cannot pass against a lax API.
func TestFakePackArchiveRouteIsStrict(t *testing.T) {
	api := newFakeAttuneAPI(t)
	api.packs().putRelease(1, goodTestPack(t))
	jwt, _ := testWorkerJWT(t).current()
	other, _ := newWorkerJWTSigner("another-secret")
	otherJWT, _ := other.current()
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/api/v1/internal/pack-releases/1/archive", "", 401},
		{"/api/v1/internal/pack-releases/1/archive", "Bearer not-a-jwt", 401},
		{"/api/v1/internal/pack-releases/1/archive", "Bearer " + otherJWT, 401},
		{"/api/v1/internal/pack-releases/0/archive", "Bearer " + jwt, 400},
		{"/api/v1/internal/pack-releases/x/archive", "Bearer " + jwt, 400},
		{"/api/v1/internal/pack-releases/2/archive", "Bearer " + jwt, 404},
		{"/api/v1/internal/pack-releases/1/archive", "Bearer " + jwt, 200},
	} {
		req, _ := http.NewRequest(http.MethodGet, api.URL()+c.path, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s with %.20q: %d, want %d", c.path, c.auth, resp.StatusCode, c.want)
		}
	}
}

// TestPackReleaseConcurrentStartsDownloadOnce: sensors of one release
// starting together share one download.
func TestPackReleaseConcurrentStartsDownloadOnce(t *testing.T) {
	api := newFakeAttuneAPI(t)
	archive := goodTestPack(t)
	api.packs().putRelease(8, archive)
	r, _ := testPackReleases(t, "api", api.URL())
	jwt := testWorkerJWT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.ensureLocal(context.Background(), "demo", packRelease{ID: 8, Digest: testDigest(archive)}, testFence, jwt)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(api.packs().requestLog()); n != 1 {
		t.Fatalf("%d downloads, want 1", n)
	}
}

// assertNoPackStaging fails when a download or unpack left files behind.
func assertNoPackStaging(t *testing.T, base string) {
	t.Helper()
	if entries, _ := os.ReadDir(filepath.Join(base, ".pack-downloads")); len(entries) != 0 {
		t.Fatalf("download staging left behind: %v", entries)
	}
	entries, _ := os.ReadDir(filepath.Join(base, ".releases", "sha256"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("unpack staging left behind: %s", e.Name())
		}
	}
}
