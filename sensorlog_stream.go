package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// sensorlog_stream.go owns the buffering of one sensor stream towards the
// API (CONTRACT §13): a bounded buffer the pipe reader writes into without
// ever blocking, one goroutine per stream and process generation that cuts
// segments (64 KiB target doubling to log_segment_max_bytes on size flushes,
// a flush every flush_interval_ms that resets it), allocates versions on the
// first byte and at rotation, and seals every version it opened.

// shipperConfig is the artifacts section as the shipper uses it.
type shipperConfig struct {
	flush       time.Duration
	initial     int
	maxSegment  int   // also the bound of uncommitted bytes per stream
	rotateAt    int64 // bytes per version; 0: never rotate
	attempts    int
	sealTimeout time.Duration // the background deadline of the final drain and seal
}

func shipperConfigFrom(cfg *Config) shipperConfig {
	a := cfg.Artifacts
	sc := shipperConfig{flush: time.Duration(a.FlushIntervalMS) * time.Millisecond,
		initial: int(a.LogSegmentInitialBytes), maxSegment: int(a.LogSegmentMaxBytes),
		attempts: a.LogSegmentRetryMaxAttempts, sealTimeout: 30 * time.Second}
	if a.SensorLogMaxFiles > 0 {
		sc.rotateAt = a.SensorLogMaxBytes
	}
	return sc
}

// streamOutputs is the newest generation's sensorOutputs: local files plus
// a shipper per stream.
type streamOutputs struct {
	cfg   shipperConfig
	local localOutputs
	rows  logRows
	up    *logUploader
	log   *slog.Logger
	// pending counts the shippers not yet sealed, finished generations
	// included (their seals run in the background after a crash).
	pending sync.WaitGroup
}

func newStreamOutputs(cfg *Config, local localOutputs, rows logRows, up *logUploader, log *slog.Logger) *streamOutputs {
	return &streamOutputs{cfg: shipperConfigFrom(cfg), local: local, rows: rows, up: up, log: log}
}

// open finds or creates the artifact rows (a failure fails the start, as in
// the reference), opens the local files and starts the two shippers.
func (o *streamOutputs) open(ctx context.Context, sp sensorSpec) (sensorOutput, error) {
	arts, err := o.rows.ensureArtifacts(ctx, sp)
	if err != nil {
		return nil, err
	}
	out, errw, err := openLocalLogs(o.local.cfg, o.local.log, sp)
	if err != nil {
		return nil, err
	}
	so := &streamOutput{local: [2]io.WriteCloser{out, errw}}
	for i, a := range arts {
		o.pending.Add(1)
		so.ship[i] = newLogShipper(o.cfg, a, o.rows, o.up, o.log)
		so.ship[i].release = o.pending.Done
		so.w[i] = &shipTee{local: so.local[i], ship: so.ship[i], log: o.log, ref: sp.Ref, stream: a.Stream}
	}
	return so, nil
}

// wait gives the seals still running after the sensors stopped (a crash
// just before the shutdown) up to bound to finish; the agent calls it last.
func (o *streamOutputs) wait(bound time.Duration) {
	done := make(chan struct{})
	go func() { o.pending.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(bound):
		o.log.Warn("sensor log versions still being sealed at exit", "waited", bound.String())
	}
}

// streamOutput is one generation of a sensor on the newest generation.
type streamOutput struct {
	local [2]io.WriteCloser
	ship  [2]*logShipper
	w     [2]*shipTee
	once  sync.Once
}

func (o *streamOutput) stdout() io.Writer { return o.w[0] }
func (o *streamOutput) stderr() io.Writer { return o.w[1] }

func (o *streamOutput) end(bound time.Duration) {
	o.once.Do(func() {
		for i := range o.local {
			o.local[i].Close()
			o.ship[i].finish()
		}
	})
	if bound <= 0 {
		return
	}
	t := time.NewTimer(bound)
	defer t.Stop()
	for _, s := range o.ship {
		select {
		case <-s.done:
		case <-t.C:
			return
		}
	}
}

// shipTee writes to the local file and to the shipper. A failing local file
// is logged once and does not stop shipping (the runner would discard the
// rest of the stream on an error); the shipper never fails.
type shipTee struct {
	local       io.Writer
	ship        *logShipper
	log         *slog.Logger
	ref, stream string
	localFailed bool
}

func (t *shipTee) Write(p []byte) (int, error) {
	if !t.localFailed {
		if _, err := t.local.Write(p); err != nil {
			t.localFailed = true
			t.log.Warn("sensor local log cannot be written; output still goes to the API", "sensor", t.ref, "stream", t.stream, "error", err)
		}
	}
	return t.ship.Write(p)
}
