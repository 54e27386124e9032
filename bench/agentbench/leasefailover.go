package main

// leasefailover.go is `agentbench failover` (item 9): three agents share one
// database on the lease generation; the one holding the most leases is
// stopped with SIGTERM, or SIGKILLed inside its own PID namespace (unshare,
// so its sensors die with it as in a container), and the clock runs until
// every sensor it held has started again on another agent. Lease numbers are
// divided by ATTUNE_SENSOR_AGENT_TEST_LEASE_SCALE so a repetition takes
// seconds, not minutes.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

func runFailover(ctx context.Context, args []string, logw io.Writer) error {
	fs := flag.NewFlagSet("failover", flag.ContinueOnError)
	var c benchCommon
	c.register(fs)
	agents := fs.Int("agents", 3, "agents sharing the database")
	n := fs.Int("sensors", 30, "sensors (even; each agent's capacity is half of them)")
	reps := fs.Int("reps", 5, "repetitions per signal")
	scale := fs.Float64("scale", 30, "ATTUNE_SENSOR_AGENT_TEST_LEASE_SCALE")
	stack, err := c.open(fs, args)
	if err != nil {
		return err
	}
	defer stack.close()
	if *agents < 3 || *n < 2 || *reps < 1 || *scale < 1 {
		return fmt.Errorf("need -agents ≥ 3, -sensors ≥ 2, -reps ≥ 1, -scale ≥ 1")
	}
	mqURL, err := stack.useBroker(ctx)
	if err != nil {
		return err
	}
	sum := newSummary()
	for _, sig := range []string{"sigterm", "sigkill"} {
		samples, err := failoverRuns(ctx, stack, mqURL, sig, *agents, *n, *reps, *scale, c.out, logw)
		if err != nil {
			return fmt.Errorf("%s: %w", sig, err)
		}
		sum.putDist(sig+"_ms", samples)
		if err := writeSamples(filepath.Join(c.out, sig+".samples"), samples); err != nil {
			return err
		}
	}
	renewal := 120 / *scale
	sum.put("scale", *scale)
	sum.put("renewal_lease_s", renewal)
	sum.put("sensors", float64(*n))
	sum.put("reps", float64(*reps))
	sum.put("token_requests", float64(stack.api.tokenCalls.Load()))
	sum.put("unfenced_token_requests", float64(stack.api.unfenced.Load()))
	return sum.write(filepath.Join(c.out, "summary.tsv"))
}

// failoverAgent is one of the agents sharing the database.
type failoverAgent struct {
	name string
	run  *agentRun
}

// failoverRuns measures reps failovers after sig on a fresh database.
func failoverRuns(ctx context.Context, stack *benchStack, mqURL, sig string, agents, n, reps int, scale float64, out string, logw io.Writer) ([]float64, error) {
	_, dbURL, err := stack.newDatabase(ctx)
	if err != nil {
		return nil, err
	}
	if err := stack.clearMarks(); err != nil {
		return nil, err
	}
	if _, err := seedSensors(ctx, dbURL, sig[3:]+"f", "idle", n, true); err != nil {
		return nil, err
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer db.Close(context.Background())
	capacity := (n + 1) / 2
	start := func(name string, gen int) (*agentRun, error) {
		env := stack.agentEnv(agentOptions{DBURL: dbURL, MQURL: mqURL, WorkerName: name, MaxSensors: capacity,
			Extra: []string{
				"ATTUNE__SENSOR__MAX_CONCURRENT_SENSORS=" + strconv.Itoa(capacity),
				"ATTUNE_SENSOR_AGENT_TEST_LEASE_SCALE=" + strconv.FormatFloat(scale, 'f', -1, 64),
				"ATTUNE_SENSOR_STATUS_FILE=" + filepath.Join(stack.dir, name+".status.json"),
			}})
		logPath := filepath.Join(out, fmt.Sprintf("%s-%d.log", name, gen))
		if sig == "sigkill" {
			unshare, err := exec.LookPath("unshare")
			if err != nil {
				return nil, fmt.Errorf("the SIGKILL case runs the agent in its own PID namespace and needs util-linux's unshare: %w", err)
			}
			return startAgentCmd(exec.Command(unshare, "--pid", "--fork", "--mount-proc", "--kill-child", stack.cfg.AgentBin), env, logPath)
		}
		return startAgentRun(stack.cfg.AgentBin, env, logPath)
	}
	fleet := make([]*failoverAgent, agents)
	for i := range fleet {
		fleet[i] = &failoverAgent{name: fmt.Sprintf("bench-%s-%d", sig, i)}
		if fleet[i].run, err = start(fleet[i].name, 0); err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, a := range fleet {
			a.run.stop(30 * time.Second)
		}
	}()
	if err := waitMarksCount(ctx, stack, n, 2*time.Minute); err != nil {
		return nil, err
	}
	var samples []float64
	for rep := 0; rep < reps; rep++ {
		victim, refs, err := busiestAgent(ctx, db, fleet)
		if err != nil {
			return nil, err
		}
		for _, ref := range refs {
			os.Remove(filepath.Join(stack.marks, ref+".up"))
		}
		t0 := time.Now()
		if sig == "sigkill" {
			err = victim.run.signal(syscall.SIGKILL)
		} else {
			err = victim.run.signal(syscall.SIGTERM)
		}
		if err != nil {
			return nil, err
		}
		last, err := waitRefsUp(ctx, stack, refs, 5*time.Minute)
		if err != nil {
			return nil, fmt.Errorf("rep %d: %w", rep, err)
		}
		d := ms(last.Sub(t0))
		samples = append(samples, d)
		fmt.Fprintf(logw, "failover %s rep %d: %s held %d sensors, all running again after %.0f ms\n", sig, rep, victim.name, len(refs), d)
		victim.run.wait(ctx)
		if victim.run, err = start(victim.name, rep+1); err != nil {
			return nil, err
		}
		// The restarted agent must be registered and live before the next
		// kill, or the survivors could lack the capacity to take over.
		if _, _, err := victim.run.waitMsg(ctx, 0, "Attune Sensor Agent is ready", ""); err != nil {
			return nil, err
		}
	}
	return samples, nil
}

// busiestAgent is the agent holding the most live leases, with the refs of
// the sensors it holds.
func busiestAgent(ctx context.Context, db *pgx.Conn, fleet []*failoverAgent) (*failoverAgent, []string, error) {
	var best *failoverAgent
	var bestRefs []string
	for _, a := range fleet {
		rows, err := db.Query(ctx, `SELECT s.ref FROM attune.sensor_workload_assignment a
JOIN attune.sensor_workload w ON w.id = a.workload JOIN attune.sensor s ON s.id = w.sensor
JOIN attune.worker k ON k.id = a.worker
WHERE k.name = $1 AND a.lease_expires_at > clock_timestamp() ORDER BY s.ref`, a.name)
		if err != nil {
			return nil, nil, fmt.Errorf("leases held: %w", err)
		}
		refs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, nil, fmt.Errorf("leases held: %w", err)
		}
		if best == nil || len(refs) > len(bestRefs) {
			best, bestRefs = a, refs
		}
	}
	if len(bestRefs) == 0 {
		return nil, nil, fmt.Errorf("no agent holds a lease")
	}
	return best, bestRefs, nil
}

// waitMarksCount waits until n sensors have written their .up mark.
func waitMarksCount(ctx context.Context, stack *benchStack, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for stack.countMarks(".up") < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d sensors started within %v", stack.countMarks(".up"), n, timeout)
		}
		if !sleepCtxBench(ctx, 20*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

// waitRefsUp waits until every ref has a fresh .up mark and returns the
// latest mark's time (the file's mtime: when that sensor's shell wrote it).
func waitRefsUp(ctx context.Context, stack *benchStack, refs []string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var last time.Time
	for i := 0; i < len(refs); {
		st, err := os.Stat(filepath.Join(stack.marks, refs[i]+".up"))
		if err == nil {
			if st.ModTime().After(last) {
				last = st.ModTime()
			}
			i++
			continue
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("%d of %d sensors did not run again within %v (first missing: %s)", len(refs)-i, len(refs), timeout, refs[i])
		}
		if !sleepCtxBench(ctx, 20*time.Millisecond) {
			return last, ctx.Err()
		}
	}
	return last, nil
}
