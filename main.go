// Command attune-sensor-agent is the injected sensor agent of Attune: it detects
// the interpreters of the image it was copied into, registers as a sensor worker,
// and launches and supervises the pack sensors that should run there.
package main

import (
	"context"
	"os"
)

func main() {
	tuneMemory(os.LookupEnv) // memtune.go: GOGC 50 unless the user set GOGC
	ctx, stop := shutdownSignals(context.Background())
	defer stop()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
