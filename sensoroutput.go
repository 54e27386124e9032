package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"
)

// sensoroutput.go owns the seam between a sensor's supervisor and wherever
// its stdout and stderr go: the local rotating files of every generation
// (CONTRACT §7 [agent]) and, on the newest generation, the API's segmented
// log streams as well (CONTRACT §13, sensorlog_*.go).

// sensorOutputs opens the output sinks of one process generation of a
// sensor. The supervisor calls open before each launch and end on the
// returned output after that process exited or was stopped.
type sensorOutputs interface {
	open(ctx context.Context, spec sensorSpec) (sensorOutput, error)
}

// sensorOutput is where one process generation writes. Writes never wait
// long on the API (at most one short backpressure stall, sensorlog_ship.go):
// what cannot be shipped in time is dropped with a counted warning.
type sensorOutput interface {
	stdout() io.Writer
	stderr() io.Writer
	// end finishes the generation once its pipes are drained: flush what is
	// buffered, seal the log versions, close the local files. It waits at
	// most bound for that; what is left continues in the background within
	// its own deadline, so a slow API never delays a restart.
	end(bound time.Duration)
}

// outputSealWait bounds how long a controlled stop waits for a sensor's last
// segments and seals (after its stop is recorded); a restart after a crash
// or a token rotation does not wait at all.
const outputSealWait = 5 * time.Second

// localOutputs writes each generation to the rotating files under
// {artifacts_dir}/sensors/<ref>/ (appending, so a restart continues the log),
// mirrored into the agent log when configured.
type localOutputs struct {
	cfg *Config
	log *slog.Logger
}

func (l localOutputs) open(_ context.Context, sp sensorSpec) (sensorOutput, error) {
	out, errw, err := openLocalLogs(l.cfg, l.log, sp)
	if err != nil {
		return nil, err
	}
	return &localOutput{out: out, err: errw}, nil
}

// openLocalLogs opens the two local files of a sensor (logfile.go).
func openLocalLogs(cfg *Config, log *slog.Logger, sp sensorSpec) (io.WriteCloser, io.WriteCloser, error) {
	dir := filepath.Join(cfg.ArtifactsDir, "sensors", filepath.Base(filepath.Clean("/"+sp.Ref)))
	out, err := newRotatingFile(filepath.Join(dir, "stdout.log"), cfg.Artifacts.SensorLogMaxBytes, cfg.Artifacts.SensorLogMaxFiles)
	if err != nil {
		return nil, nil, fmt.Errorf("sensor %s stdout log: %w", sp.Ref, err)
	}
	errw, err := newRotatingFile(filepath.Join(dir, "stderr.log"), cfg.Artifacts.SensorLogMaxBytes, cfg.Artifacts.SensorLogMaxFiles)
	if err != nil {
		out.Close()
		return nil, nil, fmt.Errorf("sensor %s stderr log: %w", sp.Ref, err)
	}
	var o, e io.WriteCloser = out, errw
	if cfg.Log.MirrorStdout {
		o = teeCloser(out, newLogMirror(log, sp.Ref, "stdout"))
	}
	if cfg.Log.MirrorStderr {
		e = teeCloser(errw, newLogMirror(log, sp.Ref, "stderr"))
	}
	return o, e, nil
}

// localOutput is one generation's pair of local files.
type localOutput struct {
	out, err io.WriteCloser
	once     sync.Once
}

func (o *localOutput) stdout() io.Writer { return o.out }
func (o *localOutput) stderr() io.Writer { return o.err }
func (o *localOutput) end(time.Duration) {
	o.once.Do(func() { o.out.Close(); o.err.Close() })
}

// sensorOutputsFor picks the outputs of the schema generation: segmented
// log streams where the log_stream table exists, local files only before.
func sensorOutputsFor(cfg *Config, schema schemaInfo, rows logRows, signer jwtSource, log *slog.Logger) sensorOutputs {
	local := localOutputs{cfg: cfg, log: log}
	if !schema.LogStream {
		return local
	}
	return newStreamOutputs(cfg, local, rows, newLogUploader(cfg.APIURL, signer), log)
}
