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
	"strings"
	"sync"
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
		churn := 0
		samples, err := failoverRuns(ctx, stack, mqURL, sig, *agents, *n, *reps, *scale, c.out, &churn, logw)
		if err != nil {
			return fmt.Errorf("%s: %w", sig, err)
		}
		sum.putDist(sig+"_ms", samples)
		sum.put(sig+"_survivor_restarts", float64(churn))
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
func failoverRuns(ctx context.Context, stack *benchStack, mqURL, sig string, agents, n, reps int, scale float64, out string, churn *int, logw io.Writer) ([]float64, error) {
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
		// Stopped together; unshare does not pass SIGTERM on, so the
		// namespaced agents are killed (their sensors die with them).
		var wg sync.WaitGroup
		for _, a := range fleet {
			if a == nil || a.run == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if sig == "sigkill" {
					a.run.signal(syscall.SIGKILL)
				}
				a.run.stop(30 * time.Second)
			}()
		}
		wg.Wait()
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
		before := sensorProcs(stack.marker())
		victimPIDs := map[int]bool{}
		held := map[string]bool{}
		for _, ref := range refs {
			held[ref] = true
		}
		for pid, ref := range before {
			if held[ref] {
				victimPIDs[pid] = true
			}
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
		at, churned, err := waitAllRunning(ctx, stack, n, victimPIDs, before, 5*time.Minute)
		if err != nil {
			return nil, fmt.Errorf("rep %d: %w", rep, err)
		}
		d := ms(at.Sub(t0))
		samples = append(samples, d)
		*churn += churned
		fmt.Fprintf(logw, "failover %s rep %d: %s held %d sensors; all %d running again after %.0f ms; %d sensors of the survivors restarted meanwhile\n",
			sig, rep, victim.name, len(refs), n, d, churned)
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

// waitAllRunning polls the process table until every one of the n sensors
// has a live process that is not one of the victim's; it returns that
// moment and how many survivors' sensors got a new process meanwhile (a
// sensor stopped on a survivor to make room is a failover cost too).
func waitAllRunning(ctx context.Context, stack *benchStack, n int, victimPIDs map[int]bool, before map[int]string, timeout time.Duration) (time.Time, int, error) {
	deadline := time.Now().Add(timeout)
	for {
		now := time.Now()
		procs := sensorProcs(stack.marker())
		running := map[string]bool{}
		for pid, ref := range procs {
			if !victimPIDs[pid] {
				running[ref] = true
			}
		}
		if len(running) >= n {
			churned := 0
			for pid := range before {
				if _, alive := procs[pid]; !alive && !victimPIDs[pid] {
					churned++
				}
			}
			return now, churned, nil
		}
		if now.After(deadline) {
			return now, 0, fmt.Errorf("only %d of %d sensors running %v after the signal", len(running), n, timeout)
		}
		if !sleepCtxBench(ctx, 20*time.Millisecond) {
			return now, 0, ctx.Err()
		}
	}
}

// sensorProcs maps the live sensor processes of this stack to their refs.
func sensorProcs(marker string) map[int]string {
	out := map[int]string{}
	for _, pid := range markedProcs(marker) {
		env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if ref, ok := strings.CutPrefix(kv, "ATTUNE_SENSOR_REF="); ok {
				out[pid] = ref
			}
		}
	}
	return out
}
