//go:build !floor_no_http

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"
)

func init() { floorExercises = append(floorExercises, floorExercise{"http", exerciseFloorHTTP}) }

// exerciseFloorHTTP uses the HTTP client as the agent's token client does: a
// POST with a bearer header and a JSON answer.
func exerciseFloorHTTP(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, os.Getenv("FLOOR_API_URL"), nil)
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+os.Getenv("FLOOR_TOKEN"))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("do: %w", err)
	}
	defer resp.Body.Close()
	var token map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&token); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}
