package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestAMQPPromptsPackDeletedRequeuedOnFailure: a PackDeleted whose handling
// fails is nacked with requeue and handled again until it succeeds; only then
// is it acked and the reconcile prompt given, once; other messages never
// reach the handler; after the ack nothing is redelivered.
func TestAMQPPromptsPackDeletedRequeuedOnFailure(t *testing.T) {
	amqpURL := newTestVhost(t)
	var mu sync.Mutex
	var calls []packDeletedPayload
	rp := startPrompts(t, amqpURL, func(b *amqpPrompts) {
		b.OnPackDeleted = func(_ context.Context, p packDeletedPayload) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, p)
			if len(calls) <= 2 {
				return errors.New("runtime environment busy")
			}
			return nil
		}
	})
	rp.waitReady(t, 1)
	pub := testBrokerChannel(t, amqpURL)
	testPublish(t, pub, exchangeEvents, "pack.deleted", testEnvelopeJSON("PackDeleted",
		`{"pack_id":3,"pack_ref":"slack","runtime_environment_paths":["sha256/`+strings.Repeat("a", 64)+`"],"release_digests":["`+strings.Repeat("b", 64)+`"]}`))
	if got := rp.rec.waitTimeout(t, 1, 30*time.Second); got[0] != (prompt{MessageType: "PackDeleted", PackRef: "slack"}) {
		t.Fatalf("prompt %+v", got[0])
	}
	mu.Lock()
	n, first := len(calls), calls[0]
	mu.Unlock()
	if n != 3 {
		t.Fatalf("handler called %d times, want 3 (two failures requeued, then success)", n)
	}
	if first.PackID != 3 || !slices.Equal(first.RuntimeEnvironmentPaths, []string{"sha256/" + strings.Repeat("a", 64)}) ||
		!slices.Equal(first.ReleaseDigests, []string{strings.Repeat("b", 64)}) {
		t.Fatalf("handler got %+v", first)
	}
	if c := rp.logs.count("PackDeleted not finished; requeued"); c != 2 {
		t.Fatalf("%d requeue warnings, want 2", c)
	}
	// A sentinel after it: once the sentinel is through, a redelivery of the
	// acked PackDeleted would have come before it.
	testPublish(t, pub, exchangeEvents, "rule.enabled", testEnvelopeJSON("RuleEnabled", `{}`))
	rp.rec.wait(t, 2)
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 3 {
		t.Fatalf("handler called %d times after the ack, want still 3", len(calls))
	}
}

// TestPackDeletedEndToEnd runs the real agent over the real broker and
// PostgreSQL: a PackDeleted for a pack that exists again changes nothing (its
// sensor keeps running, no environment goes); once the pack is deleted, a
// PackDeleted with hostile runtime_environment_paths stops its sensor and
// purges its legacy and content-addressed environments and the recorded one,
// and nothing outside runtime_envs_dir, nor another pack's environment.
func TestPackDeletedEndToEnd(t *testing.T) {
	s := newTestStack(t, "current")
	t.Cleanup(s.killLeftovers)
	s.sensorWithRule("shell_sensor", "shell_sensor.sh", "Shell", "", true)
	root := filepath.Join(s.dir, "runtime_envs")
	outside := filepath.Join(s.dir, "outside")
	legacy := filepath.Join(root, "testpack", "shell")
	owned := filepath.Join(root, "sha256", strings.Repeat("e", 64))
	foreign := filepath.Join(root, "sha256", strings.Repeat("f", 64))
	recorded := filepath.Join(root, "extra", "testpack-python-3.11")
	for _, d := range []string{legacy, owned, foreign, recorded, outside} {
		mkdirAll(t, d)
		writeFile(t, filepath.Join(d, "keep.txt"), "x")
	}
	writeFile(t, filepath.Join(owned, ".attune-pack-ref"), "testpack")
	writeFile(t, filepath.Join(foreign, ".attune-pack-ref"), "otherpack")
	symlink(t, outside, filepath.Join(root, "escape"))
	payload := map[string]any{"pack_id": s.packID, "pack_ref": "testpack", "release_digests": []string{},
		"runtime_environment_paths": []string{"../outside", outside, "escape", "escape/keep.txt", "sha256", "/", "extra/testpack-python-3.11"}}

	a := s.start()
	pid := s.waitSensorRunning(a, "testpack.shell_sensor", 60*time.Second)
	a.waitLog(`"broker connected"`, 30*time.Second) // the queue is bound: a message now reaches the agent

	// Stale: the pack (re-)exists.
	s.publish("pack.deleted", "PackDeleted", payload)
	a.waitLog("PackDeleted is stale", 30*time.Second)
	if p := s.sensorPIDs("testpack.shell_sensor"); !slices.Contains(p, pid) {
		t.Fatalf("stale PackDeleted stopped the sensor (pids now %v, was %d)", p, pid)
	}
	for _, d := range []string{legacy, owned, recorded} {
		if !exists(d) {
			t.Fatalf("stale PackDeleted removed %s", d)
		}
	}

	s.db.exec(`DELETE FROM pack WHERE id = $1`, s.packID)
	s.publish("pack.deleted", "PackDeleted", payload)
	s.waitSensorGone(a, "testpack.shell_sensor", 30*time.Second)
	if !waitUntil(30*time.Second, func() bool { return !exists(filepath.Dir(legacy)) && !exists(owned) && !exists(recorded) }) {
		t.Fatalf("environments of the deleted pack not purged; agent stderr:\n%s", a.stderr.String())
	}
	a.waitLog("runtime environments of deleted pack purged", 10*time.Second)
	for _, p := range []string{filepath.Join(outside, "keep.txt"), foreign, filepath.Join(root, "escape"), filepath.Join(root, "sha256")} {
		if !exists(p) {
			t.Errorf("%s was deleted", p)
		}
	}
	if strings.Contains(a.stderr.String(), "requeued") {
		t.Errorf("PackDeleted was requeued:\n%s", a.stderr.String())
	}
	if code := a.stop(syscall.SIGTERM, 40*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep.txt")); err != nil {
		t.Fatalf("outside file gone: %v", err)
	}
}
