package main

// processrecorder.go owns the one writer of sensor_process rows on the
// current schema generation (CONTRACT §7): supervisors hand it transitions
// and return at once; it keeps the latest wanted state per sensor, writes
// them in batches from one goroutine, and retries through an outage. What a
// transition writes is processrows.go.

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// processBatchMax bounds one transaction; a mass start of 1000
	// sensors is two batches.
	processBatchMax = 500
	// processWriteTimeout bounds one batch; a stalled database holds only
	// the writer, never a supervisor.
	processWriteTimeout = 10 * time.Second
	// processPendingMax bounds the queue: one entry per sensor, so only a
	// table of more sensors than this ever drops a row (counted, logged).
	processPendingMax = 100_000
	// processAlertQueue bounds the alerts waiting for their publish.
	processAlertQueue = 1024
	// Retry after a failed batch: doubling from min to max.
	processRetryMin = 250 * time.Millisecond
	processRetryMax = 10 * time.Second
	// processCloseTimeout bounds the final write at exit: a dead database
	// must not hold the shutdown.
	processCloseTimeout = 3 * time.Second
)

// alertJob is a repeated-failure alert to consider once the crash row that
// asked for it is written (alerting.go decides and raises it).
type alertJob struct {
	spec     sensorSpec
	st       exitStatus
	failures int
	next     time.Time
}

// processRecorder is the coalescing sensor_process writer. Without a
// sensor_process table (legacy generation) every method does nothing.
type processRecorder struct {
	pool         *pgxpool.Pool // nil: no sensor_process table
	workerName   string
	artifactsDir string
	workerID     atomic.Int64
	log          *slog.Logger
	// onAlert performs one alert; nil: alerts are not raised.
	onAlert func(ctx context.Context, job alertJob)

	mu      sync.Mutex
	pending map[int64]*pendingRow
	order   []int64 // sensors in pending, oldest first
	busy    bool    // a batch or an alert is in flight
	dropped int
	wake    chan struct{}
	alerts  chan alertJob
	alertN  atomic.Int64 // alerts queued or being raised
	alertWG sync.WaitGroup
	cancel  context.CancelFunc
	done    chan struct{}
}

var _ sensorEvents = (*processRecorder)(nil)

// newProcessRecorder returns a recorder and, on the current generation,
// starts its writer; close stops it. artifactsDir locates the stderr logs
// the crash excerpts are read from.
func newProcessRecorder(pool *pgxpool.Pool, si schemaInfo, workerName, artifactsDir string, log *slog.Logger) *processRecorder {
	r := &processRecorder{workerName: workerName, artifactsDir: artifactsDir, log: log,
		pending: map[int64]*pendingRow{}, wake: make(chan struct{}, 1),
		alerts: make(chan alertJob, processAlertQueue), done: make(chan struct{})}
	if !si.SensorProcess {
		close(r.done)
		return r
	}
	r.pool = pool
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.writeLoop(ctx)
	r.alertWG.Add(1)
	go r.alertLoop(ctx)
	return r
}

// setWorkerID records the worker id the rows belong to; rows queued before
// it is known wait for it.
func (r *processRecorder) setWorkerID(id int64) {
	r.workerID.Store(id)
	r.signal()
}

func (r *processRecorder) sensorStarted(spec sensorSpec, pid int, failures int) {
	r.enqueue(spawnRow(spec, pid, failures, time.Now()))
}

func (r *processRecorder) sensorExited(spec sensorSpec, st exitStatus, failures int, next time.Time) {
	r.exited(spec, st, failures, next, nil)
}

// exited records a crash, or a launch that failed before any process
// existed (Code -1 without a signal), and attaches an alert to consider.
func (r *processRecorder) exited(spec sensorSpec, st exitStatus, failures int, next time.Time, alert *alertJob) {
	if r.pool == nil {
		return
	}
	var row *pendingRow
	if st.Code < 0 && st.Signal == 0 {
		row = startFailedRow(spec, failures, next)
	} else {
		row = crashRow(spec, st, failures, next, readStderrExcerpt(sensorStderrLogPath(r.artifactsDir, spec.Ref)))
	}
	row.alert = alert
	r.enqueue(row)
}

func (r *processRecorder) sensorStopped(spec sensorSpec, st exitStatus) {
	at := st.At
	if at.IsZero() {
		at = time.Now()
	}
	r.enqueue(stopRow(spec, at))
}

// enqueue merges row into the sensor's pending state; it never waits for
// the database.
func (r *processRecorder) enqueue(row *pendingRow) {
	if r.pool == nil {
		return
	}
	r.mu.Lock()
	if p, ok := r.pending[row.sensor]; ok {
		p.overlay(row)
	} else if len(r.pending) >= processPendingMax {
		r.dropped++
		if r.dropped == 1 || r.dropped%1000 == 0 {
			r.log.Warn("sensor_process queue full: row dropped", "sensor", row.ref, "dropped", r.dropped)
		}
	} else {
		r.pending[row.sensor] = row
		r.order = append(r.order, row.sensor)
	}
	r.mu.Unlock()
	r.signal()
}

func (r *processRecorder) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take removes up to processBatchMax pending rows, oldest first.
func (r *processRecorder) take() []*pendingRow {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(len(r.order), processBatchMax)
	rows := make([]*pendingRow, 0, n)
	for _, id := range r.order[:n] {
		rows = append(rows, r.pending[id])
		delete(r.pending, id)
	}
	r.order = append(r.order[:0], r.order[n:]...)
	r.busy = n > 0
	return rows
}

// requeue puts a failed batch back under whatever arrived since: the newer
// transitions overlay the older ones, so nothing is lost or reordered.
func (r *processRecorder) requeue(rows []*pendingRow) {
	r.mu.Lock()
	defer r.mu.Unlock()
	front := make([]int64, 0, len(rows))
	for _, old := range rows {
		if newer, ok := r.pending[old.sensor]; ok {
			old.overlay(newer)
			r.pending[old.sensor] = old
			continue
		}
		r.pending[old.sensor] = old
		front = append(front, old.sensor)
	}
	r.order = append(front, r.order...)
	r.busy = false
}

// writeLoop is the one goroutine that writes rows.
func (r *processRecorder) writeLoop(ctx context.Context) {
	defer close(r.done)
	retry := processRetryMin
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for ctx.Err() == nil {
			id := r.workerID.Load()
			if id == 0 {
				break // rows wait for registration; setWorkerID wakes us
			}
			rows := r.take()
			if len(rows) == 0 {
				break
			}
			wctx, cancel := context.WithTimeout(ctx, processWriteTimeout)
			err := writeProcessRows(wctx, r.pool, id, r.workerName, rows)
			cancel()
			if err != nil {
				r.requeue(rows)
				if !failing {
					failing = true
					r.log.Warn("sensor_process update failed", "rows", len(rows), "retrying", true, "error", err)
				}
				if !sleepCtx(ctx, retry) {
					return
				}
				retry = min(retry*2, processRetryMax)
				continue
			}
			if failing {
				failing = false
				r.log.Info("sensor_process updates recovered")
			}
			retry = processRetryMin
			r.queueAlerts(rows)
			r.mu.Lock()
			r.busy = false
			r.mu.Unlock()
		}
	}
}

// queueAlerts hands the alerts of written rows to alertLoop, dropping (and
// logging) one when its queue is full rather than holding the writer.
func (r *processRecorder) queueAlerts(rows []*pendingRow) {
	if r.onAlert == nil {
		return
	}
	for _, row := range rows {
		if row.alert == nil {
			continue
		}
		r.alertN.Add(1)
		select {
		case r.alerts <- *row.alert:
		default:
			r.alertN.Add(-1)
			r.log.Warn("sensor failure alert dropped: alert queue full", "sensor", row.ref)
		}
	}
}

// alertLoop raises alerts one at a time, after their rows are written, so
// a slow broker delays neither rows nor supervisors.
func (r *processRecorder) alertLoop(ctx context.Context) {
	defer r.alertWG.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-r.alerts:
			if r.onAlert != nil {
				r.onAlert(ctx, job)
			}
			r.alertN.Add(-1)
		}
	}
}

// idle reports whether every queued row is written and every alert raised.
func (r *processRecorder) idle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending) == 0 && !r.busy && r.alertN.Load() == 0
}

// flush waits until everything queued so far is written (or ctx ends, or
// rows wait for a worker id); it reports whether the queue drained. It
// waits by polling: it runs at shutdown and in tests, never on a hot path.
func (r *processRecorder) flush(ctx context.Context) bool {
	if r.pool == nil {
		return true
	}
	r.signal()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !r.idle() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// close writes what is queued for at most timeout (the final "stopped"
// rows of a shutdown), then stops the writer. It reports whether every
// row was written.
func (r *processRecorder) close(timeout time.Duration) bool {
	if r.pool == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ok := r.flush(ctx)
	r.cancel()
	<-r.done
	r.alertWG.Wait()
	if !ok {
		r.mu.Lock()
		n := len(r.pending)
		r.mu.Unlock()
		r.log.Warn("sensor_process rows not written at exit", "rows", n, "waited", timeout.String())
	}
	return ok
}
