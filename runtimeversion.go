package main

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNoRuntimeVersion means the sensor's runtime_version_constraint matches
// no available runtime_version row, so the sensor must not start here.
var ErrNoRuntimeVersion = errors.New("no runtime version matches")

// selectRuntimeVersion applies the reference's runtime version selection
// (crates/common version_matching select_best_version): only available
// rows count; with a constraint the highest matching version wins, and no
// match refuses the start; without one the default row wins, else the
// highest version, else the runtime's own execution_config (nil result).
func selectRuntimeVersion(spec sensorSpec) (*runtimeVersionRow, error) {
	constraint := strings.TrimSpace(spec.RuntimeVersionConstraint)
	fail := func(why string) error {
		return fmt.Errorf("sensor %q: runtime %q version constraint %q: %s: %w", spec.Ref, spec.RuntimeName, constraint, why, ErrNoRuntimeVersion)
	}
	if len(spec.RuntimeVersions) == 0 {
		if constraint != "" {
			return nil, fail("the runtime has no registered versions")
		}
		return nil, nil
	}
	var req []runtimeVersionComparator
	if constraint != "" {
		var err error
		if req, err = parseRuntimeVersionConstraint(constraint); err != nil {
			return nil, fail(err.Error())
		}
	}
	var best *runtimeVersionRow
	var bestV runtimeSemver
	for i := range spec.RuntimeVersions {
		row := &spec.RuntimeVersions[i]
		if !row.Available {
			continue
		}
		if constraint == "" && row.IsDefault {
			return row, nil
		}
		v, ok := parseRuntimeSemver(row.Version)
		if !ok || (constraint != "" && !runtimeVersionMatches(req, v)) {
			continue
		}
		if best == nil || compareRuntimeSemver(v, bestV) > 0 {
			best, bestV = row, v
		}
	}
	if best == nil && constraint != "" {
		return nil, fail("no available version matches")
	}
	if best != nil && strings.ContainsAny(best.Version, "/\x00") {
		return nil, fmt.Errorf("sensor %q: runtime version %q cannot name an environment directory", spec.Ref, best.Version)
	}
	return best, nil
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
