package main

// scheduling_parse_test.go covers scheduling_parse.go and
// scheduling_decode.go: the serde rules placement JSON goes through, the
// models' leniency, the rule columns' errors, and how worker capabilities
// are read.

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestPlacementParseModel is parseModelPlacement: what a pack's or sensor's
// columns become, including the reference's leniency (a column that fails
// to parse or validate is no constraint, each column on its own).
func TestPlacementParseModel(t *testing.T) {
	gpuExists := []toleration{{Key: "gpu", Operator: tolerationExists}}
	cases := []struct {
		name          string
		sel, tol, aff string // "" is SQL NULL
		want          placementRule
	}{
		{name: "SQL NULL everywhere", want: placementRule{}},
		{name: "JSON null everywhere", sel: "null", tol: "null", aff: "null", want: placementRule{}},
		{name: "column defaults", sel: "{}", tol: "[]", aff: "{}", want: placementRule{Selector: placementLabels(), Tolerations: []toleration{}}},
		{name: "full placement",
			sel: `{"zone": "edge"}`,
			tol: `[{"key": "gpu", "operator": "exists"}, {"key": "dedicated", "value": "sensors", "effect": "no_schedule"}]`,
			aff: `{"required": [{"match_labels": {"arch": "x86"}, "match_expressions": [{"key": "zone", "operator": "not_in", "values": ["core"]}]}],
			       "preferred": [{"weight": 5, "preference": {"match_labels": {"disk": "ssd"}}}, {"preference": {}}],
			       "anti_affinity": [{"match_expressions": [{"key": "spot", "operator": "exists"}, {"key": "gpu", "operator": "does_not_exist"}]}]}`,
			want: placementRule{
				Selector: placementLabels("zone", "edge"),
				Tolerations: []toleration{
					{Key: "gpu", Operator: tolerationExists},
					{Key: "dedicated", Operator: tolerationEqual, Value: placementStrPtr("sensors"), Effect: taintNoSchedule},
				},
				Affinity: affinity{
					Required: []selectorTerm{{MatchLabels: placementLabels("arch", "x86"), MatchExpressions: []labelExpression{{Key: "zone", Operator: exprNotIn, Values: []string{"core"}}}}},
					Preferred: []preferredTerm{
						{Weight: 5, Preference: selectorTerm{MatchLabels: placementLabels("disk", "ssd")}},
						{Weight: 1},
					},
					AntiAffinity: []selectorTerm{{MatchExpressions: []labelExpression{{Key: "spot", Operator: exprExists}, {Key: "gpu", Operator: exprDoesNotExist}}}},
				},
			}},
		{name: "unknown fields are ignored", sel: "null", tol: `[{"key": "gpu", "operator": "exists", "toleration_seconds": 30}]`, aff: `{"node_affinity": true}`,
			want: placementRule{Tolerations: gpuExists}},
		{name: "operator as a single-key object (serde unit variant)", tol: `[{"key": "gpu", "operator": {"exists": null}}]`, want: placementRule{Tolerations: gpuExists}},
		{name: "toleration in serde sequence form", tol: `[["gpu", "exists"]]`, want: placementRule{Tolerations: gpuExists}},
		{name: "toleration sequence form with every field", tol: `[["gpu", "equal", "true", "prefer_no_schedule"]]`,
			want: placementRule{Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual, Value: placementStrPtr("true"), Effect: taintPreferNoSchedule}}}},
		{name: "toleration value and effect null are absent", tol: `[{"key": "gpu", "value": null, "effect": null}]`,
			want: placementRule{Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual}}}},
		{name: "affinity as an empty array is an empty affinity (serde sequence form)", aff: `[]`, want: placementRule{}},
		{name: "Exists toleration may carry a blank value", tol: `[{"key": "gpu", "operator": "exists", "value": " "}]`,
			want: placementRule{Tolerations: []toleration{{Key: "gpu", Operator: tolerationExists, Value: placementStrPtr(" ")}}}},
		{name: "a bad selector leaves the other columns alone", sel: `{"zone": 1}`, tol: `[{"key": "gpu", "operator": "exists"}]`, aff: `{"required": [{"match_labels": {"a": "b"}}]}`,
			want: placementRule{Tolerations: gpuExists, Affinity: affinity{Required: []selectorTerm{labelsTerm("a", "b")}}}},

		// each of these invalidates its column, which then constrains nothing
		{name: "selector not an object", sel: `["zone"]`, want: placementRule{}},
		{name: "selector with a number value", sel: `{"zone": "a", "gpu": true}`, want: placementRule{}},
		{name: "selector with a null value", sel: `{"zone": null}`, want: placementRule{}},
		{name: "selector with a blank value", sel: `{"zone": "a", "gpu": "  "}`, want: placementRule{}},
		{name: "selector with a blank key", sel: `{" ": "a"}`, want: placementRule{}},
		{name: "selector not JSON", sel: `{zone: a}`, want: placementRule{}},
		{name: "selector with trailing data", sel: `{"zone": "a"} {}`, want: placementRule{}},
		{name: "tolerations an object", tol: `{"key": "gpu"}`, want: placementRule{}},
		{name: "toleration without key", tol: `[{"operator": "exists"}]`, want: placementRule{}},
		{name: "toleration with null key", tol: `[{"key": null, "operator": "exists"}]`, want: placementRule{}},
		{name: "toleration with empty key", tol: `[{"key": "", "operator": "exists"}]`, want: placementRule{}},
		{name: "toleration with Kubernetes-cased operator", tol: `[{"key": "gpu", "operator": "Exists"}]`, want: placementRule{}},
		{name: "toleration with Kubernetes-cased effect", tol: `[{"key": "gpu", "operator": "exists", "effect": "NoSchedule"}]`, want: placementRule{}},
		{name: "toleration with NoExecute effect", tol: `[{"key": "gpu", "operator": "exists", "effect": "no_execute"}]`, want: placementRule{}},
		{name: "toleration with null operator", tol: `[{"key": "gpu", "operator": null}]`, want: placementRule{}},
		{name: "Equal toleration with a blank value", tol: `[{"key": "gpu", "value": ""}]`, want: placementRule{}},
		{name: "toleration with a number value", tol: `[{"key": "gpu", "value": 1}]`, want: placementRule{}},
		{name: "one bad toleration drops them all", tol: `[{"key": "gpu", "operator": "exists"}, {"key": ""}]`, want: placementRule{}},
		{name: "toleration sequence form too long", tol: `[["gpu", "exists", null, null, "extra"]]`, want: placementRule{}},
		{name: "operator object with a non-null value", tol: `[{"key": "gpu", "operator": {"exists": 1}}]`, want: placementRule{}},
		{name: "operator object with two keys", tol: `[{"key": "gpu", "operator": {"exists": null, "equal": null}}]`, want: placementRule{}},
		{name: "affinity a string", aff: `"zone=a"`, want: placementRule{}},
		{name: "affinity required null", aff: `{"required": null}`, want: placementRule{}},
		{name: "affinity In without values", aff: `{"required": [{"match_expressions": [{"key": "zone", "operator": "in"}]}]}`, want: placementRule{}},
		{name: "affinity NotIn with empty values", aff: `{"required": [{"match_expressions": [{"key": "zone", "operator": "not_in", "values": []}]}]}`, want: placementRule{}},
		{name: "affinity In with a blank value", aff: `{"required": [{"match_expressions": [{"key": "zone", "operator": "in", "values": ["a", " "]}]}]}`, want: placementRule{}},
		{name: "affinity Exists with values", aff: `{"anti_affinity": [{"match_expressions": [{"key": "zone", "operator": "exists", "values": ["a"]}]}]}`, want: placementRule{}},
		{name: "affinity DoesNotExist with values", aff: `{"required": [{"match_expressions": [{"key": "zone", "operator": "does_not_exist", "values": ["a"]}]}]}`, want: placementRule{}},
		{name: "affinity expression without operator", aff: `{"required": [{"match_expressions": [{"key": "zone"}]}]}`, want: placementRule{}},
		{name: "affinity Kubernetes-cased operator", aff: `{"required": [{"match_expressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}`, want: placementRule{}},
		{name: "affinity expression with a blank key", aff: `{"required": [{"match_expressions": [{"key": "", "operator": "exists"}]}]}`, want: placementRule{}},
		{name: "affinity match_labels blank value", aff: `{"required": [{"match_labels": {"zone": ""}}]}`, want: placementRule{}},
		{name: "affinity preferred weight 0", aff: `{"preferred": [{"weight": 0, "preference": {}}]}`, want: placementRule{}},
		{name: "affinity preferred weight 101", aff: `{"preferred": [{"weight": 101, "preference": {}}]}`, want: placementRule{}},
		{name: "affinity preferred weight fractional", aff: `{"preferred": [{"weight": 1.5, "preference": {}}]}`, want: placementRule{}},
		{name: "affinity preferred weight as float text", aff: `{"preferred": [{"weight": 1.0, "preference": {}}]}`, want: placementRule{}},
		{name: "affinity preferred weight beyond i32", aff: `{"preferred": [{"weight": 4294967297, "preference": {}}]}`, want: placementRule{}},
		{name: "affinity preferred weight a string", aff: `{"preferred": [{"weight": "5", "preference": {}}]}`, want: placementRule{}},
		{name: "affinity preferred without preference", aff: `{"preferred": [{"weight": 5}]}`, want: placementRule{}},
		{name: "affinity invalid preferred term drops required too", aff: `{"required": [{"match_labels": {"a": "b"}}], "preferred": [{"weight": 0, "preference": {}}]}`, want: placementRule{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.Source = "sensor"
			got := parseModelPlacement("sensor", placementJSON(tc.sel), placementJSON(tc.tol), placementJSON(tc.aff))
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseModelPlacement:\nwant %+v\n got %+v", tc.want, got)
			}
		})
	}
}

// raw turns "" into SQL NULL (nil) and anything else into its JSON bytes.
func placementJSON(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

// TestPlacementParseRule is parseRulePlacement: the same content rules as
// the models, but the column shapes are checked first and every problem is
// an error naming the rule and the column.
func TestPlacementParseRule(t *testing.T) {
	cases := []struct {
		name          string
		sel, tol, aff string
		want          placementRule
		err           string // substring; "" means success
	}{
		{name: "column defaults", sel: "{}", tol: "[]", aff: "{}", want: placementRule{Selector: placementLabels(), Tolerations: []toleration{}}},
		{name: "full placement", sel: `{"site": "edge"}`, tol: `[{"key": "gpu", "operator": "exists", "effect": "no_schedule"}]`,
			aff: `{"anti_affinity": [{"match_labels": {"spot": "true"}}]}`,
			want: placementRule{Selector: placementLabels("site", "edge"), Tolerations: []toleration{{Key: "gpu", Operator: tolerationExists, Effect: taintNoSchedule}},
				Affinity: affinity{AntiAffinity: []selectorTerm{labelsTerm("spot", "true")}}}},
		{name: "selector SQL NULL", tol: "[]", aff: "{}", err: "rule core.r: sensor_worker_selector must be an object, got null"},
		{name: "selector JSON null", sel: "null", tol: "[]", aff: "{}", err: "sensor_worker_selector must be an object, got null"},
		{name: "selector an array", sel: "[]", tol: "[]", aff: "{}", err: "sensor_worker_selector must be an object, got an array"},
		{name: "tolerations null", sel: "{}", tol: "null", aff: "{}", err: "sensor_worker_tolerations must be an array, got null"},
		{name: "tolerations an object", sel: "{}", tol: "{}", aff: "{}", err: "sensor_worker_tolerations must be an array, got an object"},
		{name: "affinity null", sel: "{}", tol: "[]", aff: "null", err: "sensor_worker_affinity must be an object, got null"},
		{name: "affinity an array (models accept it, rules do not)", sel: "{}", tol: "[]", aff: "[]", err: "sensor_worker_affinity must be an object, got an array"},
		{name: "selector not JSON", sel: "{", tol: "[]", aff: "{}", err: "rule core.r: sensor_worker_selector: not valid JSON"},
		{name: "selector blank value", sel: `{"site": ""}`, tol: "[]", aff: "{}", err: `rule core.r: worker_selector["site"] must be a non-empty string`},
		{name: "selector number value", sel: `{"site": 3}`, tol: "[]", aff: "{}", err: "worker_selector must be an object of string labels: site: expected a string, got a number"},
		{name: "toleration blank key", sel: "{}", tol: `[{"key": " ", "operator": "exists"}]`, aff: "{}", err: "worker_tolerations key must be non-empty"},
		{name: "toleration bad effect", sel: "{}", tol: `[{"key": "gpu", "effect": "NoSchedule"}]`, aff: "{}", err: `effect: unknown variant "NoSchedule"`},
		{name: "affinity In without values", sel: "{}", tol: "[]", aff: `{"required": [{"match_expressions": [{"key": "zone", "operator": "in"}]}]}`, err: `worker_affinity expression "zone" requires at least one value`},
		{name: "affinity bad weight", sel: "{}", tol: "[]", aff: `{"preferred": [{"weight": 0, "preference": {}}]}`, err: "preferred weights must be between 1 and 100, got 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRulePlacement("rule core.r", placementJSON(tc.sel), placementJSON(tc.tol), placementJSON(tc.aff))
			if tc.err != "" {
				if err == nil {
					t.Fatalf("want an error containing %q, got %+v", tc.err, got)
				}
				if !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "rule core.r") {
					t.Fatalf("want an error naming rule core.r and containing %q, got %q", tc.err, err)
				}
				if !errors.Is(err, errInvalidPlacement) {
					t.Fatalf("error %q does not wrap errInvalidPlacement", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			tc.want.Source = "rule core.r"
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseRulePlacement:\nwant %+v\n got %+v", tc.want, got)
			}
		})
	}
}

// TestPlacementWorkerLabelsAndTaints is workerLabels and workerTaints: the
// reference reads capabilities without validating them, and one malformed
// entry empties the whole list.
func TestPlacementWorkerLabelsAndTaints(t *testing.T) {
	cases := []struct {
		name       string
		caps       string
		wantLabels map[string]string
		wantTaints []workerTaint
	}{
		{name: "SQL NULL capabilities"},
		{name: "JSON null capabilities", caps: "null"},
		{name: "capabilities not an object", caps: `["labels"]`},
		{name: "capabilities not JSON", caps: `{"labels":`},
		{name: "no labels or taints", caps: `{"runtimes": ["native"]}`},
		{name: "labels and taints",
			caps:       `{"labels": {"zone": "edge", "gpu": "nvidia"}, "taints": [{"key": "gpu", "value": "true", "effect": "no_schedule"}, {"key": "spot", "effect": "prefer_no_schedule"}]}`,
			wantLabels: placementLabels("zone", "edge", "gpu", "nvidia"),
			wantTaints: []workerTaint{{Key: "gpu", Value: placementStrPtr("true"), Effect: taintNoSchedule}, {Key: "spot", Effect: taintPreferNoSchedule}}},
		{name: "taint effect defaults to no_schedule", caps: `{"taints": [{"key": "gpu"}]}`, wantTaints: []workerTaint{{Key: "gpu", Effect: taintNoSchedule}}},
		{name: "taint value null is absent", caps: `{"taints": [{"key": "gpu", "value": null}]}`, wantTaints: []workerTaint{{Key: "gpu", Effect: taintNoSchedule}}},
		{name: "taint keys and values are not validated", caps: `{"taints": [{"key": "", "value": ""}]}`, wantTaints: []workerTaint{{Key: "", Value: placementStrPtr(""), Effect: taintNoSchedule}}},
		{name: "labels are not validated", caps: `{"labels": {"zone": ""}}`, wantLabels: placementLabels("zone", "")},
		{name: "a non-string label drops all labels", caps: `{"labels": {"zone": "edge", "cores": 4}, "taints": [{"key": "gpu"}]}`, wantTaints: []workerTaint{{Key: "gpu", Effect: taintNoSchedule}}},
		{name: "labels an array", caps: `{"labels": ["zone"]}`},
		{name: "taints an object", caps: `{"taints": {"key": "gpu"}}`},
		{name: "a taint with a bad effect drops all taints", caps: `{"labels": {"a": "b"}, "taints": [{"key": "gpu"}, {"key": "x", "effect": "NoSchedule"}]}`, wantLabels: placementLabels("a", "b")},
		{name: "a taint with a null effect drops all taints", caps: `{"taints": [{"key": "gpu", "effect": null}]}`},
		{name: "a taint without key drops all taints", caps: `{"taints": [{"value": "x"}]}`},
		{name: "taint in sequence form", caps: `{"taints": [["gpu", "true"]]}`, wantTaints: []workerTaint{{Key: "gpu", Value: placementStrPtr("true"), Effect: taintNoSchedule}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := workerLabels(placementJSON(tc.caps)); len(got) != len(tc.wantLabels) || (len(got) > 0 && !reflect.DeepEqual(got, tc.wantLabels)) {
				t.Errorf("workerLabels: want %v, got %v", tc.wantLabels, got)
			}
			if got := workerTaints(placementJSON(tc.caps)); len(got) != len(tc.wantTaints) || (len(got) > 0 && !reflect.DeepEqual(got, tc.wantTaints)) {
				t.Errorf("workerTaints: want %+v, got %+v", tc.wantTaints, got)
			}
		})
	}
}

// TestPlacementReadsOwnCapabilities is the seam with capabilities.go: the
// labels and taints this agent registers are read back unchanged, so its
// own row is judged by what it advertises.
func TestPlacementReadsOwnCapabilities(t *testing.T) {
	caps := buildCapabilities(capabilityInput{
		Labels:        placementLabels("zone", "edge"),
		Taints:        []Taint{{Key: "gpu", Value: "true", Effect: taintNoSchedule}, {Key: "spot"}},
		SensorVersion: "0.1.0",
	})
	b, err := json.Marshal(caps)
	if err != nil {
		t.Fatalf("marshal capabilities: %v", err)
	}
	if got := workerLabels(b); !reflect.DeepEqual(got, placementLabels("zone", "edge")) {
		t.Errorf("workerLabels: want zone=edge, got %v", got)
	}
	want := []workerTaint{{Key: "gpu", Value: placementStrPtr("true"), Effect: taintNoSchedule}, {Key: "spot", Effect: taintNoSchedule}}
	if got := workerTaints(b); !reflect.DeepEqual(got, want) {
		t.Errorf("workerTaints: want %+v, got %+v", want, got)
	}
}
