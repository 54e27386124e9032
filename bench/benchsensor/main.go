// Command benchsensor is the native sensor the agent benchmarks
// (bench/agentbench) install in their pack. The agent runs it as
// {pack}/sensors/<role>, so its role is its file name:
//
//	mark   writes the time it started (Unix ns) to marks/<ref>.start, then
//	       runs until SIGTERM (item 3: rule enabled → process started)
//	crash  writes its pid to marks/<ref>.pid; on SIGUSR1 writes the time
//	       (Unix ns) to marks/<ref>.crashed and exits 3 at once; a restart
//	       that finds that file only idles (item 4: exit → agent notices)
//
// marks/ is the pack's marks directory, found next to sensors/ from the
// program's own path (the agent starts it by absolute path), so the sensor
// needs nothing from its environment except ATTUNE_SENSOR_REF. It is its own
// small program (standard library only) so that the time from exec to its
// first timestamp stays well under a millisecond; agentbench measures that
// time too and reports it as the measurement's floor.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func main() {
	started := time.Now() // first thing: this is the "process started" stamp
	os.Exit(runBenchSensor(started, os.Args[0], os.Getenv("ATTUNE_SENSOR_REF")))
}

// runBenchSensor plays the role named by the program's file name; it returns
// the exit code.
func runBenchSensor(started time.Time, self, ref string) int {
	if ref == "" {
		fmt.Fprintln(os.Stderr, "benchsensor: ATTUNE_SENSOR_REF is not set")
		return 2
	}
	marks := filepath.Join(filepath.Dir(self), "..", "marks")
	base := filepath.Join(marks, ref)
	sigs := make(chan os.Signal, 1)
	switch role := filepath.Base(self); role {
	case "mark":
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		if err := writeMarkAtomic(base+".start", started.UnixNano()); err != nil {
			fmt.Fprintln(os.Stderr, "benchsensor:", err)
			return 1
		}
		<-sigs
		return 0
	case "crash":
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
		if _, err := os.Stat(base + ".crashed"); err == nil {
			<-sigs // the restart after the measured crash: idle until stopped
			return 0
		}
		if err := writeMarkAtomic(base+".pid", int64(os.Getpid())); err != nil {
			fmt.Fprintln(os.Stderr, "benchsensor:", err)
			return 1
		}
		for sig := range sigs {
			if sig != syscall.SIGUSR1 {
				return 0
			}
			// The harness reads this file only after the agent reported the
			// exit, so a plain write (no rename) is enough and keeps the gap
			// between this stamp and the real exit to a few microseconds.
			now := time.Now().UnixNano()
			os.WriteFile(base+".crashed", []byte(strconv.FormatInt(now, 10)+"\n"), 0o644)
			return 3
		}
		return 0
	default:
		fmt.Fprintf(os.Stderr, "benchsensor: unknown role %q (want mark or crash)\n", role)
		return 2
	}
}

// writeMarkAtomic writes v and a newline to path through a rename, so a
// harness polling for path never reads half a number.
func writeMarkAtomic(path string, v int64) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(v, 10)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write mark: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write mark: %w", err)
	}
	return nil
}
