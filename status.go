package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// agentStatus is what the running agent publishes about itself in its status
// file, and what `healthcheck` judges. It exists because a health probe in an
// image with no shell, no curl and no database credentials must still be able
// to tell a live, registered, heartbeating agent from a wedged one: a small
// local file, rewritten on every heartbeat, is the cheapest channel that needs
// nothing from the image.
type agentStatus struct {
	PID               int
	WorkerID          int64
	WorkerName        string
	LastHeartbeat     time.Time
	HeartbeatInterval time.Duration
	SensorsMonitored  int
	SensorsRunning    int
	ActiveRules       int
	UpdatedAt         time.Time
}

// agentStatusFile is the on-disk form of agentStatus: snake_case keys, the
// interval in seconds, so an operator can read it with `cat` and the format
// does not depend on Go's Duration encoding.
type agentStatusFile struct {
	PID                      int       `json:"pid"`
	WorkerID                 int64     `json:"worker_id"`
	WorkerName               string    `json:"worker_name"`
	LastHeartbeat            time.Time `json:"last_heartbeat"`
	HeartbeatIntervalSeconds float64   `json:"heartbeat_interval_seconds"`
	SensorsMonitored         int       `json:"sensors_monitored"`
	SensorsRunning           int       `json:"sensors_running"`
	ActiveRules              int       `json:"active_rules"`
	UpdatedAt                time.Time `json:"updated_at"`
}

// MarshalJSON writes the snake_case file form.
func (s agentStatus) MarshalJSON() ([]byte, error) {
	return json.Marshal(agentStatusFile{
		PID:                      s.PID,
		WorkerID:                 s.WorkerID,
		WorkerName:               s.WorkerName,
		LastHeartbeat:            s.LastHeartbeat,
		HeartbeatIntervalSeconds: s.HeartbeatInterval.Seconds(),
		SensorsMonitored:         s.SensorsMonitored,
		SensorsRunning:           s.SensorsRunning,
		ActiveRules:              s.ActiveRules,
		UpdatedAt:                s.UpdatedAt,
	})
}

// UnmarshalJSON reads the snake_case file form.
func (s *agentStatus) UnmarshalJSON(b []byte) error {
	var f agentStatusFile
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = agentStatus{
		PID:               f.PID,
		WorkerID:          f.WorkerID,
		WorkerName:        f.WorkerName,
		LastHeartbeat:     f.LastHeartbeat,
		HeartbeatInterval: time.Duration(f.HeartbeatIntervalSeconds * float64(time.Second)),
		SensorsMonitored:  f.SensorsMonitored,
		SensorsRunning:    f.SensorsRunning,
		ActiveRules:       f.ActiveRules,
		UpdatedAt:         f.UpdatedAt,
	}
	return nil
}

// defaultStatusFile is where the agent writes its status when neither
// sensor.status_file nor ATTUNE_SENSOR_STATUS_FILE names a path. It lives in
// the temporary directory because that is the one place writable in every
// image, including a Kubernetes pod with readOnlyRootFilesystem and an
// emptyDir on /tmp.
func defaultStatusFile() string {
	return filepath.Join(os.TempDir(), "attune-sensor-agent.status.json")
}

// writeAgentStatus replaces the status file at path with st, atomically, so
// that a health probe running at the same moment reads either the previous
// or the new status, never a torn one. The directory is created when missing.
func writeAgentStatus(path string, st agentStatus) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode agent status: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create status directory %s: %w", dir, err)
	}
	if err := atomicReplaceFile(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}, 0o644, false); err != nil {
		return fmt.Errorf("write agent status: %w", err)
	}
	return nil
}

// readAgentStatus reads the status file at path. A missing file is reported
// with an error that satisfies errors.Is(err, fs.ErrNotExist).
func readAgentStatus(path string) (agentStatus, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return agentStatus{}, fmt.Errorf("read agent status: %w", err)
	}
	var st agentStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return agentStatus{}, fmt.Errorf("decode agent status %s: %w", path, err)
	}
	return st, nil
}

// removeAgentStatus deletes the status file; the agent calls it on a clean
// shutdown so that a container restarted with the same writable layer does
// not present the previous run's status. A missing file is not an error.
func removeAgentStatus(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove agent status: %w", err)
	}
	return nil
}
