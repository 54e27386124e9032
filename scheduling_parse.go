package main

// scheduling_parse.go turns placement columns (pack and sensor worker_*,
// rule sensor_worker_*) and the worker's capabilities labels/taints into the
// types of scheduling.go, with the reference's validation on top and its two
// policies for bad data: models (pack, sensor) drop an invalid column, rules
// fail. The serde-exact field decoding underneath is scheduling_decode.go.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// errInvalidPlacement marks every placement parse or validation error, so a
// caller can tell bad rule data from a database failure with errors.Is.
var errInvalidPlacement = errors.New("invalid worker placement")

// parseModelPlacement parses a pack's or sensor's worker_selector,
// worker_tolerations and worker_affinity as the reference's models do: each
// column on its own, and one that fails to parse or validate counts as empty
// (no constraint) rather than an error. SQL NULL (empty raw) and JSON null
// are empty too.
func parseModelPlacement(source string, selector, tolerations, affinity json.RawMessage) placementRule {
	p := placementRule{Source: source}
	if v, err := decodePlacementJSON(selector); err == nil {
		if sel, err := parseWorkerSelector(v); err == nil {
			p.Selector = sel
		}
	}
	if v, err := decodePlacementJSON(tolerations); err == nil {
		if tols, err := parseWorkerTolerations(v); err == nil {
			p.Tolerations = tols
		}
	}
	if v, err := decodePlacementJSON(affinity); err == nil {
		if aff, err := parseWorkerAffinity(v); err == nil {
			p.Affinity = aff
		}
	}
	return p
}

// parseRulePlacement parses a rule's sensor_worker_selector,
// sensor_worker_tolerations and sensor_worker_affinity as
// parse_rule_sensor_placement does: the selector and affinity must be JSON
// objects and the tolerations an array (null or SQL NULL is an error), and
// any invalid content is an error, not an empty placement. In the reference
// such an error fails the whole eligibility check it occurs in.
func parseRulePlacement(source string, selector, tolerations, affinity json.RawMessage) (placementRule, error) {
	p := placementRule{Source: source}
	sel, err := decodePlacementJSON(selector)
	if err != nil {
		return p, fmt.Errorf("%s: sensor_worker_selector: %w", source, err)
	}
	tols, err := decodePlacementJSON(tolerations)
	if err != nil {
		return p, fmt.Errorf("%s: sensor_worker_tolerations: %w", source, err)
	}
	aff, err := decodePlacementJSON(affinity)
	if err != nil {
		return p, fmt.Errorf("%s: sensor_worker_affinity: %w", source, err)
	}
	if _, ok := sel.(map[string]any); !ok {
		return p, fmt.Errorf("%s: sensor_worker_selector must be an object, got %s: %w", source, jsonKind(sel), errInvalidPlacement)
	}
	if _, ok := tols.([]any); !ok {
		return p, fmt.Errorf("%s: sensor_worker_tolerations must be an array, got %s: %w", source, jsonKind(tols), errInvalidPlacement)
	}
	if _, ok := aff.(map[string]any); !ok {
		return p, fmt.Errorf("%s: sensor_worker_affinity must be an object, got %s: %w", source, jsonKind(aff), errInvalidPlacement)
	}
	if p.Selector, err = parseWorkerSelector(sel); err != nil {
		return p, fmt.Errorf("%s: %w", source, err)
	}
	if p.Tolerations, err = parseWorkerTolerations(tols); err != nil {
		return p, fmt.Errorf("%s: %w", source, err)
	}
	if p.Affinity, err = parseWorkerAffinity(aff); err != nil {
		return p, fmt.Errorf("%s: %w", source, err)
	}
	return p, nil
}

// workerLabels reads capabilities.labels as worker_labels_from_capabilities
// does: an object of strings, else (missing, null, any non-string value)
// no labels at all. Values are not validated.
func workerLabels(capabilities json.RawMessage) map[string]string {
	v, ok := capabilityField(capabilities, "labels")
	if !ok {
		return nil
	}
	labels, err := decodeStringMap(v)
	if err != nil {
		return nil
	}
	return labels
}

// workerTaints reads capabilities.taints as worker_taints_from_capabilities
// does: one malformed entry drops the whole list (the worker then looks
// untainted); keys and values are not validated; effect defaults to
// no_schedule.
func workerTaints(capabilities json.RawMessage) []workerTaint {
	v, ok := capabilityField(capabilities, "taints")
	if !ok {
		return nil
	}
	items, err := decodeList(v)
	if err != nil {
		return nil
	}
	taints := make([]workerTaint, 0, len(items))
	for _, item := range items {
		t, err := decodeTaint(item)
		if err != nil {
			return nil
		}
		taints = append(taints, t)
	}
	return taints
}

// capabilityField returns capabilities[key] when capabilities is an object
// holding it.
func capabilityField(capabilities json.RawMessage, key string) (any, bool) {
	v, err := decodePlacementJSON(capabilities)
	if err != nil {
		return nil, false
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	field, ok := obj[key]
	return field, ok
}

// parseWorkerSelector is parse_worker_selector: null is empty, else an
// object of non-blank string values under non-blank keys.
func parseWorkerSelector(v any) (map[string]string, error) {
	if v == nil {
		return nil, nil
	}
	sel, err := decodeStringMap(v)
	if err != nil {
		return nil, fmt.Errorf("worker_selector must be an object of string labels: %w", err)
	}
	if err := validateLabelMap("worker_selector", sel); err != nil {
		return nil, err
	}
	return sel, nil
}

// parseWorkerTolerations is parse_worker_tolerations: null is empty, else an
// array of tolerations with non-blank keys, and a non-blank value where an
// Equal toleration sets one.
func parseWorkerTolerations(v any) ([]toleration, error) {
	if v == nil {
		return nil, nil
	}
	items, err := decodeList(v)
	if err != nil {
		return nil, fmt.Errorf("worker_tolerations must be an array of tolerations: %w", err)
	}
	tols := make([]toleration, 0, len(items))
	for i, item := range items {
		t, err := decodeToleration(item)
		if err != nil {
			return nil, fmt.Errorf("worker_tolerations must be an array of tolerations: [%d]: %w", i, err)
		}
		if strings.TrimSpace(t.Key) == "" {
			return nil, fmt.Errorf("worker_tolerations key must be non-empty: %w", errInvalidPlacement)
		}
		if t.Operator == tolerationEqual && t.Value != nil && strings.TrimSpace(*t.Value) == "" {
			return nil, fmt.Errorf("worker_tolerations %q value must be non-empty when provided: %w", t.Key, errInvalidPlacement)
		}
		tols = append(tols, t)
	}
	return tols, nil
}

// parseWorkerAffinity is parse_worker_affinity: null is empty, else an
// affinity whose every term is valid and whose preferred weights are 1..100.
func parseWorkerAffinity(v any) (affinity, error) {
	if v == nil {
		return affinity{}, nil
	}
	aff, err := decodeAffinity(v)
	if err != nil {
		return affinity{}, fmt.Errorf("worker_affinity must be an affinity object: %w", err)
	}
	terms := append(append([]selectorTerm{}, aff.Required...), aff.AntiAffinity...)
	for _, p := range aff.Preferred {
		terms = append(terms, p.Preference)
	}
	for _, term := range terms {
		if err := validateSelectorTerm(term); err != nil {
			return affinity{}, err
		}
	}
	for _, p := range aff.Preferred {
		if p.Weight < 1 || p.Weight > 100 {
			return affinity{}, fmt.Errorf("worker_affinity preferred weights must be between 1 and 100, got %d: %w", p.Weight, errInvalidPlacement)
		}
	}
	return aff, nil
}

// validateLabelMap rejects blank keys and blank values (trimmed, as the
// reference trims).
func validateLabelMap(field string, labels map[string]string) error {
	for _, k := range sortedKeys(labels) {
		if strings.TrimSpace(k) == "" {
			return fmt.Errorf("%s key must be non-empty: %w", field, errInvalidPlacement)
		}
		if strings.TrimSpace(labels[k]) == "" {
			return fmt.Errorf("%s[%q] must be a non-empty string: %w", field, k, errInvalidPlacement)
		}
	}
	return nil
}

// validateSelectorTerm: In/NotIn need at least one non-blank value,
// Exists/DoesNotExist must have none.
func validateSelectorTerm(term selectorTerm) error {
	if err := validateLabelMap("worker_affinity match_labels", term.MatchLabels); err != nil {
		return err
	}
	for _, e := range term.MatchExpressions {
		if strings.TrimSpace(e.Key) == "" {
			return fmt.Errorf("worker_affinity match_expressions key must be non-empty: %w", errInvalidPlacement)
		}
		switch e.Operator {
		case exprIn, exprNotIn:
			if len(e.Values) == 0 {
				return fmt.Errorf("worker_affinity expression %q requires at least one value: %w", e.Key, errInvalidPlacement)
			}
			for _, v := range e.Values {
				if strings.TrimSpace(v) == "" {
					return fmt.Errorf("worker_affinity expression %q values must be non-empty: %w", e.Key, errInvalidPlacement)
				}
			}
		default:
			if len(e.Values) > 0 {
				return fmt.Errorf("worker_affinity expression %q must not set values with %s: %w", e.Key, e.Operator, errInvalidPlacement)
			}
		}
	}
	return nil
}
