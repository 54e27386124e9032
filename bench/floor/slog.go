//go:build !floor_no_slog

package main

import (
	"context"
	"log/slog"
	"os"
)

func init() { floorExercises = append(floorExercises, floorExercise{"slog", exerciseFloorSlog}) }

// exerciseFloorSlog logs through both handlers the agent can be configured with.
func exerciseFloorSlog(context.Context) error {
	slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).Info("floor", "step", 1)
	slog.New(slog.NewTextHandler(os.Stderr, nil)).Info("floor", "step", 2)
	return nil
}
