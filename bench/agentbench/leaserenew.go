package main

// leaserenew.go is `agentbench renewals` (item 9): for each count N, one
// agent on a fresh lease-generation database starts N idle sensors (the time
// from the agent's fork/exec until every sensor has written its mark is the
// "N sensors from start to all running, with leases" figure), then its
// database traffic goes through pgcount.go's proxy for a window, and every
// transaction holding the batched renewal UPDATE is one renewal tick whose
// statements are counted. The count must not grow with N.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

func runRenewals(ctx context.Context, args []string, logw io.Writer) error {
	fs := flag.NewFlagSet("renewals", flag.ContinueOnError)
	var c benchCommon
	c.register(fs)
	countsFlag := fs.String("counts", "100,500,1000", "held lease counts")
	window := fs.Duration("window", 10*time.Second, "counting window after all sensors run")
	scale := fs.Float64("scale", 30, "ATTUNE_SENSOR_AGENT_TEST_LEASE_SCALE (renewal tick every 30 s / scale)")
	count := fs.Bool("count-statements", true, "route the agent's database traffic through the counting proxy (false: start-up time only)")
	stack, err := c.open(fs, args)
	if err != nil {
		return err
	}
	defer stack.close()
	var counts []int
	for _, f := range strings.Split(*countsFlag, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return fmt.Errorf("-counts: %q is not a positive count", f)
		}
		counts = append(counts, v)
	}
	mqURL, err := stack.useBroker(ctx)
	if err != nil {
		return err
	}
	sum := newSummary()
	sum.put("scale", *scale)
	var perTick []int
	for _, n := range counts {
		r, err := renewalRun(ctx, stack, mqURL, n, *window, *scale, *count, c.out)
		if err != nil {
			return fmt.Errorf("%d leases: %w", n, err)
		}
		key := strconv.Itoa(n)
		sum.put("all_running_ms_"+key, r.allRunning)
		if !*count {
			fmt.Fprintf(logw, "start-up %d: all running after %.0f ms (no proxy)\n", n, r.allRunning)
			continue
		}
		fmt.Fprintf(logw, "renewals %d: all running after %.0f ms; %d ticks, statements per tick %v; %d leases renewed in the window\n",
			n, r.allRunning, len(r.ticks), r.ticks, r.renewed)
		sum.put("ticks_"+key, float64(len(r.ticks)))
		sum.put("stmts_per_tick_min_"+key, float64(slices.Min(r.ticks)))
		sum.put("stmts_per_tick_max_"+key, float64(slices.Max(r.ticks)))
		sum.put("renewed_"+key, float64(r.renewed))
		perTick = append(perTick, r.ticks...)
	}
	if len(perTick) > 0 {
		// The spread of statements per tick over every N.
		sum.put("stmts_per_tick_spread", float64(slices.Max(perTick)-slices.Min(perTick)))
	}
	sum.put("token_requests", float64(stack.api.tokenCalls.Load()))
	sum.put("unfenced_token_requests", float64(stack.api.unfenced.Load()))
	return sum.write(filepath.Join(c.out, "summary.tsv"))
}

// renewalResult is one count's measurement.
type renewalResult struct {
	allRunning float64 // ms from fork/exec to every sensor's mark
	ticks      []int   // statements of each renewal transaction in the window
	renewed    int     // leases whose renewed_at falls in the window
}

func renewalRun(ctx context.Context, stack *benchStack, mqURL string, n int, window time.Duration, scale float64, count bool, out string) (renewalResult, error) {
	var r renewalResult
	_, dbURL, err := stack.newDatabase(ctx)
	if err != nil {
		return r, err
	}
	if err := stack.clearMarks(); err != nil {
		return r, err
	}
	if _, err := seedSensors(ctx, dbURL, "l", "idle", n, true); err != nil {
		return r, err
	}
	agentDB := dbURL
	var proxy *pgCountProxy
	if count {
		if proxy, agentDB, err = startPGCountProxy(dbURL); err != nil {
			return r, err
		}
		defer proxy.close()
	}
	name := "bench-renew-" + strconv.Itoa(n)
	agent, err := startAgentRun(stack.cfg.AgentBin, stack.agentEnv(agentOptions{DBURL: agentDB, MQURL: mqURL,
		WorkerName: name, MaxSensors: n + 10,
		Extra: []string{"ATTUNE_SENSOR_AGENT_TEST_LEASE_SCALE=" + strconv.FormatFloat(scale, 'f', -1, 64)}}),
		filepath.Join(out, "agent-"+strconv.Itoa(n)+".log"))
	if err != nil {
		return r, err
	}
	defer func() {
		agent.stop(60 * time.Second)
		stack.killLeftovers()
	}()
	if err := waitMarksCount(ctx, stack, n, 3*time.Minute); err != nil {
		return r, err
	}
	r.allRunning = ms(time.Now().Sub(agent.started))
	if !count {
		return r, nil
	}
	// Let the start-up settle (every lease shortened, the first ticks done),
	// then count whole ticks in the window.
	if !sleepCtxBench(ctx, time.Duration(float64(30*time.Second)/scale)*2) {
		return r, ctx.Err()
	}
	_, before := proxy.tally.snapshot()
	w0 := time.Now()
	if !sleepCtxBench(ctx, window) {
		return r, ctx.Err()
	}
	_, after := proxy.tally.snapshot()
	r.ticks = after[len(before):]
	if len(r.ticks) == 0 {
		return r, fmt.Errorf("no renewal transaction seen in %v (is the renewal statement still lease.go's batched UPDATE?)", window)
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return r, err
	}
	defer db.Close(context.Background())
	err = db.QueryRow(ctx, `SELECT count(*) FROM attune.sensor_workload_assignment a JOIN attune.worker k ON k.id = a.worker
WHERE k.name = $1 AND a.renewed_at >= $2 AND a.lease_expires_at > clock_timestamp()`, name, w0).Scan(&r.renewed)
	if err != nil {
		return r, fmt.Errorf("count renewed leases: %w", err)
	}
	if r.renewed != n {
		return r, fmt.Errorf("%d of %d leases renewed in the window", r.renewed, n)
	}
	return r, nil
}
