package main

// scheduling.go owns worker placement matching (CONTRACT §5): whether a worker
// with given labels and taints may run a sensor whose pack, sensor row and
// active rules each carry a placement (selector, tolerations, affinity). The
// facts are the reference's crates/common/src/scheduling.rs; the JSON side
// (how the columns become placements) is in scheduling_parse.go. Everything
// here is pure so the lease and eligibility code can call it inside a
// transaction without touching the database again.

import (
	"fmt"
	"slices"
	"strings"
)

// Toleration operators and label-expression operators, spelled as the
// reference serialises them (serde snake_case, case-sensitive). Taint effects
// are taintNoSchedule and taintPreferNoSchedule from config_validate.go.
const (
	tolerationEqual  = "equal"
	tolerationExists = "exists"

	exprIn           = "in"
	exprNotIn        = "not_in"
	exprExists       = "exists"
	exprDoesNotExist = "does_not_exist"
)

// workerTaint is one entry of the worker's capabilities.taints. Value is nil
// when the taint has none, which an Equal toleration must match exactly.
type workerTaint struct {
	Key    string
	Value  *string
	Effect string // taintNoSchedule (the default) or taintPreferNoSchedule
}

// toleration lets a placement run on a worker carrying a matching taint.
// Effect "" tolerates either effect; Value is only compared by Equal.
type toleration struct {
	Key      string
	Operator string // tolerationEqual (the default) or tolerationExists
	Value    *string
	Effect   string
}

// labelExpression is one match_expressions entry of an affinity term.
type labelExpression struct {
	Key      string
	Operator string // exprIn, exprNotIn, exprExists, exprDoesNotExist
	Values   []string
}

// selectorTerm is one affinity term: every match_labels pair and every
// expression must hold (AND).
type selectorTerm struct {
	MatchLabels      map[string]string
	MatchExpressions []labelExpression
}

// preferredTerm is a weighted soft preference. The reference uses it only to
// rank workers for actions; sensor admission ignores it, but its weight is
// still validated, so a bad weight still invalidates the whole affinity.
type preferredTerm struct {
	Weight     int
	Preference selectorTerm
}

// affinity is a placement's worker_affinity: at least one Required term must
// match (OR; none means no constraint) and no AntiAffinity term may match.
type affinity struct {
	Required     []selectorTerm
	Preferred    []preferredTerm
	AntiAffinity []selectorTerm
}

// placementRule is one placement source: the pack, the sensor, or one active
// rule (the reference's WorkerPlacement plus a Source for log messages).
type placementRule struct {
	Source      string // "pack", "sensor", "rule <ref>"
	Selector    map[string]string
	Tolerations []toleration
	Affinity    affinity
}

// workerMatchesAll reports whether a worker with these labels and taints
// satisfies every placement, as worker_matches_all_placements does: each
// placement's selector (exact equality) and affinity must hold on their own,
// while tolerations are pooled across all placements, so the pack tolerating
// a taint is enough. An empty placement list matches any worker, taints
// included (the reference's all() over nothing); admission always passes at
// least the sensor's placement.
func workerMatchesAll(labels map[string]string, taints []workerTaint, placements []placementRule) bool {
	return placementMismatch(labels, taints, placements) == ""
}

// placementMismatch is workerMatchesAll with a reason: "" when the worker
// matches, else one short line naming the first failing source and key, for
// a once-per-sensor info log ("rule core.x: selector zone=edge not matched
// (worker has zone=core)"). Both functions share this code so the log can
// never disagree with the decision.
func placementMismatch(labels map[string]string, taints []workerTaint, placements []placementRule) string {
	if len(placements) == 0 {
		return ""
	}
	var pooled []toleration
	for _, p := range placements {
		pooled = append(pooled, p.Tolerations...)
	}
	taintReason := untoleratedTaint(taints, pooled)
	for _, p := range placements {
		source := p.Source
		if source == "" {
			source = "placement"
		}
		if r := selectorMismatch(labels, p.Selector); r != "" {
			return source + ": " + r
		}
		if taintReason != "" {
			return taintReason
		}
		if r := requiredMismatch(labels, p.Affinity.Required); r != "" {
			return source + ": " + r
		}
		for _, term := range p.Affinity.AntiAffinity {
			if termMatches(labels, term) {
				return source + ": anti-affinity term " + describeTerm(term) + " matched"
			}
		}
	}
	return ""
}

// selectorMismatch checks worker_selector: every key present with exactly
// the same value (no trimming, no case folding).
func selectorMismatch(labels, selector map[string]string) string {
	if selectorHolds(labels, selector) {
		return ""
	}
	for _, key := range sortedKeys(selector) {
		want := selector[key]
		got, ok := labels[key]
		if ok && got == want {
			continue
		}
		if !ok {
			return fmt.Sprintf("selector %s=%s not matched (worker has no %s label)", key, want, key)
		}
		return fmt.Sprintf("selector %s=%s not matched (worker has %s=%s)", key, want, key, got)
	}
	return ""
}

// selectorHolds is the allocation-free check behind selectorMismatch (the
// reconcile pass asks it for every sensor every 2 s); keys are sorted only to
// word a failure.
func selectorHolds(labels, selector map[string]string) bool {
	for key, want := range selector {
		if got, ok := labels[key]; !ok || got != want {
			return false
		}
	}
	return true
}

// untoleratedTaint returns a reason for the first NoSchedule taint no
// toleration matches; PreferNoSchedule taints never exclude a worker.
func untoleratedTaint(taints []workerTaint, tolerations []toleration) string {
	for _, t := range taints {
		if t.Effect != taintNoSchedule {
			continue
		}
		if !slices.ContainsFunc(tolerations, func(tol toleration) bool { return tolerates(tol, t) }) {
			return "taint " + describeTaint(t) + " not tolerated"
		}
	}
	return ""
}

// tolerates is toleration_matches_taint: same key (an empty key is not a
// wildcard; validation rejects it), same effect when the toleration names
// one, and for Equal the same value, absent matching only absent.
func tolerates(tol toleration, t workerTaint) bool {
	if tol.Key != t.Key {
		return false
	}
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Operator == tolerationExists {
		return true
	}
	if tol.Value == nil || t.Value == nil {
		return tol.Value == nil && t.Value == nil
	}
	return *tol.Value == *t.Value
}

// requiredMismatch is the required-affinity rule: no terms, or any one term
// matching.
func requiredMismatch(labels map[string]string, required []selectorTerm) string {
	if len(required) == 0 || slices.ContainsFunc(required, func(t selectorTerm) bool { return termMatches(labels, t) }) {
		return ""
	}
	if len(required) == 1 {
		return "required affinity " + describeTerm(required[0]) + " not matched"
	}
	return fmt.Sprintf("none of %d required affinity terms matched (first: %s)", len(required), describeTerm(required[0]))
}

// termMatches is selector_term_matches: all match_labels by equality and
// all expressions. An empty term matches every worker.
func termMatches(labels map[string]string, term selectorTerm) bool {
	if !selectorHolds(labels, term.MatchLabels) {
		return false
	}
	for _, e := range term.MatchExpressions {
		if !expressionMatches(labels, e) {
			return false
		}
	}
	return true
}

// expressionMatches evaluates one operator. NotIn holds when the key is
// absent, In never does; an unknown operator (impossible after parsing)
// never matches.
func expressionMatches(labels map[string]string, e labelExpression) bool {
	got, ok := labels[e.Key]
	switch e.Operator {
	case exprIn:
		return ok && slices.Contains(e.Values, got)
	case exprNotIn:
		return !ok || !slices.Contains(e.Values, got)
	case exprExists:
		return ok
	case exprDoesNotExist:
		return !ok
	}
	return false
}

// describeTerm renders a term compactly for log lines: "{zone=a, gpu in [x,y]}".
func describeTerm(term selectorTerm) string {
	var parts []string
	for _, k := range sortedKeys(term.MatchLabels) {
		parts = append(parts, k+"="+term.MatchLabels[k])
	}
	for _, e := range term.MatchExpressions {
		switch e.Operator {
		case exprIn, exprNotIn:
			parts = append(parts, e.Key+" "+strings.ReplaceAll(e.Operator, "_", " ")+" ["+strings.Join(e.Values, ",")+"]")
		case exprExists:
			parts = append(parts, e.Key+" exists")
		case exprDoesNotExist:
			parts = append(parts, e.Key+" does not exist")
		default:
			parts = append(parts, e.Key+" "+e.Operator+"?")
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// describeTaint renders a taint the way kubectl does: key[=value]:effect.
func describeTaint(t workerTaint) string {
	s := t.Key
	if t.Value != nil {
		s += "=" + *t.Value
	}
	return s + ":" + t.Effect
}

// sortedKeys makes reasons deterministic: the reference iterates its
// BTreeMaps in key order too.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
