package main

// scheduling_structural_test.go covers scheduling_structural.go against a
// brute-force search and the reference's own solver tests.

import (
	"fmt"
	"testing"
)

// TestSchedulingStructuralAgreesWithBruteForce rebuilds the reference's
// structural_solver_agrees_with_exhaustive_small_cases: for every small
// combination of selector, required group and anti-affinity group over the
// keys k and q, the solver says Compatible exactly when one of the label sets
// {absent, a, b, other}² satisfies workerMatchesAll.
func TestSchedulingStructuralAgreesWithBruteForce(t *testing.T) {
	terms := []selectorTerm{{}}
	for _, key := range []string{"k", "q"} {
		terms = append(terms, labelsTerm(key, "a"), exprTerm(key, exprIn, "a"), exprTerm(key, exprNotIn, "a"), exprTerm(key, exprExists), exprTerm(key, exprDoesNotExist))
	}
	required := [][]selectorTerm{nil}
	anti := [][]selectorTerm{nil}
	for _, l := range terms {
		required = append(required, []selectorTerm{l})
		anti = append(anti, []selectorTerm{l})
	}
	for _, l := range terms {
		for _, r := range terms {
			required = append(required, []selectorTerm{l, r})
		}
	}
	witness := func(placements []placementRule) bool {
		for _, k := range []string{"", "a", "b", "other"} {
			for _, q := range []string{"", "a", "b", "other"} {
				labels := map[string]string{}
				if k != "" {
					labels["k"] = k
				}
				if q != "" {
					labels["q"] = q
				}
				if workerMatchesAll(labels, nil, placements) {
					return true
				}
			}
		}
		return false
	}
	checked, compatible := 0, 0
	for _, sel := range []map[string]string{nil, placementLabels("k", "a"), placementLabels("k", "b")} {
		for _, req := range required {
			for _, an := range anti {
				placements := []placementRule{{Source: "sensor", Selector: sel, Affinity: affinity{Required: req, AntiAffinity: an}}}
				want := placementIncompatible
				if witness(placements) {
					want = placementCompatible
					compatible++
				}
				if got := structuralPlacementCompatibility(placements); got != want {
					t.Fatalf("selector=%v required=%+v anti=%+v: want %v, got %v", sel, req, an, want, got)
				}
				checked++
			}
		}
	}
	if checked != 3*133*12 || compatible == 0 || compatible == checked {
		t.Fatalf("degenerate sweep: %d cases, %d compatible", checked, compatible)
	}
}

// TestSchedulingStructuralCases rebuilds the reference's remaining solver
// tests (conjunction across placements, budget exhaustion) and the one in
// sensor_admission.rs.
func TestSchedulingStructuralCases(t *testing.T) {
	exists := exprTerm("k", exprExists)
	many := map[string]string{}
	for i := 0; i < 10000; i++ {
		many[fmt.Sprintf("label_%05d", i)] = "value"
	}
	cases := []struct {
		name       string
		placements []placementRule
		budget     structuralBudget
		want       placementCompatibility
	}{
		{name: "no placements", want: placementCompatible},
		{name: "conjunction across placements", placements: []placementRule{{Selector: placementLabels("k", "a")}, {Selector: placementLabels("k", "b")}}, want: placementIncompatible},
		{name: "admission: conflicting selector values", placements: []placementRule{{Source: "pack", Selector: placementLabels("zone", "edge")}, {Source: "rule r", Selector: placementLabels("zone", "internal")}}, want: placementIncompatible},
		{name: "equal selectors agree", placements: []placementRule{{Selector: placementLabels("zone", "edge")}, {Selector: placementLabels("zone", "edge")}}, want: placementCompatible},
		{name: "selector against another placement's anti-affinity", placements: []placementRule{{Selector: placementLabels("zone", "edge")}, antiPlacement("rule r", labelsTerm("zone", "edge"))}, want: placementIncompatible},
		{name: "required groups from two placements must both hold", placements: []placementRule{requiredPlacement("pack", exprTerm("k", exprIn, "a")), requiredPlacement("rule", exprTerm("k", exprNotIn, "a"))}, want: placementIncompatible},
		{name: "required In and anti Exists on another key", placements: []placementRule{requiredPlacement("pack", exprTerm("k", exprIn, "a")), antiPlacement("rule", exprTerm("q", exprExists))}, want: placementCompatible},
		{name: "tolerations and preferred terms are ignored", placements: []placementRule{{Tolerations: []toleration{{Key: "x"}}, Affinity: affinity{Preferred: []preferredTerm{{Weight: 1, Preference: labelsTerm("k", "a")}}}}}, want: placementCompatible},
		{name: "input exhaustion is indeterminate", placements: []placementRule{{Selector: placementLabels("k", "a")}}, budget: structuralBudget{MaxInputItems: 1, MaxInputBytes: 1 << 20, MaxSearchSteps: 262144}, want: placementIndeterminate},
		{name: "input bytes exhaustion is indeterminate", placements: []placementRule{{Selector: placementLabels("key", "value")}}, budget: structuralBudget{MaxInputItems: 100, MaxInputBytes: 7, MaxSearchSteps: 262144}, want: placementIndeterminate},
		{name: "a conflict found before the budget runs out is incompatible", placements: []placementRule{{Selector: placementLabels("k", "a")}, {Selector: placementLabels("k", "b")}, {Selector: placementLabels("q", "c")}}, budget: structuralBudget{MaxInputItems: 4, MaxInputBytes: 1 << 20, MaxSearchSteps: 262144}, want: placementIncompatible},
		{name: "search exhaustion is indeterminate", placements: []placementRule{{Affinity: affinity{Required: []selectorTerm{exists}, AntiAffinity: []selectorTerm{exists}}}}, budget: structuralBudget{MaxInputItems: 16384, MaxInputBytes: 1 << 20, MaxSearchSteps: 1}, want: placementIndeterminate},
		{name: "the same with the default budget is incompatible", placements: []placementRule{{Affinity: affinity{Required: []selectorTerm{exists}, AntiAffinity: []selectorTerm{exists}}}}, want: placementIncompatible},
		{name: "many keys without recursion", placements: []placementRule{requiredPlacement("sensor", selectorTerm{MatchLabels: many})}, budget: structuralBudget{MaxInputItems: 20002, MaxInputBytes: 1 << 20, MaxSearchSteps: 32}, want: placementIndeterminate},
		{name: "many keys with the default budget", placements: []placementRule{requiredPlacement("sensor", selectorTerm{MatchLabels: many})}, want: placementCompatible},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			budget := tc.budget
			if budget == (structuralBudget{}) {
				budget = defaultStructuralBudget
			}
			if got := structuralPlacementCompatibilityWithBudget(tc.placements, budget); got != tc.want {
				t.Fatalf("want %v, got %v", tc.want, got)
			}
		})
	}
}
