package main

// release.go publishes the bench pack as a pack release, the way Attune lays
// releases out on the newest generation (CONTRACT §6, §12): pack.tar.gz and
// the unpacked pack under {packs}/.releases/sha256/{digest}/, a pack_release
// row and the pack's active_release. On that generation the agent runs a
// sensor only under a lease, and a lease pins the pack's active release, so
// without one no benchmark sensor would ever start.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
)

// benchRelease is the published archive of the bench pack.
type benchRelease struct {
	Digest string
	Size   int
}

// publishBenchRelease writes pack.yaml into packs/benchpack, archives the pack
// (without marks/, which the sensors fill at run time), and lays out the
// release directory. The unpacked tree is a symlink to packs/benchpack, so
// the sensors' marks land in the one marks directory the harness polls.
func publishBenchRelease(packs string) (benchRelease, error) {
	src := filepath.Join(packs, "benchpack")
	if err := os.WriteFile(filepath.Join(src, "pack.yaml"), []byte("ref: benchpack\nversion: 1.0.0\n"), 0o644); err != nil {
		return benchRelease{}, err
	}
	archive, err := tarGzPack(src)
	if err != nil {
		return benchRelease{}, fmt.Errorf("archive the bench pack: %w", err)
	}
	sum := sha256.Sum256(archive)
	rel := benchRelease{Digest: hex.EncodeToString(sum[:]), Size: len(archive)}
	dir := filepath.Join(packs, ".releases", "sha256", rel.Digest)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return benchRelease{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "pack.tar.gz"), archive, 0o644); err != nil {
		return benchRelease{}, err
	}
	if err := os.Symlink(src, filepath.Join(dir, "pack")); err != nil && !os.IsExist(err) {
		return benchRelease{}, err
	}
	return rel, nil
}

// insert records the release for pack benchpack of one database and makes it
// the active one.
func (r benchRelease) insert(ctx context.Context, c *pgx.Conn) error {
	rel := filepath.Join(".releases", "sha256", r.Digest)
	var id int64
	err := c.QueryRow(ctx, `INSERT INTO attune.pack_release (pack, pack_ref, version, digest, archive_path, content_path, archive_size, manifest)
SELECT id, ref, '1.0.0', $1, $2, $3, $4, '{}'::jsonb FROM attune.pack WHERE ref = 'benchpack' RETURNING id`,
		r.Digest, filepath.Join(rel, "pack.tar.gz"), filepath.Join(rel, "pack"), r.Size).Scan(&id)
	if err != nil {
		return fmt.Errorf("insert pack_release: %w", err)
	}
	if _, err := c.Exec(ctx, `UPDATE attune.pack SET active_release = $1 WHERE ref = 'benchpack'`, id); err != nil {
		return fmt.Errorf("activate pack_release: %w", err)
	}
	return nil
}

// tarGzPack archives dir's regular files and directories, marks/ left out.
func tarGzPack(dir string) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		name, _ := filepath.Rel(dir, p)
		if name == "marks" {
			return filepath.SkipDir
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
		hdr.Name = name
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
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
	return buf.Bytes(), err
}
