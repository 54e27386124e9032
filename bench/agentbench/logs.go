package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// runLogs measures item 8: sensor output shipped to the API as segmented
// log streams (CONTRACT §13). One noisy sensor writes -bytes of output as
// fast as it can (yes | head): the bytes per second the agent ships, from
// the sensor's start to the last flood segment committed, and the agent's
// CPU per MB over the same span. A second sensor writes one line "stamp
// <unix ns>" every 50 ms; after the flood, for -window, each line's latency
// from written to committed (readable through the API) is sampled.
func runLogs(ctx context.Context, args []string, logw io.Writer) error {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	var c benchCommon
	c.register(fs)
	size := fs.Int64("bytes", 200<<20, "bytes the noisy sensor writes")
	window := fs.Duration("window", 10*time.Second, "latency sampling window after the flood")
	stack, err := c.open(fs, args)
	if err != nil {
		return err
	}
	defer stack.close()
	sensors := filepath.Join(stack.packs, "benchpack", "sensors")
	scripts := map[string]string{
		"noisy":   fmt.Sprintf("#!/bin/sh\nyes 'flood flood flood flood flood flood flood flood flood flood flood' | head -c %d\nexec sleep 1000000\n", *size),
		"stamper": "#!/bin/sh\nwhile :; do echo \"stamp $(date +%s%N)\"; sleep 0.05; done\n",
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(sensors, name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	mqURL, err := stack.useBroker(ctx)
	if err != nil {
		return err
	}
	_, dbURL, err := stack.newDatabase(ctx)
	if err != nil {
		return err
	}
	if _, err := seedSensors(ctx, dbURL, "n", "noisy", 1, true); err != nil {
		return err
	}
	if _, err := seedSensors(ctx, dbURL, "s", "stamper", 1, true); err != nil {
		return err
	}
	agent, err := startAgentRun(c.stack.AgentBin, stack.agentEnv(agentOptions{DBURL: dbURL, MQURL: mqURL,
		WorkerName: "bench-logs", MaxSensors: 10}), filepath.Join(c.out, "agent.log"))
	if err != nil {
		return err
	}
	defer agent.stop(45 * time.Second)

	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	line, _, err := agent.waitMsg(wctx, 0, "sensor started", "benchpack.n0001")
	if err != nil {
		return err
	}
	cpu0, err := procCPUTicks(agent.pid())
	if err != nil {
		return err
	}
	started := line.Time
	deadline := time.Now().Add(300 * time.Second)
	var flood int64
	var last time.Time
	for stable := 0; stable < 25; { // 5 s without progress ends a short flood
		if !sleepCtxBench(ctx, 200*time.Millisecond) || time.Now().After(deadline) {
			return fmt.Errorf("flood not shipped in time: %d of %d bytes", flood, *size)
		}
		n, _, l, _, _, _ := stack.api.logs.snapshot()
		if n == *size {
			flood, last = n, l
			break
		}
		if n == flood {
			stable++
		} else {
			stable = 0
		}
		flood, last = n, l
	}
	cpu1, err := procCPUTicks(agent.pid())
	if err != nil {
		return err
	}
	span := last.Sub(started)
	cpuSec := float64(cpu1-cpu0) / float64(clockTicksPerSecond())
	mb := float64(flood) / 1e6

	stack.api.logs.resetLatencies()
	if !sleepCtxBench(ctx, *window) {
		return ctx.Err()
	}
	_, _, _, lat, _, _ := stack.api.logs.snapshot()
	if code := agent.stop(45 * time.Second); code != 0 {
		return fmt.Errorf("agent exit code %d after SIGTERM", code)
	}
	_, _, _, _, seals, refused := stack.api.logs.snapshot()

	sum := newSummary()
	sum.put("flood_bytes_written", float64(*size))
	sum.put("flood_bytes_shipped", float64(flood))
	sum.put("flood_seconds", span.Seconds())
	sum.put("flood_mb_per_s", mb/span.Seconds())
	sum.put("agent_cpu_seconds", cpuSec)
	sum.put("agent_cpu_ms_per_mb", 1000*cpuSec/mb)
	sum.putDist("latency_ms", lat)
	sum.put("seals", float64(seals))
	sum.put("segments_refused", float64(refused))
	writeSamples(filepath.Join(c.out, "latency.samples"), lat)
	fmt.Fprintf(logw, "logs: %.1f MB in %s (%.1f MB/s), %.2f ms CPU/MB, latency p50 %.1f ms\n",
		mb, span.Round(time.Millisecond), mb/span.Seconds(), 1000*cpuSec/mb, percentile(lat, 50))
	return sum.write(filepath.Join(c.out, "summary.tsv"))
}
