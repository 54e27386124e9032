package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testTarEntry is one entry of a test archive; Type 0 means a regular file.
type testTarEntry struct {
	Name     string
	Body     string
	Type     byte
	Linkname string
	Mode     int64
	Size     int64 // declared size when non-zero and different from len(Body) (lying headers)
}

// testPackArchive builds a .tar.gz from entries, exactly as written (no
// cleaning of names), so hostile archives can be made.
func testPackArchive(t testing.TB, entries ...testTarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.Name, Typeflag: typ, Linkname: e.Linkname, Mode: mode, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %q: %v", e.Name, err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatalf("tar body %q: %v", e.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// goodTestPack is a small valid release archive of pack "demo".
func goodTestPack(t testing.TB) []byte {
	return testPackArchive(t,
		testTarEntry{Name: "demo/", Type: tar.TypeDir},
		testTarEntry{Name: "demo/pack.yaml", Body: "ref: demo\nversion: 1.0.0\n"},
		testTarEntry{Name: "demo/sensors/", Type: tar.TypeDir},
		testTarEntry{Name: "demo/sensors/tick.sh", Body: "#!/bin/sh\necho tick\n", Mode: 0o755},
		testTarEntry{Name: "demo/sensors/lib/util.py", Body: "X = 1\n"},
	)
}

// TestPackArchiveExtractsGoodArchive unpacks a valid archive: files, nested
// directories without their own entries, and the executable bit kept.
func TestPackArchiveExtractsGoodArchive(t *testing.T) {
	dest := t.TempDir()
	if err := extractPackArchive(bytes.NewReader(goodTestPack(t)), dest, "demo", defaultPackArchiveLimits()); err != nil {
		t.Fatalf("extract: %v", err)
	}
	for name, want := range map[string]string{
		"demo/pack.yaml": "ref: demo\nversion: 1.0.0\n", "demo/sensors/tick.sh": "#!/bin/sh\necho tick\n",
		"demo/sensors/lib/util.py": "X = 1\n",
	} {
		got, err := os.ReadFile(filepath.Join(dest, name))
		if err != nil || string(got) != want {
			t.Fatalf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	st, _ := os.Stat(filepath.Join(dest, "demo/sensors/tick.sh"))
	if st.Mode().Perm() != 0o755 {
		t.Fatalf("tick.sh mode %v, want 0755", st.Mode().Perm())
	}
	st, _ = os.Stat(filepath.Join(dest, "demo/pack.yaml"))
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("pack.yaml mode %v, want 0644", st.Mode().Perm())
	}
}

// TestPackArchiveRefusesHostileArchives feeds archives that try to write
// outside the staging directory, smuggle links or special files, lie about
// sizes or lack pack.yaml: each is refused with ErrPackArchiveRejected and
// nothing appears outside the staging directory.
func TestPackArchiveRefusesHostileArchives(t *testing.T) {
	yaml := testTarEntry{Name: "demo/pack.yaml", Body: "ref: demo\n"}
	small := packArchiveLimits{MaxEntries: 4, MaxEntryBytes: 64, MaxTotalBytes: 100}
	cases := map[string]struct {
		archive []byte
		limits  packArchiveLimits
		want    string
	}{
		"dot-dot escape":       {archive: testPackArchive(t, yaml, testTarEntry{Name: "demo/../../escaped", Body: "x"}), want: `component ".."`},
		"leading dot-dot":      {archive: testPackArchive(t, yaml, testTarEntry{Name: "../escaped", Body: "x"}), want: `component ".."`},
		"absolute path":        {archive: testPackArchive(t, yaml, testTarEntry{Name: "/tmp/escaped", Body: "x"}), want: "absolute path"},
		"outside the pack dir": {archive: testPackArchive(t, yaml, testTarEntry{Name: "other/escaped", Body: "x"}), want: "does not start with the pack ref"},
		"dot prefix":           {archive: testPackArchive(t, testTarEntry{Name: "./demo/pack.yaml", Body: "x"}), want: `component "."`},
		"symlink out":          {archive: testPackArchive(t, yaml, testTarEntry{Name: "demo/link", Type: tar.TypeSymlink, Linkname: "/etc"}), want: "forbidden type"},
		"symlink then write":   {archive: testPackArchive(t, testTarEntry{Name: "demo", Type: tar.TypeSymlink, Linkname: ".."}, testTarEntry{Name: "demo/pack.yaml", Body: "x"}), want: "forbidden type"},
		"hard link":            {archive: testPackArchive(t, yaml, testTarEntry{Name: "demo/hard", Type: tar.TypeLink, Linkname: "demo/pack.yaml"}), want: "forbidden type"},
		"device":               {archive: testPackArchive(t, yaml, testTarEntry{Name: "demo/dev", Type: tar.TypeChar}), want: "forbidden type"},
		"fifo":                 {archive: testPackArchive(t, yaml, testTarEntry{Name: "demo/fifo", Type: tar.TypeFifo}), want: "forbidden type"},
		"duplicate entry":      {archive: testPackArchive(t, yaml, yaml), want: "appears twice"},
		"no pack.yaml":         {archive: testPackArchive(t, testTarEntry{Name: "demo/sensors/x.sh", Body: "x"}), want: "no demo/pack.yaml"},
		"pack.yaml a dir":      {archive: testPackArchive(t, testTarEntry{Name: "demo/pack.yaml/", Type: tar.TypeDir}), want: "no demo/pack.yaml"},
		"too many entries":     {archive: testPackArchive(t, yaml, testTarEntry{Name: "demo/a"}, testTarEntry{Name: "demo/b"}, testTarEntry{Name: "demo/c"}, testTarEntry{Name: "demo/d"}), limits: small, want: "more than 4 entries"},
		"entry too big":        {archive: testPackArchive(t, yaml, testTarEntry{Name: "demo/big", Body: strings.Repeat("x", 65)}), limits: small, want: "entry limit"},
		"total too big":        {archive: testPackArchive(t, yaml, testTarEntry{Name: "demo/a", Body: strings.Repeat("x", 60)}, testTarEntry{Name: "demo/b", Body: strings.Repeat("x", 60)}), limits: small, want: "bytes once unpacked"},
		"not gzip":             {archive: []byte("this is not an archive"), want: "not a gzip stream"},
		"truncated":            {archive: goodTestPack(t)[:60], want: "pack archive rejected"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			outer := t.TempDir()
			dest := filepath.Join(outer, "stage")
			if err := os.Mkdir(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			lim := tc.limits
			if lim.MaxEntries == 0 {
				lim = defaultPackArchiveLimits()
			}
			err := extractPackArchive(bytes.NewReader(tc.archive), dest, "demo", lim)
			if !errors.Is(err, ErrPackArchiveRejected) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrPackArchiveRejected mentioning %q", err, tc.want)
			}
			entries, _ := os.ReadDir(outer)
			if len(entries) != 1 || entries[0].Name() != "stage" {
				t.Fatalf("something was written beside the staging directory: %v", entries)
			}
		})
	}
}
