package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"syscall"
	"time"
)

// Environment variables that name the status file. The plain name wins over
// the config-key form, as the other plain ATTUNE_* variables do (CONTRACT §3).
const (
	statusFileEnv       = "ATTUNE_SENSOR_STATUS_FILE"
	statusFileConfigEnv = "ATTUNE__SENSOR__STATUS_FILE"
)

// healthStaleFactor is how many heartbeat intervals may pass without a
// heartbeat before the agent counts as wedged: one missed beat is a slow
// database, three in a row is not.
const healthStaleFactor = 3

// healthDefaultInterval judges a status file that carries no interval; it is
// the sensor.heartbeat_interval default.
const healthDefaultInterval = 30 * time.Second

// Sentinel errors of the health judgement, one per reason a probe can fail.
var (
	ErrAgentNotRunning    = errors.New("agent process is not running")
	ErrAgentNotRegistered = errors.New("agent has not registered")
	ErrHeartbeatStale     = errors.New("heartbeat is stale")
)

// healthError is a probe verdict: the one line printed to the operator, and
// the sentinel it stands for (so the line carries no "…: heartbeat is stale"
// tail while errors.Is still works).
type healthError struct {
	msg  string
	kind error
}

func (e healthError) Error() string { return e.msg }
func (e healthError) Unwrap() error { return e.kind }

// healthProbe is the outside world `healthcheck` consults, as function fields
// so tests can pin the clock and the process table (tableflip's pattern).
type healthProbe struct {
	now      func() time.Time
	pidAlive func(pid int) bool
}

// realHealthProbe consults the real clock and kill(2).
var realHealthProbe = healthProbe{now: time.Now, pidAlive: healthPIDAlive}

// runHealthcheck implements `attune-sensor-agent healthcheck`: exit 0 when
// the agent that wrote the status file is alive, registered and heartbeating,
// else 1, printing one line that says why. It reads only the status file,
// never the configuration or the database, so it works as an exec probe in
// images with no shell and needs no secret. Usage errors exit 2.
func runHealthcheck(args []string, environ []string, stdout, stderr io.Writer) int {
	return realHealthProbe.run(args, environ, stdout, stderr)
}

// run is runHealthcheck with an injectable probe.
func (p healthProbe) run(args []string, environ []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	flags.SetOutput(stderr)
	statusFile := flags.String("status-file", "", "status file written by the running agent (default: $"+statusFileEnv+", else "+defaultStatusFile()+")")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s healthcheck [--status-file PATH]\n\n"+
			"Exit 0 while the running agent is registered and heartbeating, else 1.\n\n", agentBinaryName)
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if flags.NArg() != 0 {
		fmt.Fprintf(stderr, "healthcheck: unexpected argument %q\n", flags.Arg(0))
		flags.Usage()
		return exitUsage
	}
	path := healthStatusPath(*statusFile, environ)
	st, err := readAgentStatus(path)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "no status file at %s (agent not started or not registered yet)\n", path)
		return exitFailure
	}
	if err != nil {
		fmt.Fprintf(stderr, "unreadable status file: %v\n", err)
		return exitFailure
	}
	now := p.now()
	if err := judgeAgentHealth(st, now, p.pidAlive); err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "healthy: worker %s (id %d), pid %d, last heartbeat %s ago, %d/%d sensors running\n",
		st.WorkerName, st.WorkerID, st.PID, formatHealthAge(now.Sub(st.LastHeartbeat)),
		st.SensorsRunning, st.SensorsMonitored)
	return exitOK
}

// healthStatusPath picks the status file: the flag, else
// ATTUNE_SENSOR_STATUS_FILE, else ATTUNE__SENSOR__STATUS_FILE, else the
// default. A status_file set only in config.yaml is invisible here, which is
// why the deploy files set the variable (or pass the flag) instead.
func healthStatusPath(flagValue string, environ []string) string {
	if flagValue != "" {
		return flagValue
	}
	for _, name := range []string{statusFileEnv, statusFileConfigEnv} {
		if v := healthLookupEnv(environ, name); v != "" {
			return v
		}
	}
	return defaultStatusFile()
}

// healthLookupEnv returns the first value of name in environ (os.Environ
// form), matching the first-wins rule of os.Getenv and baselineEnv.
func healthLookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// judgeAgentHealth is the pure decision behind the probe. The process check
// comes first because a dead agent leaves a status file that is otherwise
// fine for up to three intervals; registration next, then freshness.
func judgeAgentHealth(st agentStatus, now time.Time, pidAlive func(pid int) bool) error {
	if st.PID <= 0 || !pidAlive(st.PID) {
		return healthError{fmt.Sprintf("agent pid %d is not running", st.PID), ErrAgentNotRunning}
	}
	if st.WorkerID <= 0 {
		return healthError{fmt.Sprintf("agent pid %d has not registered a worker yet", st.PID), ErrAgentNotRegistered}
	}
	if st.LastHeartbeat.IsZero() {
		return healthError{fmt.Sprintf("agent pid %d has not sent a heartbeat yet", st.PID), ErrHeartbeatStale}
	}
	interval := st.HeartbeatInterval
	if interval <= 0 {
		interval = healthDefaultInterval
	}
	age := now.Sub(st.LastHeartbeat)
	if age > healthStaleFactor*interval {
		return healthError{fmt.Sprintf("last heartbeat %s ago, older than %d × %s",
			formatHealthAge(age), healthStaleFactor, formatHealthAge(interval)), ErrHeartbeatStale}
	}
	return nil
}

// formatHealthAge prints a duration the way an operator reads it in a probe
// log: whole seconds, without the trailing zero units of Duration.String
// ("4m", "1m30s", "30s", "2h").
func formatHealthAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := d.Round(time.Second).String() // "4m0s", "1h0m0s", "30s"
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2] // "4m", "1h0m"
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2] // "1h"
	}
	return s
}

// healthPIDAlive reports whether pid exists, using kill(pid, 0). EPERM means
// the process exists but belongs to another user (a root agent probed by a
// non-root exec), so it counts as alive.
func healthPIDAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
