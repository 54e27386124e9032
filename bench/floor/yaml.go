//go:build !floor_no_yaml

package main

import (
	"context"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

func init() { floorExercises = append(floorExercises, floorExercise{"yaml", exerciseFloorYAML}) }

// exerciseFloorYAML decodes YAML into a map and into a node tree, as the
// config loader does.
func exerciseFloorYAML(context.Context) error {
	var cfg map[string]any
	var node yaml.Node
	raw := []byte(os.Getenv("FLOOR_YAML"))
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("map: %w", err)
	}
	if err := yaml.Unmarshal(raw, &node); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}
