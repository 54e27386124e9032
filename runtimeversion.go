package main

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNoRuntimeVersion means the sensor's runtime_version_constraint is not
// satisfied by any version this worker advertises, so the sensor is not
// eligible here (CONTRACT §5: skipped quietly, another worker may run it).
var ErrNoRuntimeVersion = errors.New("no advertised runtime version matches")

// selectRuntimeVersion decides which runtime_version row a sensor runs with
// on this worker (CONTRACT §6). It is pure so that the reconcile pass
// (eligibility) and the launch decide the same way from the same inputs.
//
// advertised is this worker's advertised versions by canonical runtime name
// (advertisedRuntimeVersions builds it from the capabilities). Candidates
// are the rows whose version one of the advertised versions names (equal
// once parsed, or the same major.minor: "3.11.7" names row "3.11"), looked
// up under the runtime's name and every alias; the row's `available` flag
// is not what decides. Among candidates: with a constraint the highest
// matching one; without, the default row, else the highest. No candidate
// and no constraint: row nil, eligible (the runtime's own
// execution_config). A constraint no candidate satisfies: not eligible,
// with reason saying why.
func selectRuntimeVersion(spec sensorSpec, advertised map[string][]string) (row *runtimeVersionRow, eligible bool, reason string) {
	constraint := strings.TrimSpace(spec.RuntimeVersionConstraint)
	refuse := func(why string) (*runtimeVersionRow, bool, string) {
		return nil, false, fmt.Sprintf("runtime %q version constraint %q: %s", spec.RuntimeName, constraint, why)
	}
	var req []runtimeVersionComparator
	if constraint != "" {
		var err error
		if req, err = parseRuntimeVersionConstraint(constraint); err != nil {
			return refuse(err.Error())
		}
	}
	if len(spec.RuntimeVersions) == 0 {
		if constraint != "" {
			return refuse("the runtime has no registered versions")
		}
		return nil, true, ""
	}
	local := advertisedVersionsFor(spec, advertised)
	var best *runtimeVersionRow
	var bestV runtimeSemver
	for i := range spec.RuntimeVersions {
		r := &spec.RuntimeVersions[i]
		v, ok := parseRuntimeSemver(r.Version)
		if !ok || !runtimeVersionAdvertised(r.Version, v, local) {
			continue
		}
		if constraint == "" && r.IsDefault {
			best = r
			break
		}
		if constraint != "" && !runtimeVersionMatches(req, v) {
			continue
		}
		if best == nil || compareRuntimeSemver(v, bestV) > 0 {
			best, bestV = r, v
		}
	}
	switch {
	case best == nil && constraint != "" && len(local) == 0:
		return refuse("this worker advertises no version of the runtime")
	case best == nil && constraint != "":
		return refuse(fmt.Sprintf("none of the advertised versions %v matches", local))
	case best != nil && (strings.ContainsAny(best.Version, "/\x00") || best.Version == "." || best.Version == ".."):
		return nil, false, fmt.Sprintf("runtime version %q cannot name an environment directory", best.Version)
	}
	return best, true, ""
}

// runtimeVersionError is selectRuntimeVersion's refusal as the launch
// reports it: an error naming the sensor that wraps ErrNoRuntimeVersion.
func runtimeVersionError(spec sensorSpec, reason string) error {
	return fmt.Errorf("sensor %q: %s: %w", spec.Ref, reason, ErrNoRuntimeVersion)
}

// advertisedVersionsFor collects the advertised versions of the sensor's
// runtime under its normalised name and every normalised alias.
func advertisedVersionsFor(spec sensorSpec, advertised map[string][]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, name := range append([]string{spec.RuntimeName}, spec.RuntimeAliases...) {
		n := normalizeRuntimeName(name)
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, advertised[n]...)
	}
	return out
}

// runtimeVersionAdvertised reports whether a registered version (raw and
// parsed) is one of the advertised ones: the same string, the same parsed
// version, or the same major.minor (the reference's lenient match, since an
// interpreter reports 3.12.1 where the row says 3.12).
func runtimeVersionAdvertised(raw string, v runtimeSemver, advertised []string) bool {
	for _, a := range advertised {
		if a == raw {
			return true
		}
		if av, ok := parseRuntimeSemver(a); ok && av.major == v.major && av.minor == v.minor {
			return true
		}
	}
	return false
}

// advertisedRuntimeVersions reads what a capabilities object (as
// buildCapabilities makes it) advertises: runtime_versions by canonical
// name, and, for a runtime absent there, the versions of its
// detected_interpreters entries (the reference's fallback).
func advertisedRuntimeVersions(caps map[string]any) map[string][]string {
	out := map[string][]string{}
	switch rv := caps["runtime_versions"].(type) {
	case map[string][]string:
		for k, vs := range rv {
			out[normalizeRuntimeName(k)] = append(out[normalizeRuntimeName(k)], vs...)
		}
	case map[string]any:
		for k, raw := range rv {
			list, _ := raw.([]any)
			for _, x := range list {
				if s, ok := x.(string); ok && strings.TrimSpace(s) != "" {
					out[normalizeRuntimeName(k)] = append(out[normalizeRuntimeName(k)], s)
				}
			}
		}
	}
	fromDetected := map[string][]string{}
	switch di := caps["detected_interpreters"].(type) {
	case []detectedInterpreterJSON:
		for _, it := range di {
			if it.Version != nil && strings.TrimSpace(*it.Version) != "" {
				n := normalizeRuntimeName(it.Name)
				fromDetected[n] = append(fromDetected[n], *it.Version)
			}
		}
	case []any:
		for _, x := range di {
			m, _ := x.(map[string]any)
			name, _ := m["name"].(string)
			v, _ := m["version"].(string)
			if name != "" && strings.TrimSpace(v) != "" {
				n := normalizeRuntimeName(name)
				fromDetected[n] = append(fromDetected[n], v)
			}
		}
	}
	for n, vs := range fromDetected {
		if len(out[n]) == 0 {
			out[n] = vs
		}
	}
	return out
}

// runtimeSemver is a parsed version; build metadata is dropped.
type runtimeSemver struct {
	major, minor, patch uint64
	pre                 []string
}

// parseRuntimeSemver parses leniently like the reference: a leading v/V is
// dropped, "3" and "3.12" are padded, "3.12.1.4" is cut to three parts.
func parseRuntimeSemver(s string) (runtimeSemver, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "v") || strings.HasPrefix(s, "V") {
		s = s[1:]
	}
	if v, ok := parseStrictRuntimeSemver(s); ok {
		return v, true
	}
	parts := strings.Split(s, ".")
	switch len(parts) {
	case 1:
		s = parts[0] + ".0.0"
	case 2:
		s = parts[0] + "." + parts[1] + ".0"
	default:
		s = strings.Join(parts[:3], ".")
	}
	return parseStrictRuntimeSemver(s)
}

func parseStrictRuntimeSemver(s string) (runtimeSemver, bool) {
	s, _, _ = strings.Cut(s, "+")
	core, pre, hasPre := strings.Cut(s, "-")
	nums := strings.Split(core, ".")
	if len(nums) != 3 {
		return runtimeSemver{}, false
	}
	var v runtimeSemver
	for i, dst := range []*uint64{&v.major, &v.minor, &v.patch} {
		n, err := strconv.ParseUint(nums[i], 10, 64)
		if err != nil || nums[i] == "" || nums[i][0] == '+' {
			return runtimeSemver{}, false
		}
		*dst = n
	}
	if hasPre {
		v.pre = strings.Split(pre, ".")
		for _, id := range v.pre {
			if id == "" || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "" {
				return runtimeSemver{}, false
			}
		}
	}
	return v, true
}

// compareRuntimeSemver orders by semver precedence (a pre-release sorts
// before its release; numeric identifiers before alphanumeric ones).
func compareRuntimeSemver(a, b runtimeSemver) int {
	if c := cmp.Or(cmp.Compare(a.major, b.major), cmp.Compare(a.minor, b.minor), cmp.Compare(a.patch, b.patch)); c != 0 {
		return c
	}
	switch {
	case len(a.pre) == 0 && len(b.pre) == 0:
		return 0
	case len(a.pre) == 0:
		return 1
	case len(b.pre) == 0:
		return -1
	}
	for i := 0; i < min(len(a.pre), len(b.pre)); i++ {
		x, errX := strconv.ParseUint(a.pre[i], 10, 64)
		y, errY := strconv.ParseUint(b.pre[i], 10, 64)
		var c int
		switch {
		case errX == nil && errY == nil:
			c = cmp.Compare(x, y)
		case errX == nil:
			c = -1
		case errY == nil:
			c = 1
		default:
			c = strings.Compare(a.pre[i], b.pre[i])
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.pre), len(b.pre))
}

// runtimeVersionComparator is one primitive bound (op is =, >, >=, < or <=).
type runtimeVersionComparator struct {
	op string
	v  runtimeSemver
}

// parseRuntimeVersionConstraint reads the reference's constraint syntax:
// comma-separated parts ANDed; a bare version means ~ (same minor); =, >,
// >=, <, <=, ~ and ^ with missing components padded with 0; "*" or ""
// matches everything. Wildcard components (3.x) are not supported.
func parseRuntimeVersionConstraint(s string) ([]runtimeVersionComparator, error) {
	var out []runtimeVersionComparator
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" || part == "*" {
			continue
		}
		op, ver := "~", part
		if c := part[0]; !(c >= '0' && c <= '9' || c == 'v' || c == 'V') {
			i := strings.IndexAny(part, "0123456789")
			if i < 0 {
				return nil, fmt.Errorf("%q has no version", part)
			}
			op, ver = strings.TrimSpace(part[:i]), part[i:]
		}
		v, ok := parseRuntimeSemver(ver)
		if !ok || strings.ContainsAny(ver, "*xX") {
			return nil, fmt.Errorf("%q is not a version", ver)
		}
		next := func(maj, minr, pat uint64) runtimeVersionComparator {
			return runtimeVersionComparator{"<", runtimeSemver{major: maj, minor: minr, patch: pat}}
		}
		switch op {
		case "=", ">", ">=", "<", "<=":
			out = append(out, runtimeVersionComparator{op, v})
		case "~":
			out = append(out, runtimeVersionComparator{">=", v}, next(v.major, v.minor+1, 0))
		case "^":
			upper := next(v.major+1, 0, 0)
			if v.major == 0 && v.minor > 0 {
				upper = next(0, v.minor+1, 0)
			} else if v.major == 0 {
				upper = next(0, 0, v.patch+1)
			}
			out = append(out, runtimeVersionComparator{">=", v}, upper)
		default:
			return nil, fmt.Errorf("unknown operator %q", op)
		}
	}
	return out, nil
}

// runtimeVersionMatches applies every comparator; like semver, a
// pre-release only matches when a comparator names the same x.y.z with a
// pre-release of its own.
func runtimeVersionMatches(req []runtimeVersionComparator, v runtimeSemver) bool {
	preAllowed := len(v.pre) == 0
	for _, c := range req {
		d := compareRuntimeSemver(v, c.v)
		ok := map[string]bool{"=": d == 0, ">": d > 0, ">=": d >= 0, "<": d < 0, "<=": d <= 0}[c.op]
		if !ok {
			return false
		}
		if len(c.v.pre) > 0 && c.v.major == v.major && c.v.minor == v.minor && c.v.patch == v.patch {
			preAllowed = true
		}
	}
	return preAllowed
}
