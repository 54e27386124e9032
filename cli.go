package main

import (
	"context"
	"fmt"
	"io"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "0.0.0-dev"

// Exit codes of the agent process.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// run is the whole program behind main; it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "not implemented")
	return exitFailure
}
