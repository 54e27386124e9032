package main

// runtimecache.go owns the newest generation's shared, content-addressed
// runtime environments (CONTRACT §6): {runtime_envs_dir}/sha256/{key},
// keyed exactly as the reference's crates/common/src/runtime_cache.rs so
// that an environment built by a Rust action worker is used as it is, and
// one built here is used by them. The setup steps themselves stay in
// runtimeenv.go; this file decides where they run and how the result is
// published: in a temporary sibling, marked ready, renamed into place.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const (
	// runtimeCacheFormatVersion is the reference's RUNTIME_CACHE_FORMAT_VERSION,
	// the first value hashed into every key.
	runtimeCacheFormatVersion = "1"
	// runtimeReadyMarker holds the key once an environment is complete;
	// a directory without it (or with another key) is never used.
	runtimeReadyMarker = ".attune-runtime-ready"
	// runtimePackRefMarker names the pack that uses the environment, so a
	// PackDeleted can find and purge it.
	runtimePackRefMarker = ".attune-pack-ref"
	// runtimeImageFormatEnv overrides the image format version hashed into
	// the key, as it does for the reference's workers.
	runtimeImageFormatEnv = "ATTUNE_WORKER_IMAGE_FORMAT_VERSION"
	// runtimeImageFormatDefault is what the reference hashes when the
	// variable is unset: its worker crate version, 0.6.0 in the release this
	// agent follows. Bump it with the reference, or set the variable.
	runtimeImageFormatDefault = "0.6.0"
	// runtimeCacheLockPoll is how often a waiter retries the build lock.
	runtimeCacheLockPoll = 50 * time.Millisecond
)

// ErrRuntimeCacheCorrupt means {runtime_envs_dir}/sha256/{key} exists but
// carries no valid ready marker: someone else's half-built or foreign
// directory, which must be neither used nor silently replaced.
var ErrRuntimeCacheCorrupt = errors.New("runtime cache destination exists without a valid ready marker")

// runtimeCacheKey derives the reference's RuntimeCacheKey: sha256 over the
// format version, release digest, dependency digest, runtime name, runtime
// version, platform and image format, each preceded by its byte length as
// a little-endian u64 (Rust's usize::to_le_bytes on 64-bit targets).
// Both digests must be lower-case sha256 hex, as the reference validates.
func runtimeCacheKey(releaseDigest, dependencyDigest, runtimeName, runtimeVersion, platform, imageFormat string) (string, error) {
	for _, d := range []struct{ label, v string }{{"release", releaseDigest}, {"dependency", dependencyDigest}} {
		if !launchIsSHA256Hex(d.v) {
			return "", fmt.Errorf("runtime cache %s digest %q must be lowercase SHA-256", d.label, d.v)
		}
	}
	h := sha256.New()
	var n [8]byte
	for _, v := range []string{runtimeCacheFormatVersion, releaseDigest, dependencyDigest, runtimeName, runtimeVersion, platform, imageFormat} {
		binary.LittleEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		h.Write([]byte(v))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// runtimeCachePlatform is the reference's "{OS}:{ARCH}:{libc}" with Rust's
// names (x86_64, aarch64). The Rust value is the libc its binary was built
// for; this static binary has none, so it reports the image's: musl when the
// musl loader is present, else gnu (the Debian-based worker images).
func runtimeCachePlatform() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "x86", "arm": "arm"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	libc := "gnu"
	if m, _ := filepath.Glob("/lib/ld-musl-*.so.1"); len(m) > 0 {
		libc = "musl"
	}
	return runtime.GOOS + ":" + arch + ":" + libc
}

// runtimeImageFormat is the image format version hashed into the key.
func runtimeImageFormat(environ []string) string {
	if v, ok := lookupLaunchEnv(environ, runtimeImageFormatEnv); ok {
		return v
	}
	return runtimeImageFormatDefault
}

// lookupLaunchEnv finds name in an os.Environ-form list (first wins).
func lookupLaunchEnv(environ []string, name string) (string, bool) {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// cachedRuntimeEnvDir computes the key of a released sensor's environment
// from the plan (pack dir, execution_config in force, selected version) and
// returns {runtime_envs_dir}/sha256/{key} and the key. The dependency
// digest is the sha256 of the manifest file, or of nothing when there is no
// dependencies section or the manifest cannot be read; the runtime name is
// lower-cased and the version is "default" when none was selected, as the
// reference's process runtime does.
func cachedRuntimeEnvDir(spec sensorSpec, plan launchPlan, set launchSettings) (dir, key string, err error) {
	var manifest []byte
	if dep := plan.exec.Dependencies; dep != nil && dep.ManifestFile != "" {
		manifest, _ = os.ReadFile(filepath.Join(plan.PackDir, dep.ManifestFile))
	}
	depSum := sha256.Sum256(manifest)
	version := plan.RuntimeVersion
	if version == "" {
		version = "default"
	}
	key, err = runtimeCacheKey(spec.Release.Digest, hex.EncodeToString(depSum[:]),
		strings.ToLower(spec.RuntimeName), version, runtimeCachePlatform(), runtimeImageFormat(set.Environ))
	if err != nil {
		return "", "", fmt.Errorf("sensor %q: %w", spec.Ref, err)
	}
	return filepath.Join(set.RuntimeEnvsDir, "sha256", key), key, nil
}

// interpreterConfig is the execution_config the interpreter is resolved
// from: a content-addressed environment that is not ready (absent, half
// built, another key's) must not lend its interpreter_path, so the system
// interpreter is used instead.
func (p *launchPlan) interpreterConfig() execConfig {
	cfg := p.exec
	if p.cacheKey != "" && cfg.Environment != nil && !runtimeCacheReady(p.EnvDir, p.cacheKey) {
		env := *cfg.Environment
		env.InterpreterPath = ""
		cfg.Environment = &env
	}
	return cfg
}

// runtimeCacheReady reports whether dir is a published environment of key.
func runtimeCacheReady(dir, key string) bool {
	b, err := os.ReadFile(filepath.Join(dir, runtimeReadyMarker))
	return err == nil && strings.TrimSpace(string(b)) == key
}

// prepareCachedRuntimeEnv makes sure plan.EnvDir ({runtime_envs_dir}/
// sha256/{key}) is a ready environment: reused when its marker holds the
// key; otherwise built by exactly one preparer across processes (an flock
// on a sibling lock file; others wait, then reuse), in a temporary sibling
// that is validated, marked and renamed into place. A half-built directory
// is never visible under the final name. Then .attune-pack-ref is written.
func prepareCachedRuntimeEnv(ctx context.Context, run setupRunner, spec sensorSpec, plan launchPlan, set launchSettings) error {
	env := plan.exec.Environment
	if env == nil || env.EnvType == "none" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, runtimeEnvSetupTimeout)
	defer cancel()
	dest, key := plan.EnvDir, plan.cacheKey
	if runtimeCacheReady(dest, key) {
		return writeRuntimePackRef(spec, dest)
	}
	unlock, err := lockRuntimeEnvDir(ctx, dest) // goroutines of this agent
	if err != nil {
		return fmt.Errorf("sensor %q: wait for runtime environment %s: %w", spec.Ref, dest, err)
	}
	defer unlock()
	parent := filepath.Dir(dest)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("sensor %q: runtime cache %s: %w", spec.Ref, parent, err)
	}
	release, err := flockRuntimeCache(ctx, filepath.Join(parent, "."+key+".lock")) // other processes
	if err != nil {
		return fmt.Errorf("sensor %q: wait for runtime environment %s: %w", spec.Ref, dest, err)
	}
	defer release()
	if runtimeCacheReady(dest, key) { // built by whoever held the lock before us
		return writeRuntimePackRef(spec, dest)
	}
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("sensor %q: %s: %w", spec.Ref, dest, ErrRuntimeCacheCorrupt)
	}
	tmp, err := runtimeCacheTempSibling(dest, key)
	if err != nil {
		return fmt.Errorf("sensor %q: runtime cache: %w", spec.Ref, err)
	}
	defer os.RemoveAll(tmp) // after a successful rename there is nothing left to remove
	if err := buildRuntimeEnvIn(ctx, run, spec, plan, set, tmp); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, runtimeReadyMarker), []byte(key), 0o644); err != nil {
		return fmt.Errorf("sensor %q: mark runtime environment ready: %w", spec.Ref, err)
	}
	if err := os.Rename(tmp, dest); err != nil && !runtimeCacheReady(dest, key) {
		return fmt.Errorf("sensor %q: publish runtime environment %s: %w", spec.Ref, dest, err)
	}
	return writeRuntimePackRef(spec, dest)
}

// buildRuntimeEnvIn runs runtimeenv.go's setup steps with {env_dir} = tmp
// and checks that the environment's interpreter_path exists there, the
// reference's validation before a candidate may be published.
func buildRuntimeEnvIn(ctx context.Context, run setupRunner, spec sensorSpec, plan launchPlan, set launchSettings, tmp string) error {
	p := plan
	p.EnvDir = tmp
	p.vars = maps.Clone(plan.vars)
	p.vars["env_dir"] = tmp
	if err := runRuntimeEnvSteps(ctx, run, spec, p, set); err != nil {
		return err
	}
	if ip := p.exec.Environment.InterpreterPath; ip != "" {
		path := expandLaunchTemplate(ip, p.vars)
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("sensor %q: runtime environment validation failed: interpreter %s is missing", spec.Ref, path)
		}
	}
	return nil
}

// runtimeCacheTempSibling creates the reference's temporary sibling
// ".{key}.{random}.tmp" next to dest (same filesystem, so rename is atomic).
func runtimeCacheTempSibling(dest, key string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tmp := filepath.Join(filepath.Dir(dest), "."+key+"."+hex.EncodeToString(b[:])+".tmp")
	return tmp, os.Mkdir(tmp, 0o755)
}

// writeRuntimePackRef records the pack ref in a ready environment, unless
// it already says so (a shared environment is read-mostly).
func writeRuntimePackRef(spec sensorSpec, dir string) error {
	p := filepath.Join(dir, runtimePackRefMarker)
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == spec.PackRef {
		return nil
	}
	if err := os.WriteFile(p, []byte(spec.PackRef), 0o644); err != nil {
		return fmt.Errorf("sensor %q: write runtime cache pack marker at %s: %w", spec.Ref, dir, err)
	}
	return nil
}

// flockRuntimeCache takes an exclusive flock on path, polling so that the
// wait ends with ctx. The lock dies with its holder's process, so a killed
// builder never blocks the next one; its temporary sibling stays behind
// under a name no reader looks at.
func flockRuntimeCache(ctx context.Context, path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing the last descriptor unlocks
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(runtimeCacheLockPoll):
		}
	}
}
