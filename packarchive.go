package main

// packarchive.go owns the safe unpacking of a pack release archive
// (pack.tar.gz) downloaded from the API: nothing in it may write outside the
// staging directory it is unpacked into, however the archive was made.

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Pack archive bounds: the reference's PackUploadConfig defaults (100 MiB
// extracted, 10 000 entries, 50 MiB per entry), which its API transport also
// uses as the download limit. An archive the API accepted never exceeds them.
const (
	packArchiveMaxBytes      int64 = 100 << 20
	packArchiveMaxEntries          = 10_000
	packArchiveMaxEntryBytes int64 = 50 << 20
)

// ErrPackArchiveRejected marks an archive that is refused as it is: bad
// digest, not gzip/tar, truncated, an entry that would escape, a link, or
// over a bound. Retrying the same bytes cannot succeed.
var ErrPackArchiveRejected = errors.New("pack archive rejected")

// packArchiveLimits bounds one extraction; tests shrink them.
type packArchiveLimits struct {
	MaxEntries    int
	MaxEntryBytes int64
	MaxTotalBytes int64
}

func defaultPackArchiveLimits() packArchiveLimits {
	return packArchiveLimits{MaxEntries: packArchiveMaxEntries, MaxEntryBytes: packArchiveMaxEntryBytes, MaxTotalBytes: packArchiveMaxBytes}
}

// extractPackArchive unpacks a gzip'd tar whose entries all live under
// "{packRef}/" into dest, an existing empty directory, and requires
// {packRef}/pack.yaml. As the reference: only regular files and directories
// (no symlinks, hard links, devices or FIFOs), every path component a plain
// name, files created exclusively (a duplicate entry fails rather than
// overwriting). Beyond the reference, the executable bits of a file's mode
// are kept, so native and shebang sensors stay runnable; no other mode bit is.
// On error dest may hold a partial tree: the caller owns and removes it.
func extractPackArchive(r io.Reader, dest, packRef string, lim packArchiveLimits) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("%w: not a gzip stream: %w", ErrPackArchiveRejected, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	entries := 0
	var total int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: reading tar entry %d: %w", ErrPackArchiveRejected, entries+1, err)
		}
		entries++
		if entries > lim.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrPackArchiveRejected, lim.MaxEntries)
		}
		rel, err := packArchiveEntryPath(hdr.Name, packRef)
		if err != nil {
			return err
		}
		target := filepath.Join(dest, rel)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("create directory %q from pack archive: %w", hdr.Name, err)
			}
		case tar.TypeReg, tar.TypeRegA: // TypeRegA: what old tar writers emit for files
			if hdr.Size > lim.MaxEntryBytes {
				return fmt.Errorf("%w: entry %q is %d bytes, over the %d-byte entry limit", ErrPackArchiveRejected, hdr.Name, hdr.Size, lim.MaxEntryBytes)
			}
			n, err := writePackArchiveFile(tr, target, hdr, lim.MaxEntryBytes)
			if err != nil {
				return err
			}
			if total += n; total > lim.MaxTotalBytes {
				return fmt.Errorf("%w: more than %d bytes once unpacked", ErrPackArchiveRejected, lim.MaxTotalBytes)
			}
		default:
			return fmt.Errorf("%w: entry %q has forbidden type %q (only files and directories are allowed)", ErrPackArchiveRejected, hdr.Name, string(hdr.Typeflag))
		}
	}
	// Read the gzip stream to its end so its CRC and length trailer are
	// checked: a tar end marker can come before a truncated or corrupt tail.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return fmt.Errorf("%w: gzip stream after the tar end: %w", ErrPackArchiveRejected, err)
	}
	if st, err := os.Lstat(filepath.Join(dest, packRef, "pack.yaml")); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%w: no %s/pack.yaml at the pack root", ErrPackArchiveRejected, packRef)
	}
	return nil
}

// packArchiveEntryPath validates one entry name and returns it as a relative
// path: not absolute, every component a plain name (no "", ".", ".."), the
// first one the pack ref. A trailing "/" (directory entries) is allowed.
func packArchiveEntryPath(name, packRef string) (string, error) {
	trimmed := strings.TrimSuffix(name, "/")
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: entry %q is not confined to the %q directory: %s", ErrPackArchiveRejected, name, packRef, why)
	}
	switch {
	case trimmed == "":
		return bad("empty name")
	case strings.HasPrefix(trimmed, "/"):
		return bad("absolute path")
	case strings.ContainsAny(trimmed, "\x00\\"):
		return bad("NUL or backslash in the name")
	}
	parts := strings.Split(trimmed, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return bad("component " + fmt.Sprintf("%q", p))
		}
	}
	if parts[0] != packRef {
		return bad("does not start with the pack ref")
	}
	return filepath.Join(parts...), nil
}

// writePackArchiveFile creates target exclusively and copies the entry into
// it, reading at most max+1 bytes so a lying header cannot fill the disk.
func writePackArchiveFile(r io.Reader, target string, hdr *tar.Header, max int64) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return 0, fmt.Errorf("create directory for %q from pack archive: %w", hdr.Name, err)
	}
	mode := os.FileMode(0o644)
	if hdr.Mode&0o111 != 0 {
		mode = 0o755
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return 0, fmt.Errorf("%w: entry %q appears twice", ErrPackArchiveRejected, hdr.Name)
		}
		return 0, fmt.Errorf("create %q from pack archive: %w", hdr.Name, err)
	}
	n, err := io.Copy(f, io.LimitReader(r, max+1))
	if cerr := f.Close(); err == nil && cerr != nil {
		return n, fmt.Errorf("write %q from pack archive: %w", hdr.Name, cerr)
	}
	if err != nil {
		return n, fmt.Errorf("%w: entry %q: %w", ErrPackArchiveRejected, hdr.Name, err)
	}
	if n > max {
		return n, fmt.Errorf("%w: entry %q is over the %d-byte entry limit", ErrPackArchiveRejected, hdr.Name, max)
	}
	return n, nil
}
