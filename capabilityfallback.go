package main

// capabilityfallback.go owns the capabilities of an agent whose bootstrap
// selected no runtime (CONTRACT §4 "Agent path vs fallback"): nothing
// detected and no override, an override that matches nothing, or an empty
// one. The reference then registers as a non-agent sensor service does
// (crates/sensor/src/sensor_worker_registration.rs detect_capabilities_async
// and crates/common/src/runtime_detection.rs): `runtimes` from the
// ATTUNE_SENSOR_RUNTIMES override, else config sensor.capabilities.runtimes,
// else the runtime rows whose verification passes on this machine; the other
// sensor.capabilities keys are merged; no detected_interpreters and no
// runtime_versions.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// capabilityFallback is the decided fallback: the runtimes to advertise and
// the sensor.capabilities keys other than "runtimes" to merge.
type capabilityFallback struct {
	Runtimes []string
	Extra    map[string]any
	Source   string // "override", "config" or "database", for the start-up log
}

// runtimeRow is what verification needs of one runtime row.
type runtimeRow struct {
	Ref, Name     string
	Distributions json.RawMessage
}

// runtimeVerifier runs one verification command and reports its exit code
// and combined output; ok is false when it could not run at all.
type runtimeVerifier func(ctx context.Context, binary string, args []string) (code int, out string, ok bool)

// decideCapabilityFallback applies the reference's three tiers. override is
// the raw ATTUNE_SENSOR_RUNTIMES value (set reports whether it is set, even
// empty); configCaps is sensor.capabilities; rows are the runtime rows in
// ref order, verified with verify only when neither of the first two tiers
// decides (so a database is needed only then; rows may be nil otherwise).
func decideCapabilityFallback(ctx context.Context, override string, set bool, configCaps map[string]any, rows []runtimeRow, verify runtimeVerifier) capabilityFallback {
	extra := map[string]any{}
	for k, v := range configCaps {
		if k != "runtimes" {
			extra[k] = v
		}
	}
	if set {
		var names []string
		for _, tok := range strings.Split(override, ",") {
			if tok = strings.ToLower(strings.TrimSpace(tok)); tok != "" {
				names = append(names, tok)
			}
		}
		return capabilityFallback{Runtimes: nonNilStrings(names), Extra: extra, Source: "override"}
	}
	if list, ok := configCaps["runtimes"].([]any); ok && len(list) > 0 {
		var names []string
		for _, v := range list {
			if s, ok := v.(string); ok {
				names = append(names, strings.ToLower(s))
			}
		}
		return capabilityFallback{Runtimes: nonNilStrings(names), Extra: extra, Source: "config"}
	}
	var names []string
	for _, r := range rows {
		if verifyRuntimeRow(ctx, r, verify) {
			names = append(names, strings.ToLower(r.Name))
		}
	}
	return capabilityFallback{Runtimes: nonNilStrings(names), Extra: extra, Source: "database"}
}

// fallbackNeedsDatabase reports whether the third tier (runtime rows) decides.
func fallbackNeedsDatabase(set bool, configCaps map[string]any) bool {
	list, ok := configCaps["runtimes"].([]any)
	return !set && !(ok && len(list) > 0)
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// verificationCommand is one distributions.verification.commands entry.
type verificationCommand struct {
	Binary   *string  `json:"binary"`
	Args     []any    `json:"args"`
	ExitCode *float64 `json:"exit_code"`
	Pattern  *string  `json:"pattern"`
	Priority *float64 `json:"priority"`
}

// verifyRuntimeRow is the reference's verify_runtime_available:
// distributions.verification.always_available true, or check_required
// false, passes; otherwise the first of its commands (by priority, 999
// when absent) whose exit code equals exit_code (default 0) and, when
// given, whose stdout+stderr match pattern. No verification: not available.
func verifyRuntimeRow(ctx context.Context, r runtimeRow, verify runtimeVerifier) bool {
	var d struct {
		Verification *struct {
			AlwaysAvailable *bool                 `json:"always_available"`
			CheckRequired   *bool                 `json:"check_required"`
			Commands        []verificationCommand `json:"commands"`
		} `json:"verification"`
	}
	if json.Unmarshal(r.Distributions, &d) != nil || d.Verification == nil {
		return false
	}
	v := d.Verification
	if (v.AlwaysAvailable != nil && *v.AlwaysAvailable) || (v.CheckRequired != nil && !*v.CheckRequired) {
		return true
	}
	cmds := slices.Clone(v.Commands)
	prio := func(p *float64) float64 {
		if p == nil {
			return 999
		}
		return *p
	}
	slices.SortStableFunc(cmds, func(a, b verificationCommand) int {
		pa, pb := prio(a.Priority), prio(b.Priority)
		switch {
		case pa < pb:
			return -1
		case pa > pb:
			return 1
		}
		return 0
	})
	for _, c := range cmds {
		if c.Binary == nil {
			continue
		}
		var args []string
		for _, a := range c.Args {
			if s, ok := a.(string); ok {
				args = append(args, s)
			}
		}
		code, out, ok := verify(ctx, *c.Binary, args)
		want := 0
		if c.ExitCode != nil {
			want = int(*c.ExitCode)
		}
		if !ok || code != want {
			continue
		}
		if c.Pattern == nil {
			return true
		}
		re, err := regexp.Compile(*c.Pattern)
		if err != nil {
			return false // the reference warns and gives up on the runtime
		}
		return re.MatchString(out)
	}
	return false
}

// commandRuntimeVerifier runs verification commands the way version probes
// run (detect.go): exactly env as their environment, a bare binary looked up
// on env's PATH, each bounded by timeout and killed with its process group.
func commandRuntimeVerifier(env []string, timeout time.Duration) runtimeVerifier {
	return func(ctx context.Context, binary string, args []string) (int, string, bool) {
		path := binary
		if !strings.Contains(binary, "/") {
			p, err := lookPathInDirs(binary, probeEnvValue(env, "PATH"))
			if err != nil {
				return 0, "", false
			}
			path = p
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		out, err := runVersionCommand(ctx, path, args, env)
		if ctx.Err() != nil {
			return 0, "", false
		}
		code := 0
		if err != nil {
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) || exitErr.ExitCode() < 0 {
				return 0, "", false // did not start, or died of a signal
			}
			code = exitErr.ExitCode()
		}
		return code, string(out), true
	}
}

// loadRuntimeRows reads every runtime row in ref order, as the reference's
// detect_from_database does.
func loadRuntimeRows(ctx context.Context, pool *pgxpool.Pool) ([]runtimeRow, error) {
	ctx, cancel := context.WithTimeout(ctx, registryCallTimeout)
	defer cancel()
	rows, err := pool.Query(ctx, `SELECT ref, name, distributions FROM runtime ORDER BY ref`)
	if err != nil {
		return nil, fmt.Errorf("load runtime rows for capability detection: %w", err)
	}
	defer rows.Close()
	var out []runtimeRow
	for rows.Next() {
		var r runtimeRow
		var d []byte
		if err := rows.Scan(&r.Ref, &r.Name, &d); err != nil {
			return nil, fmt.Errorf("load runtime rows for capability detection: %w", err)
		}
		r.Distributions = d
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load runtime rows for capability detection: %w", err)
	}
	return out, nil
}
