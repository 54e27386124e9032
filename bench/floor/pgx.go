//go:build !floor_no_pgx

package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

func init() { floorExercises = append(floorExercises, floorExercise{"pgx", exerciseFloorPgx}) }

// exerciseFloorPgx uses the pool as the agent does: parse, after-connect
// session settings, QueryRow, Query with an array argument and JSON scan, Exec.
func exerciseFloorPgx(ctx context.Context) error {
	pc, err := pgxpool.ParseConfig(os.Getenv("FLOOR_DATABASE_URL"))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SELECT set_config('search_path', $1, false)", "attune, public")
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("pool: %w", err)
	}
	defer pool.Close()
	var id int64
	err = pool.QueryRow(ctx, "SELECT id FROM worker WHERE name = $1", "floor").Scan(&id)
	var pgErr *pgconn.PgError
	if err != nil && !errors.Is(err, pgx.ErrNoRows) && !errors.As(err, &pgErr) {
		return fmt.Errorf("query: %w", err)
	}
	rows, err := pool.Query(ctx, "SELECT id, ref, config FROM sensor WHERE id = ANY($1)", []int64{id})
	if err != nil {
		return fmt.Errorf("rows: %w", err)
	}
	for rows.Next() {
		var ref string
		var conf map[string]any
		if err := rows.Scan(&id, &ref, &conf); err != nil {
			return fmt.Errorf("scan: %w", err)
		}
	}
	rows.Close()
	if _, err := pool.Exec(ctx, "UPDATE worker SET last_heartbeat = now() WHERE id = $1", id); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return nil
}
