package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// runShutdown measures item 5: an agent running N sensors whose processes
// ignore SIGTERM gets SIGTERM; the time until the agent has exited, and how
// many sensor processes are left at that moment (there must be none).
func runShutdown(ctx context.Context, args []string, logw io.Writer) error {
	fs := flag.NewFlagSet("shutdown", flag.ContinueOnError)
	var c benchCommon
	c.register(fs)
	n := fs.Int("sensors", 100, "sensors ignoring SIGTERM")
	trials := fs.Int("trials", 3, "agent runs")
	stack, err := c.open(fs, args)
	if err != nil {
		return err
	}
	defer stack.close()
	mqURL, err := stack.useBroker(ctx)
	if err != nil {
		return err
	}
	_, dbURL, err := stack.newDatabase(ctx)
	if err != nil {
		return err
	}
	if _, err := seedSensors(ctx, dbURL, "t", "stubborn", *n, true); err != nil {
		return err
	}
	var durs []float64
	sum := newSummary()
	leftMax, ignoringMin, killedMin, codeMax := 0, *n, *n, 0
	for trial := range *trials {
		r, err := shutdownTrial(ctx, stack, dbURL, mqURL, *n, filepath.Join(c.out, "agent-"+strconv.Itoa(trial+1)+".log"))
		if err != nil {
			return fmt.Errorf("trial %d: %w", trial+1, err)
		}
		fmt.Fprintf(logw, "trial %d: %d sensors (%d ignoring SIGTERM), agent exited %d after %.1f ms, %d processes left, %d killed after the grace\n",
			trial+1, *n, r.ignoring, r.code, ms(r.dur), r.left, r.killed)
		durs = append(durs, ms(r.dur))
		leftMax, ignoringMin = max(leftMax, r.left), min(ignoringMin, r.ignoring)
		killedMin, codeMax = min(killedMin, r.killed), max(codeMax, r.code)
	}
	sum.put("sensors", float64(*n))
	sum.putDist("shutdown_ms", durs)
	sum.put("left_max", float64(leftMax))
	sum.put("ignoring_term_min", float64(ignoringMin))
	sum.put("killed_after_grace_min", float64(killedMin))
	sum.put("exit_code_max", float64(codeMax))
	writeSamples(filepath.Join(c.out, "shutdown.samples"), durs)
	return sum.write(filepath.Join(c.out, "summary.tsv"))
}

// shutdownOutcome is one trial's result.
type shutdownOutcome struct {
	dur      time.Duration // SIGTERM sent → agent reaped
	code     int
	left     int // sensor processes alive right after the agent exited
	ignoring int // sensor processes that had SIGTERM ignored before the stop
	killed   int // "killed its process group" lines: sensors that needed SIGKILL
}

func shutdownTrial(ctx context.Context, stack *benchStack, dbURL, mqURL string, n int, logPath string) (shutdownOutcome, error) {
	var o shutdownOutcome
	if err := stack.clearMarks(); err != nil {
		return o, err
	}
	agent, err := startAgentRun(stack.cfg.AgentBin, stack.agentEnv(agentOptions{DBURL: dbURL, MQURL: mqURL,
		WorkerName: "bench-shutdown", MaxSensors: n + 50}), logPath)
	if err != nil {
		return o, err
	}
	defer agent.stop(60 * time.Second)
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	if err := waitAllStarted(wctx, stack, agent, n, ".up"); err != nil {
		return o, err
	}
	pids := markedProcs(stack.marker())
	if len(pids) != n {
		return o, fmt.Errorf("%d sensor processes alive, want %d", len(pids), n)
	}
	for _, pid := range pids {
		if ign, err := procIgnoresSIGTERM(pid); err == nil && ign {
			o.ignoring++
		}
	}

	t0 := time.Now()
	if err := agent.signal(syscall.SIGTERM); err != nil {
		return o, err
	}
	ectx, ecancel := context.WithTimeout(ctx, 60*time.Second)
	defer ecancel()
	exitAt, code, err := agent.wait(ectx)
	if err != nil {
		return o, err
	}
	o.left = len(markedProcs(stack.marker()))
	o.dur, o.code = exitAt.Sub(t0), code
	if o.left > 0 {
		stack.killLeftovers()
	}
	select { // every log line read before counting
	case <-agent.readEOF:
	case <-time.After(5 * time.Second):
	}
	o.killed = agent.count(func(l agentLogLine) bool {
		return l.Msg == "sensor did not stop in time, killed its process group"
	})
	return o, nil
}

// waitAllStarted waits until n sensors have left a mark ending in suffix and
// the agent has logged n distinct "sensor started" lines.
func waitAllStarted(ctx context.Context, stack *benchStack, agent *agentRun, n int, suffix string) error {
	for stack.countMarks(suffix) < n || countStarted(agent) < n {
		if !sleepCtxBench(ctx, 10*time.Millisecond) {
			return fmt.Errorf("only %d of %d sensors started (%d start lines): %w",
				stack.countMarks(suffix), n, countStarted(agent), ctx.Err())
		}
		select {
		case <-agent.done:
			return fmt.Errorf("agent exited while starting sensors: %w", errAgentExited)
		default:
		}
	}
	return nil
}

// countStarted is the number of distinct sensors the agent logged as started.
func countStarted(agent *agentRun) int {
	var refs []string
	agent.count(func(l agentLogLine) bool {
		if l.Msg == "sensor started" {
			refs = append(refs, l.Sensor)
		}
		return false
	})
	slices.Sort(refs)
	return len(slices.Compact(refs))
}
