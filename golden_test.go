package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// updateGolden rewrites the golden files instead of comparing: go test -run X -update.
var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// assertGolden compares got byte for byte with testdata/<test name>.golden
// (subtest slashes become underscores), so CLI output changes show up in review.
func assertGolden(t *testing.T, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", strings.ReplaceAll(t.Name(), "/", "_")+".golden")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		wl, gl := strings.SplitAfter(string(want), "\n"), strings.SplitAfter(string(got), "\n")
		i := 0
		for i < len(wl) && i < len(gl) && wl[i] == gl[i] {
			i++
		}
		t.Errorf("%s: line %d differs (-want +got, rerun with -update to accept):\n-%q\n+%q\ngot:\n%s",
			path, i+1, strings.Join(wl[i:min(i+1, len(wl))], ""), strings.Join(gl[i:min(i+1, len(gl))], ""), got)
	}
}
