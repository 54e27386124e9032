package main

// scheduling_structural.go owns the structural placement check: can ANY
// worker label set satisfy a sensor's combined placements? The reference's
// API runs it (structural_placement_compatibility in scheduling.rs, called
// from sensor_admission.rs) to refuse rule and sensor changes whose
// selectors and affinities contradict each other. The agent's eligibility
// does not need it; it is here so the in-test API double can be as strict
// as the newest API. Tolerations and preferred terms play no part.

import "slices"

// placementCompatibility is the verdict of the structural check.
type placementCompatibility int

const (
	// placementCompatible: some label set satisfies every hard constraint.
	placementCompatible placementCompatibility = iota
	// placementIncompatible: the complete bounded search found none.
	placementIncompatible
	// placementIndeterminate: an input or search limit stopped the proof.
	placementIndeterminate
)

// structuralBudget bounds the check, which the API runs on user input.
type structuralBudget struct {
	MaxInputItems  int
	MaxInputBytes  int
	MaxSearchSteps int
}

// defaultStructuralBudget is the reference's default budget.
var defaultStructuralBudget = structuralBudget{MaxInputItems: 16384, MaxInputBytes: 1 << 20, MaxSearchSteps: 262144}

// structuralPlacementCompatibility runs the check with the default budget.
func structuralPlacementCompatibility(placements []placementRule) placementCompatibility {
	return structuralPlacementCompatibilityWithBudget(placements, defaultStructuralBudget)
}

// searchDomain is one label key the terms mention and selectors do not fix.
// Its choices are: absent, each referenced value, or "other" (every value
// the input never names behaves the same). Keys a required term wants
// present try the present choices first, so satisfiable input is found fast.
type searchDomain struct {
	key           string
	values        []string
	preferPresent bool
}

// assignedLabel is one choice for a key: absent, a referenced value, or other.
type assignedLabel struct {
	present bool
	other   bool
	value   string
}

func (d searchDomain) choices() int { return len(d.values) + 2 }

func (d searchDomain) choice(i int) assignedLabel {
	if d.preferPresent {
		switch {
		case i < len(d.values):
			return assignedLabel{present: true, value: d.values[i]}
		case i == len(d.values):
			return assignedLabel{present: true, other: true}
		}
		return assignedLabel{}
	}
	switch {
	case i == 0:
		return assignedLabel{}
	case i <= len(d.values):
		return assignedLabel{present: true, value: d.values[i-1]}
	}
	return assignedLabel{present: true, other: true}
}

// structuralSearch is one run's state: fixed selector labels, the domains in
// key order, the current odometer and the remaining step budget.
type structuralSearch struct {
	placements []placementRule
	fixed      map[string]string
	domains    []searchDomain
	choice     []int
	steps      int
}

// structuralPlacementCompatibilityWithBudget charges the input item by item
// (selector pairs, terms, labels, expressions, values, with their byte
// lengths) in the reference's order, fails fast on two selectors fixing one
// key differently, then enumerates every assignment of the remaining keys.
func structuralPlacementCompatibilityWithBudget(placements []placementRule, budget structuralBudget) placementCompatibility {
	items, bytes := budget.MaxInputItems, budget.MaxInputBytes
	charge := func(n int) bool {
		if items < 1 || bytes < n {
			return false
		}
		items, bytes = items-1, bytes-n
		return true
	}
	fixed := map[string]string{}
	domains := map[string]map[string]bool{}
	for _, p := range placements {
		if !charge(0) {
			return placementIndeterminate
		}
		for _, k := range sortedKeys(p.Selector) {
			v := p.Selector[k]
			if !charge(len(k) + len(v)) {
				return placementIndeterminate
			}
			if old, ok := fixed[k]; ok && old != v {
				return placementIncompatible
			}
			fixed[k] = v
		}
		for _, term := range append(slices.Clip(p.Affinity.Required), p.Affinity.AntiAffinity...) {
			if !charge(0) {
				return placementIndeterminate
			}
			for _, k := range sortedKeys(term.MatchLabels) {
				if !charge(len(k) + len(term.MatchLabels[k])) {
					return placementIndeterminate
				}
				domainOf(domains, k)[term.MatchLabels[k]] = true
			}
			for _, e := range term.MatchExpressions {
				if !charge(len(e.Key)) {
					return placementIndeterminate
				}
				d := domainOf(domains, e.Key)
				for _, v := range e.Values {
					if !charge(len(v)) {
						return placementIndeterminate
					}
					d[v] = true
				}
			}
		}
	}

	s := structuralSearch{placements: placements, fixed: fixed, steps: budget.MaxSearchSteps}
	for _, k := range slices.Sorted(mapKeys(domains)) {
		if _, ok := fixed[k]; ok {
			continue
		}
		s.domains = append(s.domains, searchDomain{key: k, values: slices.Sorted(mapKeys(domains[k])), preferPresent: keyPrefersPresent(k, placements)})
	}
	s.choice = make([]int, len(s.domains))
	for {
		ok, done := s.matches()
		if !done {
			return placementIndeterminate
		}
		if ok {
			return placementCompatible
		}
		if !s.advance() {
			return placementIncompatible
		}
	}
}

// domainOf returns the referenced-value set for key, creating it.
func domainOf(domains map[string]map[string]bool, key string) map[string]bool {
	if domains[key] == nil {
		domains[key] = map[string]bool{}
	}
	return domains[key]
}

// mapKeys iterates a map's keys (for slices.Sorted).
func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// keyPrefersPresent: some required term names the key in match_labels or in
// an In or Exists expression.
func keyPrefersPresent(key string, placements []placementRule) bool {
	for _, p := range placements {
		for _, term := range p.Affinity.Required {
			if _, ok := term.MatchLabels[key]; ok {
				return true
			}
			for _, e := range term.MatchExpressions {
				if e.Key == key && (e.Operator == exprIn || e.Operator == exprExists) {
					return true
				}
			}
		}
	}
	return false
}

// advance steps the odometer, last domain fastest; false after the last one.
func (s *structuralSearch) advance() bool {
	for i := len(s.choice) - 1; i >= 0; i-- {
		s.choice[i]++
		if s.choice[i] < s.domains[i].choices() {
			return true
		}
		s.choice[i] = 0
	}
	return false
}

// step spends one search step; false when the budget is gone.
func (s *structuralSearch) step() bool {
	if s.steps < 1 {
		return false
	}
	s.steps--
	return true
}

// label is the current assignment of key.
func (s *structuralSearch) label(key string) assignedLabel {
	if v, ok := s.fixed[key]; ok {
		return assignedLabel{present: true, value: v}
	}
	if i, ok := slices.BinarySearchFunc(s.domains, key, func(d searchDomain, k string) int {
		switch {
		case d.key < k:
			return -1
		case d.key > k:
			return 1
		}
		return 0
	}); ok {
		return s.domains[i].choice(s.choice[i])
	}
	return assignedLabel{}
}

// matches evaluates every placement under the current assignment; done is
// false when the step budget ran out first.
func (s *structuralSearch) matches() (ok, done bool) {
	for _, p := range s.placements {
		for _, k := range sortedKeys(p.Selector) {
			if !s.step() {
				return false, false
			}
			if l := s.label(k); !l.present || l.other || l.value != p.Selector[k] {
				return false, true
			}
		}
		if len(p.Affinity.Required) > 0 {
			matched := false
			for _, term := range p.Affinity.Required {
				if !s.step() {
					return false, false
				}
				m, done := s.termMatches(term)
				if !done {
					return false, false
				}
				if m {
					matched = true
					break
				}
			}
			if !matched {
				return false, true
			}
		}
		for _, term := range p.Affinity.AntiAffinity {
			if !s.step() {
				return false, false
			}
			m, done := s.termMatches(term)
			if !done {
				return false, false
			}
			if m {
				return false, true
			}
		}
	}
	return true, true
}

// termMatches is selector_term_matches under the current assignment.
func (s *structuralSearch) termMatches(term selectorTerm) (ok, done bool) {
	for _, k := range sortedKeys(term.MatchLabels) {
		if !s.step() {
			return false, false
		}
		if l := s.label(k); !l.present || l.other || l.value != term.MatchLabels[k] {
			return false, true
		}
	}
	for _, e := range term.MatchExpressions {
		if !s.step() {
			return false, false
		}
		l := s.label(e.Key)
		var m bool
		switch e.Operator {
		case exprIn, exprNotIn:
			found := false
			if l.present && !l.other {
				for _, v := range e.Values {
					if !s.step() {
						return false, false
					}
					if v == l.value {
						found = true
						break
					}
				}
			}
			m = found == (e.Operator == exprIn)
		case exprExists:
			m = l.present
		case exprDoesNotExist:
			m = !l.present
		}
		if !m {
			return false, true
		}
	}
	return true, true
}
