package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// sampleAgentStatus is a fully populated status; every field differs from its
// zero value so a dropped field shows up in the round trip.
func sampleAgentStatus() agentStatus {
	return agentStatus{
		PID:               4242,
		WorkerID:          17,
		WorkerName:        "sensor-primary-01",
		LastHeartbeat:     time.Date(2026, 11, 27, 5, 30, 0, 0, time.UTC),
		HeartbeatInterval: 30 * time.Second,
		SensorsMonitored:  5,
		SensorsRunning:    4,
		ActiveRules:       9,
		UpdatedAt:         time.Date(2026, 11, 27, 5, 30, 1, 0, time.UTC),
	}
}

func TestAgentStatusRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "status.json")
	want := sampleAgentStatus()
	if err := writeAgentStatus(path, want); err != nil {
		t.Fatalf("writeAgentStatus: %v", err)
	}
	got, err := readAgentStatus(path)
	if err != nil {
		t.Fatalf("readAgentStatus: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip: want %+v, got %+v", want, got)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o644 {
		t.Errorf("status file mode: want 0644, got %#o", mode)
	}
}

func TestAgentStatusJSONKeys(t *testing.T) {
	b, err := json.Marshal(sampleAgentStatus())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"active_rules", "heartbeat_interval_seconds", "last_heartbeat", "pid",
		"sensors_monitored", "sensors_running", "updated_at", "worker_id", "worker_name"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("JSON keys: want %v, got %v", want, keys)
	}
	if m["heartbeat_interval_seconds"] != 30.0 {
		t.Errorf("heartbeat_interval_seconds: want 30, got %v", m["heartbeat_interval_seconds"])
	}
	if m["last_heartbeat"] != "2026-11-27T05:30:00Z" {
		t.Errorf("last_heartbeat: want RFC 3339, got %v", m["last_heartbeat"])
	}
}

func TestReadAgentStatusErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := readAgentStatus(filepath.Join(dir, "absent.json"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: want fs.ErrNotExist, got %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = readAgentStatus(bad)
	if err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), bad) {
		t.Errorf("corrupt file: want a decode error naming %s, got %v", bad, err)
	}
}

func TestWriteAgentStatusFailsWhenDirIsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeAgentStatus(filepath.Join(file, "status.json"), sampleAgentStatus()); err == nil {
		t.Fatal("writeAgentStatus under a regular file: want an error, got nil")
	}
}

// TestWriteAgentStatusIsAtomic rewrites the file while a reader polls it: the
// reader must only ever see complete documents, and no temporary file may
// be left behind.
func TestWriteAgentStatusIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "status.json")
	st := sampleAgentStatus()
	// A long worker name makes a torn write likely to be visible.
	st.WorkerName = strings.Repeat("w", 64<<10)
	if err := writeAgentStatus(path, st); err != nil {
		t.Fatal(err)
	}
	const writes = 100
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := range writes {
			s := st
			s.SensorsRunning = i
			if err := writeAgentStatus(path, s); err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
		}
	}()
	reads := 0
	for {
		select {
		case <-done:
			wg.Wait()
			if reads == 0 {
				t.Error("reader never ran")
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != "status.json" {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("directory after writes: want only status.json, got %v", names)
			}
			return
		default:
		}
		got, err := readAgentStatus(path)
		if err != nil {
			t.Fatalf("read during rewrite: %v", err)
		}
		if got.WorkerName != st.WorkerName {
			t.Fatalf("read during rewrite: torn worker name of length %d", len(got.WorkerName))
		}
		reads++
	}
}

func TestRemoveAgentStatus(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	if err := writeAgentStatus(path, sampleAgentStatus()); err != nil {
		t.Fatal(err)
	}
	if err := removeAgentStatus(path); err != nil {
		t.Fatalf("remove existing: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("status file still there after remove: %v", err)
	}
	if err := removeAgentStatus(path); err != nil {
		t.Errorf("remove missing: want nil, got %v", err)
	}
}

func TestDefaultStatusFile(t *testing.T) {
	t.Setenv("TMPDIR", "/some/tmp")
	if got, want := defaultStatusFile(), "/some/tmp/attune-sensor-agent.status.json"; got != want {
		t.Errorf("defaultStatusFile: want %s, got %s", want, got)
	}
}
