package main

// scheduling_decode.go decodes placement JSON the way serde_json::from_value
// decodes a Value into the reference's scheduling types. Go's encoding/json
// is laxer (null into a string is a no-op, any text is a valid "enum"), so
// the JSON becomes a generic tree and every field is checked by hand:
//   - objects ignore unknown keys; a field with a serde default may be
//     missing, but present as null it is an error unless it is an Option;
//   - a struct may also be given as an array of its fields in declaration
//     order (serde's sequence form), no longer than the field list;
//   - an enum is its snake_case name, or an object with that single key
//     whose value is null (serde's externally tagged unit variant).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// decodePlacementJSON decodes one column into a generic tree; empty input
// (SQL NULL) is JSON null. Numbers stay json.Number so integers are checked
// as the reference checks an i32.
func decodePlacementJSON(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not valid JSON: %v: %w", err, errInvalidPlacement)
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("not valid JSON: data after the value: %w", errInvalidPlacement)
	}
	return v, nil
}

// jsonKind names a decoded value's JSON type for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// parseI32 accepts what serde_json accepts for an i32: an integer literal
// (no fraction, no exponent) in range.
func parseI32(v any) (int, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("expected an integer, got %s: %w", jsonKind(v), errInvalidPlacement)
	}
	i, err := strconv.ParseInt(n.String(), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("expected a 32-bit integer, got %s: %w", n, errInvalidPlacement)
	}
	return int(i), nil
}

// recordFields returns a struct's fields by name from its object form or its
// sequence form, so decoders handle both alike. A missing field is absent
// from the map.
func recordFields(v any, names ...string) (map[string]any, error) {
	switch x := v.(type) {
	case map[string]any:
		return x, nil
	case []any:
		if len(x) > len(names) {
			return nil, fmt.Errorf("array of %d elements for a record of %d fields: %w", len(x), len(names), errInvalidPlacement)
		}
		fields := make(map[string]any, len(x))
		for i, item := range x {
			fields[names[i]] = item
		}
		return fields, nil
	}
	return nil, fmt.Errorf("expected an object, got %s: %w", jsonKind(v), errInvalidPlacement)
}

// decodeString accepts only a JSON string.
func decodeString(v any, field string) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: expected a string, got %s: %w", field, jsonKind(v), errInvalidPlacement)
	}
	return s, nil
}

// decodeOptString is an Option<String>: null is nil.
func decodeOptString(v any, field string) (*string, error) {
	if v == nil {
		return nil, nil
	}
	s, err := decodeString(v, field)
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// decodeEnum accepts one of the allowed snake_case names, as a string or as
// {"name": null}.
func decodeEnum(v any, field string, allowed ...string) (string, error) {
	name, ok := v.(string)
	if obj, isObj := v.(map[string]any); isObj && len(obj) == 1 {
		for k, inner := range obj {
			name, ok = k, inner == nil
		}
	}
	if ok {
		for _, a := range allowed {
			if name == a {
				return name, nil
			}
		}
		return "", fmt.Errorf("%s: unknown variant %q, expected one of %v: %w", field, name, allowed, errInvalidPlacement)
	}
	return "", fmt.Errorf("%s: expected one of %v, got %s: %w", field, allowed, jsonKind(v), errInvalidPlacement)
}

// decodeStringMap is a BTreeMap<String, String>: an object of strings only.
func decodeStringMap(v any) (map[string]string, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("expected an object, got %s: %w", jsonKind(v), errInvalidPlacement)
	}
	out := make(map[string]string, len(obj))
	for k, item := range obj {
		s, err := decodeString(item, k)
		if err != nil {
			return nil, err
		}
		out[k] = s
	}
	return out, nil
}

// decodeList is a Vec: an array only.
func decodeList(v any) ([]any, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("expected an array, got %s: %w", jsonKind(v), errInvalidPlacement)
	}
	return items, nil
}

// decodeTaint is WorkerTaint {key, value?, effect = no_schedule}.
func decodeTaint(v any) (workerTaint, error) {
	f, err := recordFields(v, "key", "value", "effect")
	if err != nil {
		return workerTaint{}, err
	}
	t := workerTaint{Effect: taintNoSchedule}
	raw, ok := f["key"]
	if !ok {
		return t, fmt.Errorf("taint: missing field key: %w", errInvalidPlacement)
	}
	if t.Key, err = decodeString(raw, "key"); err != nil {
		return t, err
	}
	if t.Value, err = decodeOptString(f["value"], "value"); err != nil {
		return t, err
	}
	if raw, ok := f["effect"]; ok {
		if t.Effect, err = decodeEnum(raw, "effect", taintNoSchedule, taintPreferNoSchedule); err != nil {
			return t, err
		}
	}
	return t, nil
}

// decodeToleration is WorkerToleration {key, operator = equal, value?, effect?}.
func decodeToleration(v any) (toleration, error) {
	f, err := recordFields(v, "key", "operator", "value", "effect")
	if err != nil {
		return toleration{}, err
	}
	t := toleration{Operator: tolerationEqual}
	raw, ok := f["key"]
	if !ok {
		return t, fmt.Errorf("toleration: missing field key: %w", errInvalidPlacement)
	}
	if t.Key, err = decodeString(raw, "key"); err != nil {
		return t, err
	}
	if raw, ok := f["operator"]; ok {
		if t.Operator, err = decodeEnum(raw, "operator", tolerationEqual, tolerationExists); err != nil {
			return t, err
		}
	}
	if t.Value, err = decodeOptString(f["value"], "value"); err != nil {
		return t, err
	}
	if raw := f["effect"]; raw != nil {
		if t.Effect, err = decodeEnum(raw, "effect", taintNoSchedule, taintPreferNoSchedule); err != nil {
			return t, err
		}
	}
	return t, nil
}

// decodeAffinity is WorkerAffinity {required = [], preferred = [], anti_affinity = []}.
func decodeAffinity(v any) (affinity, error) {
	f, err := recordFields(v, "required", "preferred", "anti_affinity")
	if err != nil {
		return affinity{}, err
	}
	var a affinity
	if a.Required, err = decodeTerms(f, "required"); err != nil {
		return a, err
	}
	if a.AntiAffinity, err = decodeTerms(f, "anti_affinity"); err != nil {
		return a, err
	}
	if raw, ok := f["preferred"]; ok {
		items, err := decodeList(raw)
		if err != nil {
			return a, fmt.Errorf("preferred: %w", err)
		}
		for i, item := range items {
			p, err := decodePreferred(item)
			if err != nil {
				return a, fmt.Errorf("preferred[%d]: %w", i, err)
			}
			a.Preferred = append(a.Preferred, p)
		}
	}
	return a, nil
}

// decodeTerms decodes an optional list of selector terms held in f[field].
func decodeTerms(f map[string]any, field string) ([]selectorTerm, error) {
	raw, ok := f[field]
	if !ok {
		return nil, nil
	}
	items, err := decodeList(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	terms := make([]selectorTerm, 0, len(items))
	for i, item := range items {
		t, err := decodeTerm(item)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		terms = append(terms, t)
	}
	return terms, nil
}

// decodePreferred is PreferredWorkerSelectorTerm {weight = 1, preference}.
func decodePreferred(v any) (preferredTerm, error) {
	f, err := recordFields(v, "weight", "preference")
	if err != nil {
		return preferredTerm{}, err
	}
	p := preferredTerm{Weight: 1}
	if raw, ok := f["weight"]; ok {
		if p.Weight, err = parseI32(raw); err != nil {
			return p, fmt.Errorf("weight: %w", err)
		}
	}
	raw, ok := f["preference"]
	if !ok {
		return p, fmt.Errorf("missing field preference: %w", errInvalidPlacement)
	}
	if p.Preference, err = decodeTerm(raw); err != nil {
		return p, fmt.Errorf("preference: %w", err)
	}
	return p, nil
}

// decodeTerm is WorkerSelectorTerm {match_labels = {}, match_expressions = []}.
func decodeTerm(v any) (selectorTerm, error) {
	f, err := recordFields(v, "match_labels", "match_expressions")
	if err != nil {
		return selectorTerm{}, err
	}
	var t selectorTerm
	if raw, ok := f["match_labels"]; ok {
		if t.MatchLabels, err = decodeStringMap(raw); err != nil {
			return t, fmt.Errorf("match_labels: %w", err)
		}
	}
	if raw, ok := f["match_expressions"]; ok {
		items, err := decodeList(raw)
		if err != nil {
			return t, fmt.Errorf("match_expressions: %w", err)
		}
		for i, item := range items {
			e, err := decodeExpression(item)
			if err != nil {
				return t, fmt.Errorf("match_expressions[%d]: %w", i, err)
			}
			t.MatchExpressions = append(t.MatchExpressions, e)
		}
	}
	return t, nil
}

// decodeExpression is WorkerLabelExpression {key, operator, values = []}.
func decodeExpression(v any) (labelExpression, error) {
	f, err := recordFields(v, "key", "operator", "values")
	if err != nil {
		return labelExpression{}, err
	}
	var e labelExpression
	raw, ok := f["key"]
	if !ok {
		return e, fmt.Errorf("missing field key: %w", errInvalidPlacement)
	}
	if e.Key, err = decodeString(raw, "key"); err != nil {
		return e, err
	}
	raw, ok = f["operator"]
	if !ok {
		return e, fmt.Errorf("missing field operator: %w", errInvalidPlacement)
	}
	if e.Operator, err = decodeEnum(raw, "operator", exprIn, exprNotIn, exprExists, exprDoesNotExist); err != nil {
		return e, err
	}
	if raw, ok := f["values"]; ok {
		items, err := decodeList(raw)
		if err != nil {
			return e, fmt.Errorf("values: %w", err)
		}
		for _, item := range items {
			s, err := decodeString(item, "values")
			if err != nil {
				return e, err
			}
			e.Values = append(e.Values, s)
		}
	}
	return e, nil
}
