package main

// packrelease.go owns making a pinned pack release local before a sensor of
// it starts (CONTRACT §6, newest generation): {packs_base_dir}/.releases/
// sha256/{digest}/pack, verified on the shared volume or downloaded from the
// API, never run from unless its bytes match the digest its workload pins.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Release layout names, as the reference's pack transports write and read
// them (crates/common/src/pack_transport).
const (
	packReleaseArchiveName = "pack.tar.gz"           // sibling of pack/, volume transport
	packReleaseReadyMarker = ".attune-release-ready" // sibling of pack/, API transport; holds the digest
	packDownloadsDir       = ".pack-downloads"       // under packs_base_dir, staging for downloads
)

// packDownloadTimeout bounds one archive download, as the reference's
// 300 s HTTP client timeout.
const packDownloadTimeout = 300 * time.Second

// ErrPackNotLocal is the volume transport's refusal: the pinned release is
// not on the shared volume with the bytes its digest names.
var ErrPackNotLocal = errors.New("pack release not local")

// workerJWTSource is the worker credential of the archive download: the
// cached JWT, and a freshly signed one after a 401 (the reference's
// WorkerTokenProvider token / force_refresh). *workerJWTSigner is one.
type workerJWTSource interface {
	current() (string, error)
	refresh() (string, error)
}

// packReleases makes pinned pack releases local. One value serves the whole
// agent: it serialises work on one digest (two sensors of one release start
// at once) and remembers volume verifications so an unchanged archive is not
// hashed again at every start.
type packReleases struct {
	base      string // packs_base_dir
	transport string // packs.transport: volume or api
	apiURL    string
	client    *http.Client
	log       *slog.Logger
	limits    packArchiveLimits

	mu       sync.Mutex
	locks    map[string]*sync.Mutex  // digest → serialises ensureLocal
	verified map[string]archiveStamp // digest → pack.tar.gz as last verified (volume)
}

// archiveStamp identifies a file's content cheaply enough to skip re-hashing
// an archive nobody rewrote.
type archiveStamp struct {
	size    int64
	modTime time.Time
}

func newPackReleases(cfg *Config, log *slog.Logger) *packReleases {
	transport := cfg.Packs.Transport
	if transport == "" {
		transport = "volume"
	}
	return &packReleases{
		base: cfg.PacksBaseDir, transport: transport, apiURL: strings.TrimRight(cfg.APIURL, "/"),
		client: &http.Client{Timeout: packDownloadTimeout}, log: log, limits: defaultPackArchiveLimits(),
		locks: map[string]*sync.Mutex{}, verified: map[string]archiveStamp{},
	}
}

// releasePackDir is {base}/.releases/sha256/{digest}/pack after checking
// both names, so neither can steer the path off the packs volume.
func releasePackDir(base, packRef string, rel packRelease) (string, error) {
	if !launchPackRefPattern.MatchString(packRef) {
		return "", fmt.Errorf("%w: %q", ErrInvalidPackRef, packRef)
	}
	if rel.ID <= 0 {
		return "", fmt.Errorf("pack %q: release id %d is not positive", packRef, rel.ID)
	}
	if !launchIsSHA256Hex(rel.Digest) {
		return "", fmt.Errorf("pack %q release %d: digest %q is not a lower-case sha256", packRef, rel.ID, rel.Digest)
	}
	return filepath.Join(base, ".releases", "sha256", rel.Digest, "pack"), nil
}

// ensureLocal returns the directory to run packRef's sensors from for the
// release their workload pins. Volume transport: the directory must hold
// pack.yaml and ../pack.tar.gz must hash to the digest. API transport: a
// release already unpacked and marked ready is used as it is; otherwise the
// archive is downloaded with the worker JWT (the reference sends no fence on
// this route and the API asks none of a worker token; fence only labels the
// logs), its sha256 checked, and it is unpacked into a temporary sibling that
// is renamed into place, so a half-written release is never visible.
func (r *packReleases) ensureLocal(ctx context.Context, packRef string, rel packRelease, fence workloadFence, jwt workerJWTSource) (string, error) {
	dir, err := releasePackDir(r.base, packRef, rel)
	if err != nil {
		return "", err
	}
	unlock := r.lock(rel.Digest)
	defer unlock()
	if r.transport != "api" {
		if reason := r.volumeMismatch(dir, rel.Digest); reason != "" {
			return "", fmt.Errorf("%w: Required pack '%s' is not local on the shared volume (release %d, %s)", ErrPackNotLocal, packRef, rel.ID, reason)
		}
		return dir, nil
	}
	if apiReleaseReady(dir, rel.Digest) || r.volumeMismatch(dir, rel.Digest) == "" {
		return dir, nil // unpacked earlier, by this or another agent, or laid out as on a volume and verified
	}
	log := r.log.With("pack", packRef, "release_id", rel.ID, "digest", rel.Digest, "workload_id", fence.WorkloadID, "generation", fence.Generation)
	log.Info("downloading pack release")
	start := time.Now()
	archive, size, err := r.download(ctx, packRef, rel, jwt)
	if err != nil {
		return "", err
	}
	defer os.Remove(archive)
	if err := r.publish(archive, packRef, rel); err != nil {
		return "", fmt.Errorf("pack %q release %d: %w", packRef, rel.ID, err)
	}
	if !apiReleaseReady(dir, rel.Digest) {
		return "", fmt.Errorf("pack %q release %d: unpacked, but %s is not a ready release", packRef, rel.ID, dir)
	}
	log.Info("pack release ready", "bytes", size, "took", time.Since(start).Round(time.Millisecond))
	return dir, nil
}

// lock serialises callers for one digest.
func (r *packReleases) lock(digest string) func() {
	r.mu.Lock()
	l, ok := r.locks[digest]
	if !ok {
		l = &sync.Mutex{}
		r.locks[digest] = l
	}
	r.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// volumeMismatch says why dir is not the verified release ("" when it is):
// pack.yaml must be a file and the sibling pack.tar.gz must hash to digest.
func (r *packReleases) volumeMismatch(dir, digest string) string {
	if st, err := os.Stat(filepath.Join(dir, "pack.yaml")); err != nil || !st.Mode().IsRegular() {
		return "no pack.yaml in " + dir
	}
	archive := filepath.Join(filepath.Dir(dir), packReleaseArchiveName)
	st, err := os.Stat(archive)
	if err != nil || !st.Mode().IsRegular() {
		return "no " + archive
	}
	stamp := archiveStamp{size: st.Size(), modTime: st.ModTime()}
	r.mu.Lock()
	seen, ok := r.verified[digest]
	r.mu.Unlock()
	if ok && seen == stamp {
		return ""
	}
	got, err := fileSHA256(archive)
	if err != nil {
		return err.Error()
	}
	if got != digest {
		return fmt.Sprintf("%s has sha256 %s, want %s", archive, got, digest)
	}
	r.mu.Lock()
	r.verified[digest] = stamp
	r.mu.Unlock()
	return ""
}

// apiReleaseReady is the API transport's test: pack.yaml present and the
// ready marker beside pack/ naming this digest.
func apiReleaseReady(dir, digest string) bool {
	if st, err := os.Stat(filepath.Join(dir, "pack.yaml")); err != nil || !st.Mode().IsRegular() {
		return false
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), packReleaseReadyMarker))
	return err == nil && strings.TrimSpace(string(b)) == digest
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// download fetches the release archive into {base}/.pack-downloads, hashing
// as it writes, and returns the file only when its sha256 is the digest. One
// 401 earns a freshly signed JWT and one retry, as the reference.
func (r *packReleases) download(ctx context.Context, packRef string, rel packRelease, jwt workerJWTSource) (path string, size int64, err error) {
	url := fmt.Sprintf("%s/api/v1/internal/pack-releases/%d/archive", r.apiURL, rel.ID)
	token, err := jwt.current()
	if err != nil {
		return "", 0, fmt.Errorf("pack %q release %d: worker JWT: %w", packRef, rel.ID, err)
	}
	resp, err := r.get(ctx, url, token)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		if token, err = jwt.refresh(); err != nil {
			return "", 0, fmt.Errorf("pack %q release %d: worker JWT: %w", packRef, rel.ID, err)
		}
		resp, err = r.get(ctx, url, token)
	}
	if err != nil {
		return "", 0, fmt.Errorf("pack %q release %d: download: %w", packRef, rel.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", 0, fmt.Errorf("pack %q release %d: archive download returned %d: %s", packRef, rel.ID, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	limit := r.limits.MaxTotalBytes
	if resp.ContentLength > limit {
		return "", 0, fmt.Errorf("%w: pack %q release %d archive is %d bytes, over the %d-byte limit", ErrPackArchiveRejected, packRef, rel.ID, resp.ContentLength, limit)
	}
	dir := filepath.Join(r.base, packDownloadsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, fmt.Errorf("pack download directory: %w", err)
	}
	f, err := os.CreateTemp(dir, "*.tar.gz")
	if err != nil {
		return "", 0, fmt.Errorf("pack download file: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return "", 0, fmt.Errorf("pack %q release %d: reading archive: %w", packRef, rel.ID, err)
	case size > limit:
		return "", 0, fmt.Errorf("%w: pack %q release %d archive is over the %d-byte limit", ErrPackArchiveRejected, packRef, rel.ID, limit)
	case resp.ContentLength >= 0 && size != resp.ContentLength:
		return "", 0, fmt.Errorf("%w: pack %q release %d archive truncated: %d of %d bytes", ErrPackArchiveRejected, packRef, rel.ID, size, resp.ContentLength)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != rel.Digest {
		return "", 0, fmt.Errorf("%w: pack %q release %d digest mismatch: expected %s, got %s (%d bytes)", ErrPackArchiveRejected, packRef, rel.ID, rel.Digest, got, size)
	}
	keep = true
	return f.Name(), size, nil
}

func (r *packReleases) get(ctx context.Context, url, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return r.client.Do(req)
}

// publish unpacks a verified archive into .releases/sha256/.{digest}.*.tmp,
// renames {pack_ref} to pack, writes the ready marker, and renames the whole
// directory to .releases/sha256/{digest}. Losing the final rename to another
// agent that published the same digest is success.
func (r *packReleases) publish(archive, packRef string, rel packRelease) error {
	root := filepath.Join(r.base, ".releases", "sha256")
	dest := filepath.Join(root, rel.Digest)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("release cache directory: %w", err)
	}
	tmp, err := os.MkdirTemp(root, "."+rel.Digest+".*.tmp")
	if err != nil {
		return fmt.Errorf("release staging directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	err = extractPackArchive(f, tmp, packRef, r.limits)
	f.Close()
	if err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, packRef), filepath.Join(tmp, "pack")); err != nil {
		return fmt.Errorf("stage release: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, packReleaseReadyMarker), []byte(rel.Digest), 0o644); err != nil {
		return fmt.Errorf("write release ready marker: %w", err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		if apiReleaseReady(filepath.Join(dest, "pack"), rel.Digest) {
			return nil
		}
		return fmt.Errorf("publish release directory %s (it exists but is not a ready release?): %w", dest, err)
	}
	return nil
}
