package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
)

// runReaction measures item 3: rule enabled (row update, then the
// RuleEnabled message) → the sensor's process started, first with the broker,
// then with the agent pointed at a dead broker port (only the 2 s reconcile
// pass can notice). Every trial enables the rule of its own, not yet running
// sensor; "started" is the first timestamp the sensor takes in main.
func runReaction(ctx context.Context, args []string, logw io.Writer) error {
	fs := flag.NewFlagSet("reaction", flag.ContinueOnError)
	var c benchCommon
	c.register(fs)
	n := fs.Int("n", 30, "measured trials per mode")
	stack, err := c.open(fs, args)
	if err != nil {
		return err
	}
	defer stack.close()
	rng := rand.New(rand.NewPCG(c.seed, 3))
	sum := newSummary()

	calib, err := calibrateMark(ctx, stack, max(*n, 10))
	if err != nil {
		return fmt.Errorf("calibration: %w", err)
	}
	sum.putDist("calibration_ms", calib)
	writeSamples(filepath.Join(c.out, "calibration.samples"), calib)

	mqURL, err := stack.useBroker(ctx)
	if err != nil {
		return err
	}
	dead, err := deadBrokerURL()
	if err != nil {
		return err
	}
	for _, mode := range []string{"broker", "nobroker"} {
		url := mqURL
		if mode == "nobroker" {
			url = dead
		}
		res, err := reactionRun(ctx, stack, mode, url, *n, rng, c.out, logw)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		sum.putDist(mode+"_ms", res.latency)
		sum.putDist(mode+"_agentlog_ms", res.agentLog)
		if mode == "broker" {
			sum.putDist(mode+"_publish_ms", res.publish)
		}
		writeSamples(filepath.Join(c.out, mode+".samples"), res.latency)
		writeSamples(filepath.Join(c.out, mode+"-agentlog.samples"), res.agentLog)
		if err := stack.clearMarks(); err != nil {
			return err
		}
	}
	sum.put("token_requests", float64(stack.api.tokenCalls.Load()))
	sum.put("unfenced_token_requests", float64(stack.api.unfenced.Load()))
	return sum.write(filepath.Join(c.out, "summary.tsv"))
}

// reactionResult holds one mode's samples (ms).
type reactionResult struct {
	latency  []float64 // rule enabled (commit returned) → sensor's first timestamp
	agentLog []float64 // rule enabled → the agent's "sensor started" line (after fork/exec returned)
	publish  []float64 // time the harness spent publishing the message
}

// reactionRun runs one agent and n+1 trials (the first is a warm-up).
func reactionRun(ctx context.Context, stack *benchStack, mode, mqURL string, n int, rng *rand.Rand, out string, logw io.Writer) (reactionResult, error) {
	var res reactionResult
	_, dbURL, err := stack.newDatabase(ctx)
	if err != nil {
		return res, err
	}
	sensors, err := seedSensors(ctx, dbURL, "r", "mark", n+1, false)
	if err != nil {
		return res, err
	}
	agent, err := startAgentRun(stack.cfg.AgentBin, stack.agentEnv(agentOptions{DBURL: dbURL, MQURL: mqURL,
		WorkerName: "bench-reaction-" + mode, MaxSensors: n + 10}), filepath.Join(out, "agent-"+mode+".log"))
	if err != nil {
		return res, err
	}
	defer agent.stop(45 * time.Second)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, _, err := agent.waitMsg(wctx, 0, "Attune Sensor Agent is ready", ""); err != nil {
		return res, err
	}
	var pub *amqp.Channel
	if mode == "broker" {
		if _, _, err := agent.waitMsg(wctx, 0, "broker connected", ""); err != nil {
			return res, err
		}
		conn, err := amqp.Dial(mqURL)
		if err != nil {
			return res, fmt.Errorf("dial broker: %w", err)
		}
		defer conn.Close()
		if pub, err = conn.Channel(); err != nil {
			return res, fmt.Errorf("broker channel: %w", err)
		}
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return res, err
	}
	defer db.Close(context.Background())

	for i, sp := range sensors {
		// Random gaps: with the broker they keep trials apart; without it
		// they spread the enable instants evenly over the 2 s reconcile
		// period (a fixed gap would lock onto one phase of it).
		gap := time.Duration(100+rng.IntN(400)) * time.Millisecond
		if mode == "nobroker" {
			gap = time.Duration(rng.IntN(2000)) * time.Millisecond
		}
		if i == 0 {
			gap = 0 // the warm-up is not counted
		}
		if !sleepCtxBench(ctx, gap) {
			return res, ctx.Err()
		}
		from := agent.nLines()
		if _, err := db.Exec(ctx, `UPDATE attune.rule SET enabled = true WHERE id = $1`, sp.RuleID); err != nil {
			return res, fmt.Errorf("enable rule: %w", err)
		}
		t0 := time.Now()
		var pubDur time.Duration
		if pub != nil {
			if err := publishRuleEnabled(ctx, pub, sp); err != nil {
				return res, err
			}
			pubDur = time.Since(t0)
		}
		mark, err := waitMark(ctx, stack, sp.Ref+".start", 20*time.Second)
		if err != nil {
			return res, fmt.Errorf("trial %d (%s): %w; agent log in %s", i, sp.Ref, err, out)
		}
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		line, _, err := agent.waitMsg(lctx, from, "sensor started", sp.Ref)
		lcancel()
		if err != nil {
			return res, err
		}
		if i == 0 {
			fmt.Fprintf(logw, "%s: warm-up trial %.3f ms (not counted)\n", mode, ms(time.Unix(0, mark).Sub(t0)))
			continue
		}
		res.latency = append(res.latency, ms(time.Unix(0, mark).Sub(t0)))
		res.agentLog = append(res.agentLog, ms(line.Time.Sub(t0)))
		res.publish = append(res.publish, ms(pubDur))
	}
	if code := agent.stop(45 * time.Second); code != 0 {
		return res, fmt.Errorf("agent exit code %d after SIGTERM", code)
	}
	return res, nil
}

// publishRuleEnabled sends the reference's RuleEnabled envelope to
// attune.events with routing key rule.enabled, as the API does after the
// update.
func publishRuleEnabled(ctx context.Context, ch *amqp.Channel, sp seededSensor) error {
	body, _ := json.Marshal(map[string]any{
		"message_id": benchUUID(), "correlation_id": benchUUID(), "message_type": "RuleEnabled",
		"version": "1.0", "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
		"headers": map[string]any{"retry_count": 0},
		"payload": map[string]any{"rule_id": sp.RuleID, "rule_ref": sp.Ref + "_rule", "trigger_ref": sp.Ref + "_trigger"},
	})
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := ch.PublishWithContext(pctx, "attune.events", "rule.enabled", false, false,
		amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body}); err != nil {
		return fmt.Errorf("publish rule.enabled: %w", err)
	}
	return nil
}

// benchUUID is a random version-4 UUID.
func benchUUID() string {
	h := benchRandomHex(16)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}

// waitMark polls marks/<name> every millisecond until it holds a number.
// The poll period does not limit the resolution: the number inside is the
// sensor's own clock reading.
func waitMark(ctx context.Context, stack *benchStack, name string, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	for {
		if v, ok := stack.readMark(name); ok {
			return v, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no mark %s within %s", name, timeout)
		}
		if !sleepCtxBench(ctx, time.Millisecond) {
			return 0, ctx.Err()
		}
	}
}

// calibrateMark execs the mark sensor directly n times, the way the agent
// does (fork/exec from Go, own process group), and returns the time from
// just before the exec to the sensor's own first timestamp (ms): the part
// of every reaction sample that is the sensor's start-up, not the agent.
func calibrateMark(ctx context.Context, stack *benchStack, n int) ([]float64, error) {
	bin := filepath.Join(stack.packs, "benchpack", "sensors", "mark")
	var out []float64
	for i := range n {
		ref := "calibration." + strconv.Itoa(i)
		cmd := exec.Command(bin)
		cmd.Env = []string{"ATTUNE_SENSOR_REF=" + ref, "PATH=" + os.Getenv("PATH")}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		mark, err := waitMark(ctx, stack, ref+".start", 10*time.Second)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if err != nil {
			return nil, err
		}
		out = append(out, ms(time.Unix(0, mark).Sub(t0)))
	}
	return out, stack.clearMarks()
}

// sleepCtxBench waits d or until ctx ends; it reports whether d elapsed.
func sleepCtxBench(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
