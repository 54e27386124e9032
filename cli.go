package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "0.0.0-dev"

// Exit codes of the agent process: one switch (exitCode) maps errors to them.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure: database, broker, registration
	exitUsage   = 2 // bad flags or invalid configuration
	exitKilled  = 3 // a second signal forced the stop: sensors were SIGKILLed
)

// errUsage marks a command-line error already reported with the usage text.
var errUsage = errors.New("usage error")

// cliOptions are the parsed flags of the agent command.
type cliOptions struct {
	configPath string
	name       string
	detectOnly bool
	json       bool
	version    bool
}

// run is the whole program behind main: subcommands first, then flags, then
// the agent. It returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "install":
			return runInstall(args[1:], stdout, stderr)
		case "healthcheck":
			return runHealthcheck(args[1:], os.Environ(), stdout, stderr)
		}
	}
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	if opts.version {
		fmt.Fprint(stdout, versionText())
		return exitOK
	}
	setAgentEnv(opts)
	if opts.detectOnly {
		return runDetectOnly(ctx, opts, stdout, stderr)
	}
	return exitCode(runAgent(ctx, opts, stdout), stderr) // logs on stdout, as the reference
}

// parseFlags parses the agent flags; -x and --x are the same to package flag.
func parseFlags(args []string, stderr io.Writer) (cliOptions, error) {
	var o cliOptions
	fs := flag.NewFlagSet("attune-sensor-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.configPath, "c", "", "")
	fs.StringVar(&o.configPath, "config", "", "")
	fs.StringVar(&o.name, "n", "", "")
	fs.StringVar(&o.name, "name", "", "")
	fs.BoolVar(&o.detectOnly, "detect-only", false, "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.BoolVar(&o.version, "version", false, "")
	fs.BoolVar(&o.version, "V", false, "")
	fs.Usage = func() { fmt.Fprint(fs.Output(), usageText) }
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n%s", fs.Arg(0), usageText)
		return o, errUsage
	}
	if o.json && !o.detectOnly {
		fmt.Fprintf(stderr, "--json is only valid with --detect-only\n%s", usageText)
		return o, errUsage
	}
	return o, nil
}

const usageText = `Usage: attune-sensor-agent [OPTIONS]
       attune-sensor-agent install DIR
       attune-sensor-agent healthcheck [--status-file PATH]

Attune sensor agent: detects the interpreters of this image, registers as a
sensor worker and runs the pack sensors assigned to it.

Options:
  -c, --config PATH   configuration file (sets ATTUNE_CONFIG)
  -n, --name NAME     sensor worker name (overrides sensor.worker_name)
      --detect-only   print the runtime detection report and exit
      --json          with --detect-only: print the report as JSON
  -V, --version       print version information and exit
  -h, --help          print this help and exit

Subcommands:
  install DIR         copy this binary into DIR (atomically) with a .version file
  healthcheck         exit 0 while the running agent is registered and heartbeating
`

// setAgentEnv sets, before any goroutine of ours starts, the variables that
// announce agent mode (CONTRACT §1); sensors and version probes never see
// them because children start from an empty environment.
func setAgentEnv(o cliOptions) {
	os.Setenv("ATTUNE_SENSOR_AGENT_MODE", "true")
	os.Setenv("ATTUNE_SENSOR_AGENT_BINARY_NAME", "attune-sensor-agent")
	os.Setenv("ATTUNE_SENSOR_AGENT_BINARY_VERSION", semanticVersion(version)) // semver, never a git describe string
	if o.configPath != "" {
		os.Setenv("ATTUNE_CONFIG", o.configPath)
	}
}

// exitCode is the one place that maps an error to an exit code.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errForcedStop):
		fmt.Fprintln(stderr, "attune-sensor-agent:", err)
		return exitKilled
	case errors.Is(err, ErrConfig):
		fmt.Fprintln(stderr, "attune-sensor-agent:", err)
		return exitUsage
	default:
		fmt.Fprintln(stderr, "attune-sensor-agent:", err)
		return exitFailure
	}
}
