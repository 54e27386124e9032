// Command floor is the size baseline of benchmark item 1: a throw-away
// program that links the same modules as the agent (the pgx pool, amqp091,
// the net/http client, yaml and slog) and does nothing. Built with the
// agent's own flags, its size is the floor no agent with those dependencies
// can go under, so "agent size / floor size" is what the agent's own code and
// its use of the standard library cost.
//
// A program that only imported the modules would be no floor: the linker
// drops every function nothing calls, and it would come out a fraction of
// the size any real client of those modules has. So each module's entry
// points that the agent uses are called, on a path the linker cannot prove
// dead (it depends on an environment variable) but that never runs: without
// FLOOR_EXERCISE=1 the program exits at once.
//
// Each module's use sits in its own file behind a build tag (floor_no_pgx,
// floor_no_amqp, floor_no_http, floor_no_yaml, floor_no_slog), so the
// harness can build the floor without one module and report what each one
// adds to the size.
package main

import (
	"context"
	"fmt"
	"os"
)

// floorExercise is one module's use; the files register theirs in init.
type floorExercise struct {
	module string
	run    func(ctx context.Context) error
}

var floorExercises []floorExercise

func main() {
	if os.Getenv("FLOOR_EXERCISE") != "1" {
		return
	}
	for _, e := range floorExercises {
		if err := e.run(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "floor: %s: %v\n", e.module, err)
			os.Exit(1)
		}
	}
}
