package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"time"
)

// runCrash measures item 4: a sensor exits → the agent notices. n sensors
// each crash once (a restart is 1 s or more of backoff away, so one sensor
// crashing n times would measure the backoff, not the notice): on SIGUSR1 a
// sensor stamps the time and exits 3 at once; the agent's "sensor exited"
// line carries the time the agent logged the exit.
func runCrash(ctx context.Context, args []string, logw io.Writer) error {
	fs := flag.NewFlagSet("crash", flag.ContinueOnError)
	var c benchCommon
	c.register(fs)
	n := fs.Int("n", 40, "sensors, each crashing once")
	stack, err := c.open(fs, args)
	if err != nil {
		return err
	}
	defer stack.close()
	rng := rand.New(rand.NewPCG(c.seed, 4))
	mqURL, err := stack.useBroker(ctx)
	if err != nil {
		return err
	}
	_, dbURL, err := stack.newDatabase(ctx)
	if err != nil {
		return err
	}
	sensors, err := seedSensors(ctx, dbURL, "c", "crash", *n, true)
	if err != nil {
		return err
	}
	agent, err := startAgentRun(c.stack.AgentBin, stack.agentEnv(agentOptions{DBURL: dbURL, MQURL: mqURL,
		WorkerName: "bench-crash", MaxSensors: *n + 10}), filepath.Join(c.out, "agent.log"))
	if err != nil {
		return err
	}
	defer agent.stop(45 * time.Second)

	// Every sensor running and supervised: its pid mark exists and the
	// agent has logged its start.
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	pids := make([]int64, len(sensors))
	for i, sp := range sensors {
		if pids[i], err = waitMark(wctx, stack, sp.Ref+".pid", 90*time.Second); err != nil {
			return err
		}
		if _, _, err := agent.waitMsg(wctx, 0, "sensor started", sp.Ref); err != nil {
			return err
		}
	}

	var byLog, byRead []float64
	for i, sp := range sensors {
		if !sleepCtxBench(ctx, time.Duration(50+rng.IntN(200))*time.Millisecond) {
			return ctx.Err()
		}
		from := agent.nLines()
		if err := syscall.Kill(int(pids[i]), syscall.SIGUSR1); err != nil {
			return fmt.Errorf("signal %s (pid %d): %w", sp.Ref, pids[i], err)
		}
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		line, _, err := agent.waitMsg(lctx, from, "sensor exited", sp.Ref)
		lcancel()
		if err != nil {
			return err
		}
		exited, ok := stack.readMark(sp.Ref + ".crashed")
		if !ok {
			return fmt.Errorf("%s: the agent reported an exit but the sensor wrote no exit stamp", sp.Ref)
		}
		byLog = append(byLog, ms(line.Time.Sub(time.Unix(0, exited))))
		byRead = append(byRead, ms(line.Read.Sub(time.Unix(0, exited))))
	}
	if code := agent.stop(45 * time.Second); code != 0 {
		return fmt.Errorf("agent exit code %d after SIGTERM", code)
	}

	sum := newSummary()
	sum.putDist("notice_log_ms", byLog)
	sum.putDist("notice_read_ms", byRead)
	writeSamples(filepath.Join(c.out, "notice-log.samples"), byLog)
	writeSamples(filepath.Join(c.out, "notice-read.samples"), byRead)
	fmt.Fprintf(logw, "crash: %d sensors, p50 %.3f ms\n", len(sensors), percentile(byLog, 50))
	return sum.write(filepath.Join(c.out, "summary.tsv"))
}
