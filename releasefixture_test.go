package main

// releasefixture_test.go publishes pack releases the way Attune lays them out
// for the newest generation (CONTRACT §6, §12): pack.tar.gz and the unpacked
// pack under {packs}/.releases/sha256/{digest}/, a pack_release row and the
// pack's active_release, so leased sensors have a release to pin.

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// publishRelease makes the directory packsDir/ref (its content now) release
// version of pack packID and activates it. The unpacked tree is a symlink to
// packsDir/ref, so scripts a test writes later are part of it.
func publishRelease(t testing.TB, db *seedDB, packsDir, ref string, packID int64, version string) packRelease {
	t.Helper()
	src := filepath.Join(packsDir, ref)
	if _, err := os.Stat(filepath.Join(src, "pack.yaml")); err != nil {
		if err := os.WriteFile(filepath.Join(src, "pack.yaml"), []byte("ref: "+ref+"\nversion: "+version+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	archive := tarGzDir(t, src)
	sum := sha256.Sum256(archive)
	digest := hex.EncodeToString(sum[:])
	relDir := filepath.Join(packsDir, ".releases", "sha256", digest)
	if err := os.MkdirAll(relDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(relDir, "pack.tar.gz"), archive, 0o644); err != nil {
		t.Fatal(err)
	}
	// Relative, so a copy of the packs directory (cp -a) keeps a working release.
	if err := os.Symlink(filepath.Join("..", "..", "..", ref), filepath.Join(relDir, "pack")); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	id := db.id(`INSERT INTO pack_release (pack, pack_ref, version, digest, archive_path, content_path, archive_size, manifest)
VALUES ($1, $2, $3, $4, $5, $6, $7, '{}'::jsonb) RETURNING id`, packID, ref, version, digest,
		filepath.Join(".releases", "sha256", digest, "pack.tar.gz"), filepath.Join(".releases", "sha256", digest, "pack"), len(archive))
	db.exec(`UPDATE pack SET active_release = $1 WHERE id = $2`, id, packID)
	return packRelease{ID: id, Digest: digest}
}

// tarGzDir archives dir (regular files and directories, paths relative to it).
func tarGzDir(t testing.TB, dir string) []byte {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		gz := gzip.NewWriter(pw)
		tw := tar.NewWriter(gz)
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == dir {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if !info.Mode().IsRegular() && !info.IsDir() {
				return nil
			}
			hdr, err := tar.FileInfoHeader(info, "")
			if err != nil {
				return err
			}
			hdr.Name, _ = filepath.Rel(dir, p)
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if info.Mode().IsRegular() {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = io.Copy(tw, f)
				return err
			}
			return nil
		})
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = gz.Close()
		}
		pw.CloseWithError(err)
	}()
	b, err := io.ReadAll(pr)
	if err != nil {
		t.Fatalf("archive %s: %v", dir, err)
	}
	return b
}

// runtimeEnvDirOf is where a sensor of pack ref has its runtime environment
// under base/runtime_envs: {ref}/{name} on the legacy generation, the
// content-addressed sha256/{key} whose .attune-pack-ref is ref on the newest.
func runtimeEnvDirOf(t testing.TB, gen, base, ref, name string) string {
	t.Helper()
	if gen == "legacy" {
		return filepath.Join(base, "runtime_envs", ref, name)
	}
	dirs, _ := filepath.Glob(filepath.Join(base, "runtime_envs", "sha256", "*"))
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, runtimePackRefMarker)); err == nil && strings.TrimSpace(string(b)) == ref {
			return d
		}
	}
	t.Fatalf("no shared runtime environment of pack %s under %s/runtime_envs/sha256", ref, base)
	return ""
}
