// Command timeit is the benchmark harness's stopwatch: it runs several
// commands round-robin, N times each after a warm-up, and prints the median,
// minimum and maximum wall time of each. Round-robin (one run of every command
// per round, the starting command rotating) is the point: on a shared machine
// a slow spell then hits every command of a comparison alike, so a ratio
// measured in one timeit call compares like with like. It uses only the
// standard library and starts each command directly (no shell in between), so
// the harness needs no hyperfine and measures no shell start-up.
//
// Usage:
//
//	timeit [-n N] [-warmup W] [-samples DIR] -- NAME CMD [ARG...] [::: NAME CMD [ARG...]]...
//
// Output, one tab-separated line per command, in the order given:
//
//	name  n  median_ms  min_ms  max_ms  cpu_median_ms
//
// cpu is user+system time of the command and its waited-for children. A
// command that exits non-zero stops timeit with an error: a benchmark of a
// failing command measures nothing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// timeitCommand is one named command line to time, with its samples.
type timeitCommand struct {
	name string
	argv []string
	wall []time.Duration
	cpu  []time.Duration
}

func main() {
	os.Exit(runTimeit(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// runTimeit is the whole program; it returns the exit code.
func runTimeit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("timeit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 10, "measured runs of each command")
	warmup := fs.Int("warmup", 1, "unmeasured runs of each command first (page cache, lazy binding)")
	samplesDir := fs.String("samples", "", "write each command's wall times (ms, one a line) to DIR/NAME.samples")
	timeout := fs.Duration("timeout", 2*time.Minute, "bound on one run of one command")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cmds, err := parseTimeitCommands(fs.Args())
	if err != nil || *n < 1 || *warmup < 0 {
		fmt.Fprintf(stderr, "timeit: %v\nusage: timeit [-n N] [-warmup W] [-samples DIR] -- NAME CMD [ARG...] [::: NAME CMD [ARG...]]...\n", err)
		return 2
	}
	for round := range *warmup + *n {
		for i := range cmds {
			c := cmds[(round+i)%len(cmds)]
			wall, cpu, err := timeOneRun(ctx, c.argv, *timeout)
			if err != nil {
				fmt.Fprintf(stderr, "timeit: %s: %v\n", c.name, err)
				return 1
			}
			if round >= *warmup {
				c.wall = append(c.wall, wall)
				c.cpu = append(c.cpu, cpu)
			}
		}
	}
	for _, c := range cmds {
		if *samplesDir != "" {
			if err := writeTimeitSamples(filepath.Join(*samplesDir, c.name+".samples"), c.wall); err != nil {
				fmt.Fprintf(stderr, "timeit: %v\n", err)
				return 1
			}
		}
		med, lo, hi := summarizeDurations(c.wall)
		cpuMed, _, _ := summarizeDurations(c.cpu)
		fmt.Fprintf(stdout, "%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\n", c.name, len(c.wall), ms(med), ms(lo), ms(hi), ms(cpuMed))
	}
	return 0
}

// parseTimeitCommands splits "NAME CMD ARGS ::: NAME CMD ARGS" into commands.
func parseTimeitCommands(args []string) ([]*timeitCommand, error) {
	var groups [][]string
	cur := []string{}
	for _, a := range args {
		if a == ":::" {
			groups, cur = append(groups, cur), []string{}
			continue
		}
		cur = append(cur, a)
	}
	groups = append(groups, cur)
	var cmds []*timeitCommand
	seen := map[string]bool{}
	for _, g := range groups {
		if len(g) < 2 || g[0] == "" {
			return nil, errors.New("each command needs a NAME and a CMD")
		}
		if seen[g[0]] || strings.ContainsAny(g[0], "/ \t\n") {
			return nil, fmt.Errorf("command name %q is repeated or not a plain word", g[0])
		}
		seen[g[0]] = true
		cmds = append(cmds, &timeitCommand{name: g[0], argv: g[1:]})
	}
	return cmds, nil
}

// timeOneRun starts argv with stdin, stdout and stderr on /dev/null and
// returns its wall time (start to reaped) and its CPU time.
func timeOneRun(ctx context.Context, argv []string, timeout time.Duration) (time.Duration, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// summarizeDurations returns the median (mean of the two middle samples for
// an even count), the minimum and the maximum.
func summarizeDurations(d []time.Duration) (med, lo, hi time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	mid := len(s) / 2
	med = s[mid]
	if len(s)%2 == 0 {
		med = (s[mid-1] + s[mid]) / 2
	}
	return med, s[0], s[len(s)-1]
}

// writeTimeitSamples writes wall times in ms, one a line, for the plots.
func writeTimeitSamples(path string, d []time.Duration) error {
	var b strings.Builder
	for _, x := range d {
		fmt.Fprintf(&b, "%.3f\n", ms(x))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write samples: %w", err)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
