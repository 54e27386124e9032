package main

import (
	"log/slog"
	"os"
	"sync"
	"time"
)

// statusWriter keeps the status file that `healthcheck` reads current: it is
// rewritten (atomically) after every successful heartbeat and removed at a
// clean shutdown. Write failures are logged once per outage, never fatal.
type statusWriter struct {
	path     string
	name     string
	interval time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	failing bool
}

func newStatusWriter(cfg *Config, log *slog.Logger) *statusWriter {
	return &statusWriter{path: cfg.Sensor.StatusFile, name: cfg.Sensor.WorkerName,
		interval: cfg.Sensor.HeartbeatInterval, log: log}
}

// beat is the heartbeat's OnBeat hook.
func (w *statusWriter) beat(workerID int64, at time.Time, c heartbeatCounters) {
	err := writeAgentStatus(w.path, agentStatus{
		PID: os.Getpid(), WorkerID: workerID, WorkerName: w.name, LastHeartbeat: at,
		HeartbeatInterval: w.interval, SensorsMonitored: c.Monitored, SensorsRunning: c.Running,
		ActiveRules: c.ActiveRules, UpdatedAt: time.Now(),
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err != nil && !w.failing:
		w.failing = true
		w.log.Warn("status file not written; healthcheck will report unhealthy", "path", w.path, "error", err)
	case err == nil && w.failing:
		w.failing = false
		w.log.Info("status file written again", "path", w.path)
	}
}

// remove deletes the status file at shutdown so a stale file never reads healthy.
func (w *statusWriter) remove() {
	if err := removeAgentStatus(w.path); err != nil {
		w.log.Warn("status file not removed", "path", w.path, "error", err)
	}
}
