package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrWorkerRoleClash means the configured worker name belongs to a worker row
// of another role (an action worker): the agent must not take it over, and
// the operator has to pick another sensor.worker_name.
var ErrWorkerRoleClash = errors.New("worker name is held by a worker of another role")

// ErrWorkerGone means an update found no worker row: someone purged it while
// the agent ran. The heartbeat registers again.
var ErrWorkerGone = errors.New("worker row no longer exists")

// registryCallTimeout bounds each registry call when the caller's context
// has a later deadline or none; statement_timeout only helps while the server
// is alive, this also covers a dead TCP peer.
const registryCallTimeout = 15 * time.Second

// registryAttempts bounds the find/insert loop when another agent creates or
// deletes the same name concurrently.
const registryAttempts = 3

// pgRegistry is the worker-table side of registration, heartbeat and
// deregistration, with the reference's statements (CONTRACT §4).
type pgRegistry struct {
	pool *pgxpool.Pool
}

var _ workerRegistry = (*pgRegistry)(nil)

// newPgRegistry returns a registry on pool (search_path set by openPool).
func newPgRegistry(pool *pgxpool.Pool) *pgRegistry { return &pgRegistry{pool: pool} }

// register finds the sensor worker named name, or creates it, and marks it
// active with caps (JSON) and a fresh last_heartbeat. A name held by a worker
// of another role is ErrWorkerRoleClash. Two agents racing for one new name
// both end up on the same row: the loser's insert hits the unique constraint
// and it re-selects.
func (r *pgRegistry) register(ctx context.Context, name, host string, caps []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, registryCallTimeout)
	defer cancel()
	var hostArg any // NULL when unknown, as the reference binds Option<String>
	if host != "" {
		hostArg = host
	}
	for range registryAttempts {
		var id int64
		err := r.pool.QueryRow(ctx,
			`SELECT id FROM worker WHERE name = $1 AND worker_role = 'sensor' ORDER BY created DESC LIMIT 1`,
			name).Scan(&id)
		switch {
		case err == nil:
			tag, err := r.pool.Exec(ctx,
				`UPDATE worker SET status = 'active', capabilities = $1, last_heartbeat = now(), updated = now(), host = $2 WHERE id = $3`,
				string(caps), hostArg, id)
			if err != nil {
				return 0, fmt.Errorf("register worker %q: reactivate id %d: %w", name, id, err)
			}
			if tag.RowsAffected() == 1 {
				return id, nil
			}
			continue // deleted between select and update
		case !errors.Is(err, pgx.ErrNoRows):
			return 0, fmt.Errorf("register worker %q: find: %w", name, err)
		}

		err = r.pool.QueryRow(ctx,
			`INSERT INTO worker (name, worker_type, worker_role, host, status, capabilities, last_heartbeat)
			 VALUES ($1, 'local', 'sensor', $2, 'active', $3, now()) RETURNING id`,
			name, hostArg, string(caps)).Scan(&id)
		if err == nil {
			return id, nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
			return 0, fmt.Errorf("register worker %q: insert: %w", name, err)
		}
		var role string
		err = r.pool.QueryRow(ctx, `SELECT id, worker_role::text FROM worker WHERE name = $1`, name).Scan(&id, &role)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			continue // the holder vanished again; start over
		case err != nil:
			return 0, fmt.Errorf("register worker %q: find holder: %w", name, err)
		case role != "sensor":
			return 0, fmt.Errorf("register worker %q: %w: it is worker id %d with role %s; set sensor.worker_name (or --name) to another name",
				name, ErrWorkerRoleClash, id, role)
		}
		// Another agent inserted the sensor row first: loop and reuse it.
	}
	return 0, fmt.Errorf("register worker %q: the row kept changing under concurrent registration", name)
}

// updateCapabilities rewrites the capabilities of worker id.
func (r *pgRegistry) updateCapabilities(ctx context.Context, id int64, caps []byte) error {
	return r.execOnWorker(ctx, "update capabilities", id,
		`UPDATE worker SET capabilities = $1, updated = now() WHERE id = $2`, string(caps), id)
}

// beat records a heartbeat: last_heartbeat now and status active.
func (r *pgRegistry) beat(ctx context.Context, id int64) error {
	return r.execOnWorker(ctx, "heartbeat", id,
		`UPDATE worker SET last_heartbeat = now(), status = 'active', updated = now() WHERE id = $1`, id)
}

// deregister marks worker id inactive at shutdown. A row that no longer
// exists needs no marking, so that is not an error.
func (r *pgRegistry) deregister(ctx context.Context, id int64) error {
	err := r.execOnWorker(ctx, "deregister", id,
		`UPDATE worker SET status = 'inactive', updated = now() WHERE id = $1`, id)
	if errors.Is(err, ErrWorkerGone) {
		return nil
	}
	return err
}

// execOnWorker runs one UPDATE of a worker row under the call timeout and
// turns "no row touched" into ErrWorkerGone.
func (r *pgRegistry) execOnWorker(ctx context.Context, what string, id int64, sql string, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, registryCallTimeout)
	defer cancel()
	tag, err := r.pool.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s worker %d: %w", what, id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s worker %d: %w", what, id, ErrWorkerGone)
	}
	return nil
}
