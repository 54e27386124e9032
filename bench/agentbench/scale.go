package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// runScale measures item 6 for each sensor count: time from the agent's
// exec until every sensor has started, the agent's peak and idle RSS, its
// CPU over an idle window, and the statements it sends per reconcile pass.
func runScale(ctx context.Context, args []string, logw io.Writer) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	var c benchCommon
	c.register(fs)
	countsFlag := fs.String("counts", "100,500,1000", "sensor counts, comma-separated")
	window := fs.Duration("window", 60*time.Second, "idle window for CPU and statements")
	settle := fs.Duration("settle", 3*time.Second, "pause between all started and the idle window")
	var extraEnv benchEnvList
	fs.Var(&extraEnv, "agent-env", "NAME=value added to the agent's environment (repeatable; for experiments, e.g. GOGC)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	var counts []int
	for _, f := range strings.Split(*countsFlag, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return fmt.Errorf("-counts: %q is not a positive number", f)
		}
		counts = append(counts, v)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		fmt.Fprintf(logw, "RLIMIT_NOFILE soft %d hard %d (the agent raises soft to hard; it needs about 5 per sensor)\n", rl.Cur, rl.Max)
		if big := counts[len(counts)-1]; rl.Max < uint64(6*big+100) {
			fmt.Fprintf(logw, "warning: hard RLIMIT_NOFILE %d may be too low for %d sensors\n", rl.Max, big)
		}
	}
	stack, err := newBenchStack(c.stack)
	if err != nil {
		return err
	}
	defer stack.close()
	mqURL, err := stack.useBroker(ctx)
	if err != nil {
		return err
	}
	stats, err := newStatementCounter(ctx, c.stack.AdminDB)
	if err != nil {
		return err
	}
	defer stats.close()
	fmt.Fprintf(logw, "statement counting: %s\n", stats.method)

	sum := newSummary()
	sum.put("statements_exact", boolNum(stats.method == methodStatements))
	sum.put("window_s", window.Seconds())
	var table strings.Builder
	table.WriteString("sensors\tall_running_ms\tfrom_ready_ms\thwm_kb\trss_kb\tthreads\tfds\tcpu_pct\tpasses\tstatements_per_pass\trows_per_pass\theartbeat_statements\tother_statements\txact_per_pass\tfloor_ms\tstartup_cpu_ms\tanon_kb\tlive_heap_mb\tpeak_heap_mb\tstacks_mb\tprocess_rows_running\tprocess_record_failures\n")
	for _, n := range counts {
		r, err := scaleRun(ctx, stack, stats, mqURL, n, *window, *settle, extraEnv, c.out)
		if err != nil {
			return fmt.Errorf("%d sensors: %w", n, err)
		}
		fmt.Fprintf(logw, "%d sensors: all running %.0f ms after exec (%.0f ms after ready), VmHWM %d kB, VmRSS %d kB, CPU %.3f %%, %.3f statements/pass over %d passes\n",
			n, r.allRunning, r.fromReady, r.hwmKB, r.rssKB, r.cpuPct, r.perPass, r.passes)
		p := "n" + strconv.Itoa(n) + "_"
		sum.put(p+"all_running_ms", r.allRunning)
		sum.put(p+"from_ready_ms", r.fromReady)
		sum.put(p+"hwm_kb", float64(r.hwmKB))
		sum.put(p+"rss_kb", float64(r.rssKB))
		sum.put(p+"threads", float64(r.threads))
		sum.put(p+"fds", float64(r.fds))
		sum.put(p+"cpu_pct", r.cpuPct)
		sum.put(p+"passes", float64(r.passes))
		sum.put(p+"statements_per_pass", r.perPass)
		sum.put(p+"rows_per_pass", r.rowsPerPass)
		sum.put(p+"heartbeat_statements", float64(r.heartbeats))
		sum.put(p+"other_statements", float64(r.others))
		sum.put(p+"xact_per_pass", r.xactPerPass)
		sum.put(p+"floor_ms", r.floor)
		sum.put(p+"startup_cpu_ms", r.startupCPU)
		sum.put(p+"anon_kb", float64(r.anonKB))
		sum.put(p+"live_heap_mb", float64(r.liveMB))
		sum.put(p+"peak_heap_mb", float64(r.peakHeapMB))
		sum.put(p+"stacks_mb", float64(r.stacksMB))
		sum.put(p+"process_rows_running", float64(r.processRowsRunning))
		sum.put(p+"process_record_failures", float64(r.processRecordFailures))
		fmt.Fprintf(&table, "%d\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%.3f\t%d\t%.3f\t%.1f\t%d\t%d\t%.3f\t%.1f\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\n", n, r.allRunning, r.fromReady,
			r.hwmKB, r.rssKB, r.threads, r.fds, r.cpuPct, r.passes, r.perPass, r.rowsPerPass, r.heartbeats, r.others, r.xactPerPass,
			r.floor, r.startupCPU, r.anonKB, r.liveMB, r.peakHeapMB, r.stacksMB, r.processRowsRunning, r.processRecordFailures)
		os.WriteFile(filepath.Join(c.out, "statements-"+strconv.Itoa(n)+".tsv"), []byte(r.statements), 0o644)
	}
	if err := os.WriteFile(filepath.Join(c.out, "scale.tsv"), []byte(table.String()), 0o644); err != nil {
		return err
	}
	return sum.write(filepath.Join(c.out, "summary.tsv"))
}

func boolNum(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// scaleResult is one sensor count's measurements.
type scaleResult struct {
	allRunning, fromReady float64 // ms
	hwmKB, rssKB          int64
	threads, fds          int
	cpuPct                float64
	passes                int64
	perPass, rowsPerPass  float64
	heartbeats, others    int64
	xactPerPass           float64
	statements            string  // calls, rows, query per line
	floor                 float64 // ms: the same scripts started at once by the harness
	startupCPU            float64 // ms of agent CPU from exec to all running
	anonKB                int64   // anonymous part of the RSS (smaps_rollup)
	liveMB, peakHeapMB    int64   // live heap after the last GC of the window; largest heap at a GC start
	stacksMB              int64   // goroutine stacks at the last GC
	processRowsRunning    int     // sensor_process rows with status running at the end
	processRecordFailures int     // "sensor_process update failed" lines (the agent logs one per outage)
}

// countRunningProcessRows counts the sensor_process rows that say running.
func countRunningProcessRows(ctx context.Context, dbURL string) (int, error) {
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	var n int
	err = c.QueryRow(ctx, `SELECT count(*) FROM attune.sensor_process WHERE status = 'running'`).Scan(&n)
	return n, err
}

func scaleRun(ctx context.Context, stack *benchStack, stats *statementCounter, mqURL string, n int, window, settle time.Duration, extraEnv []string, out string) (scaleResult, error) {
	var r scaleResult
	if err := stack.clearMarks(); err != nil {
		return r, err
	}
	dbName, dbURL, err := stack.newDatabase(ctx)
	if err != nil {
		return r, err
	}
	if _, err := seedSensors(ctx, dbURL, "s", "idle", n, true); err != nil {
		return r, err
	}
	floor, err := directStart(ctx, stack, n)
	if err != nil {
		return r, err
	}
	r.floor = ms(floor)
	// gctrace only adds a line to stderr per collection: it shows how much
	// of the RSS is live heap, garbage or stacks.
	agent, err := startAgentRun(stack.cfg.AgentBin, stack.agentEnv(agentOptions{DBURL: dbURL, MQURL: mqURL,
		WorkerName: "bench-scale-" + strconv.Itoa(n), MaxSensors: n + 100, Extra: append([]string{"GODEBUG=gctrace=1"}, extraEnv...)}),
		filepath.Join(out, "agent-"+strconv.Itoa(n)+".log"))
	if err != nil {
		return r, err
	}
	defer agent.stop(60 * time.Second)

	// All running: every sensor's shell has written its mark (then it execs
	// sleep). Polled every 20 ms: that is the resolution of this number.
	deadline := time.Now().Add(3 * time.Minute)
	for stack.countMarks(".up") < n {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("only %d of %d sensors started within 3 min", stack.countMarks(".up"), n)
		}
		select {
		case <-agent.done:
			return r, fmt.Errorf("agent exited while starting sensors: %w", errAgentExited)
		default:
		}
		if !sleepCtxBench(ctx, 20*time.Millisecond) {
			return r, ctx.Err()
		}
	}
	allAt := time.Now()
	r.allRunning = ms(allAt.Sub(agent.started))
	tps := clockTicksPerSecond()
	if ticks, err := procCPUTicks(agent.pid()); err == nil {
		r.startupCPU = float64(ticks) * 1000 / float64(tps)
	}
	ready, _, err := agent.waitMsg(ctx, 0, "Attune Sensor Agent is ready", "")
	if err != nil {
		return r, err
	}
	r.fromReady = ms(allAt.Sub(ready.Time))
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := waitAllStarted(wctx, stack, agent, n, ".up"); err != nil {
		return r, err
	}
	if alive := len(markedProcs(stack.marker())); alive != n {
		return r, fmt.Errorf("%d sensor processes alive, want %d", alive, n)
	}

	if !sleepCtxBench(ctx, settle) {
		return r, ctx.Err()
	}
	if err := stats.reset(ctx, dbName); err != nil {
		return r, err
	}
	c0, err := procCPUTicks(agent.pid())
	if err != nil {
		return r, err
	}
	w0 := time.Now()
	if !sleepCtxBench(ctx, window) {
		return r, ctx.Err()
	}
	c1, err := procCPUTicks(agent.pid())
	if err != nil {
		return r, err
	}
	elapsed := time.Since(w0)
	st, err := procStatusKB(agent.pid())
	if err != nil {
		return r, err
	}
	r.hwmKB, r.rssKB, r.threads = st["VmHWM"], st["VmRSS"], int(st["Threads"])
	r.fds = countFDs(agent.pid())
	r.cpuPct = float64(c1-c0) / float64(tps) / elapsed.Seconds() * 100
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", agent.pid())); err == nil {
		r.anonKB = parseProcStatus(b)["Anonymous"]
	}
	for _, g := range agent.gcTraces() {
		r.peakHeapMB = max(r.peakHeapMB, g.Start)
		r.liveMB, r.stacksMB = g.Live, g.Stacks
	}
	counts, err := stats.read(ctx, dbName, elapsed)
	if err != nil {
		return r, err
	}
	r.passes, r.heartbeats, r.others, r.statements = counts.passes, counts.heartbeats, counts.others, counts.listing
	if counts.passes > 0 {
		r.perPass = float64(counts.reconcile) / float64(counts.passes)
		r.rowsPerPass = float64(counts.reconcileRows) / float64(counts.passes)
		r.xactPerPass = float64(counts.xacts) / float64(counts.passes)
	}
	// What operators would see: the agent keeps one sensor_process row per
	// sensor (current schema); after the window every one should say running.
	if r.processRowsRunning, err = countRunningProcessRows(ctx, dbURL); err != nil {
		return r, err
	}
	r.processRecordFailures = agent.count(func(l agentLogLine) bool { return l.Msg == "sensor_process update failed" })
	if code := agent.stop(60 * time.Second); code != 0 {
		return r, fmt.Errorf("agent exit code %d after SIGTERM", code)
	}
	return r, nil
}

// benchEnvList collects repeated NAME=value flags.
type benchEnvList []string

func (l *benchEnvList) String() string { return strings.Join(*l, " ") }

func (l *benchEnvList) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q is not NAME=value", v)
	}
	*l = append(*l, v)
	return nil
}
