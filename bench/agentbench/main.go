// Command agentbench drives the real agent for the benchmark items that
// need it running (docs/benchmarks.md items 3 to 6, 8 and 9). Each subcommand builds
// its own isolated stack (a fresh PostgreSQL database per agent run, a fresh
// RabbitMQ vhost, an in-process stand-in for the Attune API and a pack of
// native sensors that leave timestamps in files), runs the agent binary as
// production would, and writes its numbers to OUT/summary.tsv (name<TAB>
// number) plus the raw samples; the item scripts turn those into tables.
//
// Usage:
//
//	agentbench reaction -n 30 -out DIR [common flags]
//	agentbench crash    -n 40 -out DIR [common flags]
//	agentbench shutdown -sensors 100 -trials 3 -out DIR [common flags]
//	agentbench scale    -counts 100,500,1000 -window 60s -out DIR [common flags]
//	agentbench logs     -bytes 209715200 -window 10s -out DIR [common flags]
//	agentbench failover -agents 3 -sensors 30 -reps 5 -scale 30 -out DIR [common flags]
//	agentbench renewals -counts 100,500,1000 -window 10s -scale 30 -out DIR [common flags]
//	agentbench api      [-addr 127.0.0.1:8080]   (the fake API alone, for manual runs)
//
// Common flags: -agent BIN, -sensor BIN (bench/benchsensor), -schema FILE,
// -db URL (default $ATTUNE_TEST_DATABASE_URL), -amqp URL (default
// $ATTUNE_TEST_AMQP_URL), -seed N.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(runAgentBench(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// benchCommon holds the flags every measuring subcommand takes.
type benchCommon struct {
	stack stackConfig
	out   string
	seed  uint64
	ctl   string
}

// register adds the common flags to fs.
func (c *benchCommon) register(fs *flag.FlagSet) {
	fs.StringVar(&c.stack.AgentBin, "agent", "attune-sensor-agent", "agent binary")
	fs.StringVar(&c.stack.SensorBin, "sensor", "", "bench/benchsensor binary")
	fs.StringVar(&c.stack.Schema, "schema", "testdata/schema/current.sql", "schema loaded into each database")
	fs.StringVar(&c.stack.AdminDB, "db", envOr("ATTUNE_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL server URL")
	fs.StringVar(&c.stack.AMQP, "amqp", envOr("ATTUNE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ URL")
	fs.StringVar(&c.ctl, "rabbitmqctl", envOr("ATTUNE_TEST_RABBITMQCTL", "rabbitmqctl"), "rabbitmqctl command")
	fs.StringVar(&c.out, "out", ".", "output directory")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the random gaps between trials")
}

// check validates the common flags after parsing.
func (c *benchCommon) check() error {
	c.stack.CtlCmd = strings.Fields(c.ctl)
	if c.stack.SensorBin == "" || len(c.stack.CtlCmd) == 0 {
		return fmt.Errorf("-sensor and -rabbitmqctl are required")
	}
	return os.MkdirAll(c.out, 0o755)
}

// open parses args into fs (which holds c's flags), checks them and opens
// the benchmark stack; every measurement starts this way. The caller closes
// the stack.
func (c *benchCommon) open(fs *flag.FlagSet, args []string) (*benchStack, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return newBenchStack(c.stack)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// runAgentBench dispatches the subcommand; it returns the exit code.
func runAgentBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: agentbench reaction|crash|shutdown|scale|logs|failover|renewals|api [flags]")
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Writer) error{
		"reaction": runReaction,
		"crash":    runCrash,
		"shutdown": runShutdown,
		"scale":    runScale,
		"logs":     runLogs,
		"failover": runFailover,
		"renewals": runRenewals,
		"api":      runAPIOnly,
	}
	f, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "agentbench: unknown subcommand %q\n", args[0])
		return 2
	}
	if err := f(ctx, args[1:], stderr); err != nil {
		fmt.Fprintf(stderr, "agentbench %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// runAPIOnly serves the fake API until interrupted.
func runAPIOnly(ctx context.Context, args []string, logw io.Writer) error {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	api, err := startBenchAPI(*addr)
	if err != nil {
		return err
	}
	fmt.Fprintln(logw, "fake Attune API on", api.url)
	<-ctx.Done()
	api.close()
	return nil
}
