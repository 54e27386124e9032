package main

// packpurge.go owns what a PackDeleted message does beyond prompting a
// reconcile pass (CONTRACT §6, §9): stop the pack's sensors and remove the
// runtime environments it leaves on the shared volume, never anything
// outside runtime_envs_dir whatever the message says.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// runtimeEnvPackRefMarker is the file inside a content-addressed runtime
// environment ({runtime_envs_dir}/sha256/{key}) that names the pack owning
// it (crates/common/src/runtime_cache.rs PACK_REF_MARKER).
const runtimeEnvPackRefMarker = ".attune-pack-ref"

// packPurgeStopSlack is added to the per-sensor stop grace to bound the wait
// for a deleted pack's sensors: SIGTERM, the grace, SIGKILL and the reap.
const packPurgeStopSlack = 5 * time.Second

// packLookupTimeout bounds the stale check: the consumer waits for it, and a
// database that stopped answering must not hold every later message.
const packLookupTimeout = 5 * time.Second

// packLookup answers whether a pack of this ref exists now.
type packLookup interface {
	packExists(ctx context.Context, ref string) (bool, error)
}

// packStopper stops a pack's sensors and waits until their processes are gone.
type packStopper interface {
	stopPackAndWait(ctx context.Context, ref string) error
}

// pgPackLookup reads the pack table.
type pgPackLookup struct{ pool *pgxpool.Pool }

func (l pgPackLookup) packExists(ctx context.Context, ref string) (bool, error) {
	var ok bool
	if err := l.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pack WHERE ref = $1)`, ref).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up pack %q: %w", ref, err)
	}
	return ok, nil
}

// packPurger handles PackDeleted. Its error means "nack and requeue": the
// database could not say whether the pack is gone, the sensors did not stop
// in time, or a directory that is the pack's could not be removed; all may
// succeed on redelivery.
type packPurger struct {
	root     string // runtime_envs_dir
	packs    packLookup
	sensors  packStopper
	stopWait time.Duration // bound on waiting for the pack's sensors to exit
	log      *slog.Logger
	remove   func(string) error // os.RemoveAll; tests make it fail
}

func newPackPurger(cfg *Config, packs packLookup, sensors packStopper, stopWait time.Duration, log *slog.Logger) *packPurger {
	return &packPurger{root: cfg.RuntimeEnvsDir, packs: packs, sensors: sensors, stopWait: stopWait, log: log, remove: os.RemoveAll}
}

// handle is the reference's PackDeleted handling: a message about a pack
// that exists again (deleted and re-created before this replica read the
// message) is stale and changes nothing; otherwise the pack's sensors are
// stopped first, then its environments are purged.
func (p *packPurger) handle(ctx context.Context, pd packDeletedPayload) error {
	log := p.log.With("pack", pd.PackRef, "pack_id", pd.PackID)
	lctx, cancel := context.WithTimeout(ctx, packLookupTimeout)
	exists, err := p.packs.packExists(lctx, pd.PackRef)
	cancel()
	if err != nil {
		return err
	}
	if exists {
		log.Info("PackDeleted is stale: the pack exists again; nothing stopped or purged")
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, p.stopWait)
	err = p.sensors.stopPackAndWait(sctx, pd.PackRef)
	cancel()
	if err != nil {
		return fmt.Errorf("stop sensors of deleted pack %q: %w", pd.PackRef, err)
	}
	if !launchPackRefPattern.MatchString(pd.PackRef) {
		log.Warn("deleted pack ref is not a valid pack ref: no runtime environment purged")
		return nil
	}
	removed, refused, err := purgePackRuntimeEnvs(p.root, pd.PackRef, pd.RuntimeEnvironmentPaths, p.remove)
	for _, r := range refused {
		log.Warn("runtime environment path not purged", "path", r.path, "reason", r.reason)
	}
	if len(removed) > 0 {
		log.Info("runtime environments of deleted pack purged", "removed", removed)
	}
	return err
}

// refusedPath is a purge candidate left alone, and why.
type refusedPath struct{ path, reason string }

// purgePackRuntimeEnvs removes the runtime environments of a deleted pack:
// the legacy {root}/{ref}, each recorded path (relative to root, as the API
// records them, or absolute), and every {root}/sha256/* whose
// .attune-pack-ref holds ref. A candidate is removed only when, after every
// symlink is resolved, it lies strictly inside root and is not itself a
// symlink; recorded and content-addressed ones must also be at least two
// levels deep, so a message cannot purge a whole namespace such as sha256/.
// The reference refuses the whole message when one path fails these checks;
// here that path alone is refused (a redelivery would carry it again, so
// refusing the message would only loop) and the pack's own environments are
// still removed. remove is os.RemoveAll (it deletes symlinks inside a tree,
// never what they point to); the error reports removals that failed.
func purgePackRuntimeEnvs(root, ref string, recorded []string, remove func(string) error) (removed []string, refused []refusedPath, err error) {
	st, err := os.Lstat(root)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("runtime environment root %s: %w", root, err)
	case st.Mode()&os.ModeSymlink != 0:
		return nil, []refusedPath{{root, "runtime_envs_dir itself is a symlink"}}, nil
	}
	canonRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve runtime environment root %s: %w", root, err)
	}
	type candidate struct {
		path   string
		direct bool // {root}/{ref}: one level deep is enough
	}
	cands := []candidate{{filepath.Join(root, ref), true}}
	for _, p := range recorded {
		if p == "" {
			refused = append(refused, refusedPath{p, "empty path"})
			continue
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(root, p)
		}
		cands = append(cands, candidate{p, false})
	}
	if entries, err := os.ReadDir(filepath.Join(root, "sha256")); err == nil {
		for _, e := range entries {
			dir := filepath.Join(root, "sha256", e.Name())
			if b, err := os.ReadFile(filepath.Join(dir, runtimeEnvPackRefMarker)); err == nil && strings.TrimSpace(string(b)) == ref {
				cands = append(cands, candidate{dir, false})
			}
		}
	}
	var targets []string
	for _, c := range cands {
		target, why := purgeTarget(canonRoot, c.path, c.direct)
		switch {
		case why != "":
			refused = append(refused, refusedPath{c.path, why})
		case target != "" && !slices.Contains(targets, target):
			targets = append(targets, target)
		}
	}
	// Deepest first, so a nested recorded path goes before its parent.
	slices.SortFunc(targets, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var errs []error
	for _, t := range targets {
		if err := remove(t); err != nil {
			errs = append(errs, fmt.Errorf("remove runtime environment %s: %w", t, err))
			continue
		}
		removed = append(removed, t)
	}
	return removed, refused, errors.Join(errs...)
}

// purgeTarget resolves one candidate: ("", "") when it does not exist, the
// canonical path when it may be removed, else a reason to refuse it.
func purgeTarget(canonRoot, path string, direct bool) (target, refuse string) {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", ""
	}
	if err != nil {
		return "", err.Error()
	}
	if st.Mode()&os.ModeSymlink != 0 {
		return "", "is a symlink"
	}
	canon, err := filepath.EvalSymlinks(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", ""
	}
	if err != nil {
		return "", err.Error()
	}
	rel, err := filepath.Rel(canonRoot, canon)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", "outside runtime_envs_dir"
	}
	if !direct && len(strings.Split(rel, "/")) < 2 {
		return "", "too broad to purge (a direct child of runtime_envs_dir)"
	}
	return canon, ""
}

// stopPackAndWait stops every sensor of the pack and waits until their
// supervisors have ended (processes reaped), so environments are not removed
// under a running interpreter. It reads manager state under the manager's
// lock and changes nothing but through stopPack.
func (m *sensorManager) stopPackAndWait(ctx context.Context, ref string) error {
	m.stopPack(ref)
	m.mu.Lock()
	var pending []chan struct{}
	for ms := range m.stopping {
		if ms.sup.spec.PackRef == ref {
			pending = append(pending, ms.done)
		}
	}
	m.mu.Unlock()
	for _, done := range pending {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("%d sensor(s) still stopping: %w", len(pending), ctx.Err())
		}
	}
	return nil
}
