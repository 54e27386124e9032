package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// envTree lays out a runtime_envs_dir with environments of pack "demo", of
// another pack, and a directory outside it, plus symlinks that lead out.
type envTree struct {
	outer, root, outside string
	legacy, ownedKey     string // demo's legacy dir and content-addressed env
	ownedKey2            string // demo's, marker with a trailing newline
	otherLegacy, otherKy string // another pack's
	recorded             string // a recorded env of demo outside the usual places
}

func newEnvTree(t *testing.T) envTree {
	t.Helper()
	outer := t.TempDir()
	e := envTree{outer: outer, root: filepath.Join(outer, "runtime_envs"), outside: filepath.Join(outer, "outside")}
	e.legacy = filepath.Join(e.root, "demo", "python")
	e.ownedKey = filepath.Join(e.root, "sha256", strings.Repeat("a", 64))
	e.ownedKey2 = filepath.Join(e.root, "sha256", strings.Repeat("c", 64))
	e.otherLegacy = filepath.Join(e.root, "other", "python")
	e.otherKy = filepath.Join(e.root, "sha256", strings.Repeat("b", 64))
	e.recorded = filepath.Join(e.root, "extra", "demo-python-3.12")
	for _, d := range []string{e.legacy, e.ownedKey, e.ownedKey2, e.otherLegacy, e.otherKy, e.recorded, e.outside, filepath.Join(e.root, "nested")} {
		mkdirAll(t, d)
		writeFile(t, filepath.Join(d, "keep.txt"), "x")
	}
	writeFile(t, filepath.Join(e.ownedKey, ".attune-pack-ref"), "demo")
	writeFile(t, filepath.Join(e.ownedKey2, ".attune-pack-ref"), "demo\n")
	writeFile(t, filepath.Join(e.otherKy, ".attune-pack-ref"), "other")
	writeFile(t, filepath.Join(e.outside, ".attune-pack-ref"), "demo") // lures a sha256/* symlink
	// A venv-style symlink inside an owned env must be removed as a link, never followed.
	symlink(t, e.outside, filepath.Join(e.ownedKey, "lib-link"))
	symlink(t, e.outside, filepath.Join(e.root, "escape"))
	symlink(t, e.outside, filepath.Join(e.root, "sha256", strings.Repeat("d", 64)))
	symlink(t, e.outside, filepath.Join(e.root, "nested", "link"))
	return e
}

func mkdirAll(t *testing.T, d string) {
	t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// hostileRecordedPaths are runtime_environment_paths a forged or buggy
// message could carry; none may delete anything outside runtime_envs_dir,
// nor a whole namespace inside it.
func hostileRecordedPaths(e envTree) []string {
	return []string{
		"../outside", "../outside/keep.txt", e.outside, "/", "/etc", "escape", "escape/keep.txt",
		"nested/link", "nested/link/keep.txt", "other/python/../../../outside", "sha256", ".", "", "..",
		"sha256/" + strings.Repeat("d", 64), e.root,
	}
}

// assertOutsideIntact fails unless everything not demo's is still there.
func assertOutsideIntact(t *testing.T, e envTree) {
	t.Helper()
	for _, p := range []string{filepath.Join(e.outside, "keep.txt"), filepath.Join(e.outside, ".attune-pack-ref"),
		e.otherLegacy, e.otherKy, filepath.Join(e.root, "escape"), filepath.Join(e.root, "nested", "link"),
		filepath.Join(e.root, "sha256", strings.Repeat("d", 64))} {
		if !exists(p) {
			t.Errorf("%s was deleted", p)
		}
	}
}

// TestPurgePackRuntimeEnvsHostilePaths: the pack's own environments (legacy,
// content-addressed by marker, a recorded one given relative and another
// absolute) are removed; ../, absolute paths outside, symlinks out and
// namespace roots are refused and nothing outside runtime_envs_dir goes.
func TestPurgePackRuntimeEnvsHostilePaths(t *testing.T) {
	e := newEnvTree(t)
	recorded := append(hostileRecordedPaths(e), "extra/demo-python-3.12", e.recorded)
	removed, refused, err := purgePackRuntimeEnvs(e.root, "demo", recorded, os.RemoveAll)
	if err != nil {
		t.Fatalf("purge: %v", err)
	}
	for _, p := range []string{filepath.Dir(e.legacy), e.ownedKey, e.ownedKey2, e.recorded} {
		if exists(p) {
			t.Errorf("%s not purged", p)
		}
	}
	if len(removed) != 4 {
		t.Errorf("removed %v, want 4 directories", removed)
	}
	assertOutsideIntact(t, e)
	why := map[string]string{}
	for _, r := range refused {
		why[r.path] = r.reason
	}
	for path, want := range map[string]string{
		e.outside: "outside runtime_envs_dir", "/etc": "outside runtime_envs_dir",
		filepath.Join(e.root, "escape"): "symlink", filepath.Join(e.root, "sha256"): "too broad",
		filepath.Join(e.root, "sha256", strings.Repeat("d", 64)): "symlink", filepath.Join(e.root, "nested", "link", "keep.txt"): "outside",
		e.root: "outside runtime_envs_dir", "": "empty",
	} {
		if !strings.Contains(why[path], want) {
			t.Errorf("%q refused with %q, want a reason containing %q (all: %v)", path, why[path], want, refused)
		}
	}
	if !exists(filepath.Join(e.root, "sha256")) {
		t.Error("the sha256 namespace was removed")
	}
}

// TestPurgePackRuntimeEnvsSymlinkedRoot: a runtime_envs_dir that is itself a
// symlink is refused as the reference does: nothing is removed.
func TestPurgePackRuntimeEnvsSymlinkedRoot(t *testing.T) {
	e := newEnvTree(t)
	link := filepath.Join(e.outer, "envs-link")
	symlink(t, e.root, link)
	removed, refused, err := purgePackRuntimeEnvs(link, "demo", nil, os.RemoveAll)
	if err != nil || len(removed) != 0 || len(refused) != 1 || !exists(e.legacy) || !exists(e.ownedKey) {
		t.Fatalf("purge via a symlinked root = %v, %v, %v; want one refusal and nothing removed", removed, refused, err)
	}
	if removed, refused, err := purgePackRuntimeEnvs(filepath.Join(e.outer, "missing"), "demo", []string{"/etc"}, os.RemoveAll); err != nil || removed != nil || refused != nil {
		t.Fatalf("missing root = %v, %v, %v; want nothing", removed, refused, err)
	}
}

// TestPurgePackRuntimeEnvsRemovalFailure: a directory of the pack that
// cannot be removed is an error naming it (the message is then requeued),
// and the other directories of the pack are still removed.
func TestPurgePackRuntimeEnvsRemovalFailure(t *testing.T) {
	e := newEnvTree(t)
	failing := func(p string) error {
		if p == e.ownedKey {
			return &os.PathError{Op: "unlinkat", Path: p, Err: errors.New("device or resource busy")}
		}
		return os.RemoveAll(p)
	}
	removed, _, err := purgePackRuntimeEnvs(e.root, "demo", nil, failing)
	if err == nil || !strings.Contains(err.Error(), e.ownedKey) {
		t.Fatalf("err = %v; want a removal failure naming %s", err, e.ownedKey)
	}
	if len(removed) != 2 || exists(e.legacy) || exists(e.ownedKey2) {
		t.Fatalf("removed %v; want the legacy dir and the other content-addressed env", removed)
	}
}

// recordingStopper is the packStopper of the purger tests: it records the
// packs it was asked to stop.
type recordingStopper struct {
	mu    sync.Mutex
	packs []string
	err   error
}

func (r *recordingStopper) stopPackAndWait(_ context.Context, ref string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.packs = append(r.packs, ref)
	return r.err
}

func (r *recordingStopper) stopped() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.packs)
}

// TestPackPurgerStaleAndLive runs against real PostgreSQL: while a pack of
// the ref exists again the message is stale (nothing stopped or purged);
// once it is gone the sensors are stopped and the environments purged with
// hostile recorded paths refused; a database that does not answer, or
// sensors that do not stop, are errors (nack with requeue).
func TestPackPurgerStaleAndLive(t *testing.T) {
	requireServices(t)
	db := newSeedDB(t, newTestDB(t, "current"))
	e := newEnvTree(t)
	stopper := &recordingStopper{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := newPackPurger(&Config{RuntimeEnvsDir: e.root}, pgPackLookup{db.pool}, stopper, 5*time.Second, log)
	db.pack("demo") // re-created after the deletion the message reports
	msg := packDeletedPayload{PackID: 999, PackRef: "demo", RuntimeEnvironmentPaths: hostileRecordedPaths(e)}
	if err := p.handle(t.Context(), msg); err != nil {
		t.Fatalf("stale PackDeleted: %v", err)
	}
	if got := stopper.stopped(); len(got) != 0 {
		t.Fatalf("stale PackDeleted stopped %v", got)
	}
	if !exists(e.legacy) || !exists(e.ownedKey) {
		t.Fatal("stale PackDeleted purged environments")
	}
	db.exec(`DELETE FROM pack WHERE ref = 'demo'`)
	if err := p.handle(t.Context(), msg); err != nil {
		t.Fatalf("PackDeleted: %v", err)
	}
	if got := stopper.stopped(); !slices.Equal(got, []string{"demo"}) {
		t.Fatalf("stopped %v, want [demo]", got)
	}
	if exists(filepath.Dir(e.legacy)) || exists(e.ownedKey) || exists(e.ownedKey2) {
		t.Fatal("environments of the deleted pack not purged")
	}
	assertOutsideIntact(t, e)

	stopper.err = context.DeadlineExceeded
	if err := p.handle(t.Context(), msg); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sensors not stopping: err %v, want it reported", err)
	}
	db.pool.Close()
	if err := p.handle(t.Context(), msg); err == nil || !strings.Contains(err.Error(), `look up pack "demo"`) {
		t.Fatalf("database closed: err %v, want the lookup failure", err)
	}
}

// TestManagerStopPackAndWait: the purge waits until the pack's processes
// have exited (not merely been told to), leaves other packs alone, and gives
// up with an error when its bound passes first.
func TestManagerStopPackAndWait(t *testing.T) {
	l := newFakeLauncher(t)
	l.stopDelay = 300 * time.Millisecond
	m, _ := newTestManager(t, l, 10)
	other := mgrSpec(3, 0, 1)
	other.PackRef, other.Ref = "other", "other.s3"
	m.converge(t.Context(), []sensorSpec{mgrSpec(1, 0, 1), mgrSpec(2, 0, 1), other})
	l.waitLaunch(t, 3)
	if err := m.stopPackAndWait(t.Context(), "pk"); err != nil {
		t.Fatalf("stopPackAndWait: %v", err)
	}
	if !l.liveProc(1).isDone() || !l.liveProc(2).isDone() {
		t.Fatal("stopPackAndWait returned while a process of the pack still ran")
	}
	if l.liveProc(3).isDone() {
		t.Fatal("a sensor of another pack was stopped")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := m.stopPackAndWait(ctx, "other"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v; want the bound reported while the process takes 300 ms to stop", err)
	}
}
