// Command attune-sensor-agent is the injected sensor agent of Attune: it detects
// the interpreters of the image it was copied into, registers as a sensor worker,
// and launches and supervises the pack sensors that should run there.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
