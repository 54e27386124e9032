package main

// scheduling_test.go covers scheduling.go, scheduling_parse.go and
// scheduling_decode.go: every operator, effect and edge of the reference's
// placement matching, the serde rules its JSON goes through, and cases
// rebuilt by hand from the reference's own unit and admission tests.

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func sptr(s string) *string { return &s }

// kv builds a label map from key, value pairs.
func kv(pairs ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return m
}

func labelsTerm(pairs ...string) selectorTerm { return selectorTerm{MatchLabels: kv(pairs...)} }

func exprTerm(key, op string, values ...string) selectorTerm {
	return selectorTerm{MatchExpressions: []labelExpression{{Key: key, Operator: op, Values: values}}}
}

func requiredOf(source string, terms ...selectorTerm) placementRule {
	return placementRule{Source: source, Affinity: affinity{Required: terms}}
}

func antiOf(source string, terms ...selectorTerm) placementRule {
	return placementRule{Source: source, Affinity: affinity{AntiAffinity: terms}}
}

var (
	gpuNoSchedule   = workerTaint{Key: "gpu", Value: sptr("true"), Effect: taintNoSchedule}
	gpuPreferNoSch  = workerTaint{Key: "gpu", Value: sptr("true"), Effect: taintPreferNoSchedule}
	bareNoSchedule  = workerTaint{Key: "dedicated", Effect: taintNoSchedule}
	sensorPlacement = placementRule{Source: "sensor"}
)

// TestPlacementMatchTable is the matching decision. Each case also checks
// that placementMismatch agrees with workerMatchesAll and names the source
// and key in its reason.
func TestPlacementMatchTable(t *testing.T) {
	cases := []struct {
		name       string
		labels     map[string]string
		taints     []workerTaint
		placements []placementRule
		want       bool
		reason     string // substring of placementMismatch when !want
	}{
		{name: "no placements match", want: true},
		{name: "no placements match even an untolerated NoSchedule taint (all over nothing)", taints: []workerTaint{gpuNoSchedule}, want: true},
		{name: "empty placement, untainted worker", placements: []placementRule{sensorPlacement}, want: true},
		{name: "empty placement, worker with labels", labels: kv("zone", "a"), placements: []placementRule{sensorPlacement}, want: true},

		// selectors
		{name: "selector equal", labels: kv("zone", "edge", "arch", "x86"), placements: []placementRule{{Source: "sensor", Selector: kv("zone", "edge")}}, want: true},
		{name: "selector value differs", labels: kv("zone", "core"), placements: []placementRule{{Source: "rule core.x", Selector: kv("zone", "edge")}}, reason: "rule core.x: selector zone=edge not matched (worker has zone=core)"},
		{name: "selector key missing", labels: kv("arch", "x86"), placements: []placementRule{{Source: "pack", Selector: kv("zone", "edge")}}, reason: "pack: selector zone=edge not matched (worker has no zone label)"},
		{name: "selector compares case exactly", labels: kv("zone", "Edge"), placements: []placementRule{{Source: "sensor", Selector: kv("zone", "edge")}}, reason: "zone=edge"},
		{name: "selector compares whitespace exactly", labels: kv("zone", "edge "), placements: []placementRule{{Source: "sensor", Selector: kv("zone", "edge")}}, reason: "zone=edge"},
		{name: "selector keys are case sensitive", labels: kv("Zone", "edge"), placements: []placementRule{{Source: "sensor", Selector: kv("zone", "edge")}}, reason: "no zone label"},
		{name: "every selector key must match", labels: kv("zone", "edge", "gpu", "amd"), placements: []placementRule{{Source: "sensor", Selector: kv("zone", "edge", "gpu", "nvidia")}}, reason: "gpu=nvidia"},
		{name: "every placement's selector must match", labels: kv("zone", "edge"), placements: []placementRule{{Source: "pack", Selector: kv("zone", "edge")}, {Source: "rule core.r", Selector: kv("site", "a")}}, reason: "rule core.r: selector site=a"},

		// taints and tolerations
		{name: "untolerated NoSchedule taint fails", taints: []workerTaint{gpuNoSchedule}, placements: []placementRule{sensorPlacement}, reason: "taint gpu=true:no_schedule not tolerated"},
		{name: "untolerated valueless taint fails", taints: []workerTaint{bareNoSchedule}, placements: []placementRule{sensorPlacement}, reason: "taint dedicated:no_schedule not tolerated"},
		{name: "PreferNoSchedule taint does not exclude", taints: []workerTaint{gpuPreferNoSch}, placements: []placementRule{sensorPlacement}, want: true},
		{name: "Equal toleration with the same value", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual, Value: sptr("true")}}}}, want: true},
		{name: "Equal toleration with another value", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual, Value: sptr("false")}}}}, reason: "taint gpu=true"},
		{name: "Equal toleration without value does not match a valued taint", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual}}}}, reason: "taint gpu=true"},
		{name: "Equal toleration without value matches a valueless taint", taints: []workerTaint{bareNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "dedicated", Operator: tolerationEqual}}}}, want: true},
		{name: "Equal toleration with a value does not match a valueless taint", taints: []workerTaint{bareNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "dedicated", Operator: tolerationEqual, Value: sptr("x")}}}}, reason: "taint dedicated"},
		{name: "Equal absent value differs from an empty taint value", taints: []workerTaint{{Key: "k", Value: sptr(""), Effect: taintNoSchedule}},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "k", Operator: tolerationEqual}}}}, reason: "taint k=:no_schedule"},
		{name: "Exists toleration ignores the value", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationExists, Value: sptr("other")}}}}, want: true},
		{name: "toleration for another key does not help", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "tpu", Operator: tolerationExists}}}}, reason: "taint gpu"},
		{name: "empty toleration key is no wildcard", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "", Operator: tolerationExists}}}}, reason: "taint gpu"},
		{name: "toleration key is case sensitive", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "GPU", Operator: tolerationExists}}}}, reason: "taint gpu"},
		{name: "toleration effect NoSchedule matches", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationExists, Effect: taintNoSchedule}}}}, want: true},
		{name: "toleration effect PreferNoSchedule does not tolerate NoSchedule", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationExists, Effect: taintPreferNoSchedule}}}}, reason: "taint gpu"},
		{name: "one of two NoSchedule taints untolerated", taints: []workerTaint{gpuNoSchedule, bareNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationExists}}}}, reason: "taint dedicated:no_schedule"},
		{name: "tolerations are pooled across placements", taints: []workerTaint{gpuNoSchedule, bareNoSchedule},
			placements: []placementRule{
				{Source: "pack", Tolerations: []toleration{{Key: "gpu", Operator: tolerationExists}}},
				sensorPlacement,
				{Source: "rule core.r", Tolerations: []toleration{{Key: "dedicated", Operator: tolerationEqual}}},
			}, want: true},

		// required affinity
		{name: "required term by labels", labels: kv("zone", "a"), placements: []placementRule{requiredOf("sensor", labelsTerm("zone", "a"))}, want: true},
		{name: "required term not matched", labels: kv("zone", "b"), placements: []placementRule{requiredOf("sensor", labelsTerm("zone", "a"))}, reason: "sensor: required affinity {zone=a} not matched"},
		{name: "required terms are OR", labels: kv("zone", "b"), placements: []placementRule{requiredOf("sensor", labelsTerm("zone", "a"), labelsTerm("zone", "b"))}, want: true},
		{name: "none of several required terms", labels: kv("zone", "c"), placements: []placementRule{requiredOf("sensor", labelsTerm("zone", "a"), labelsTerm("zone", "b"))}, reason: "sensor: none of 2 required affinity terms matched (first: {zone=a})"},
		{name: "a term is AND", labels: kv("zone", "a"), placements: []placementRule{requiredOf("sensor", selectorTerm{MatchLabels: kv("zone", "a"), MatchExpressions: []labelExpression{{Key: "gpu", Operator: exprExists}}})}, reason: "{zone=a, gpu exists}"},
		{name: "empty required term matches anything", labels: kv(), placements: []placementRule{requiredOf("sensor", selectorTerm{})}, want: true},
		{name: "In with the value", labels: kv("zone", "b"), placements: []placementRule{requiredOf("sensor", exprTerm("zone", exprIn, "a", "b"))}, want: true},
		{name: "In without the value", labels: kv("zone", "c"), placements: []placementRule{requiredOf("sensor", exprTerm("zone", exprIn, "a", "b"))}, reason: "{zone in [a,b]}"},
		{name: "In with the key absent", labels: kv(), placements: []placementRule{requiredOf("sensor", exprTerm("zone", exprIn, "a"))}, reason: "zone in [a]"},
		{name: "NotIn with another value", labels: kv("zone", "c"), placements: []placementRule{requiredOf("sensor", exprTerm("zone", exprNotIn, "a", "b"))}, want: true},
		{name: "NotIn with the value", labels: kv("zone", "a"), placements: []placementRule{requiredOf("sensor", exprTerm("zone", exprNotIn, "a", "b"))}, reason: "{zone not in [a,b]}"},
		{name: "NotIn with the key absent", labels: kv(), placements: []placementRule{requiredOf("sensor", exprTerm("zone", exprNotIn, "a"))}, want: true},
		{name: "Exists with the key", labels: kv("gpu", ""), placements: []placementRule{requiredOf("sensor", exprTerm("gpu", exprExists))}, want: true},
		{name: "Exists without the key", labels: kv(), placements: []placementRule{requiredOf("sensor", exprTerm("gpu", exprExists))}, reason: "{gpu exists}"},
		{name: "DoesNotExist without the key", labels: kv("zone", "a"), placements: []placementRule{requiredOf("sensor", exprTerm("gpu", exprDoesNotExist))}, want: true},
		{name: "DoesNotExist with the key", labels: kv("gpu", "x"), placements: []placementRule{requiredOf("sensor", exprTerm("gpu", exprDoesNotExist))}, reason: "{gpu does not exist}"},
		{name: "unknown operator never matches", labels: kv("gpu", "x"), placements: []placementRule{requiredOf("sensor", exprTerm("gpu", "Exists"))}, reason: "required affinity {gpu Exists?} not matched"},
		{name: "In compares values exactly", labels: kv("zone", "A"), placements: []placementRule{requiredOf("sensor", exprTerm("zone", exprIn, "a"))}, reason: "zone in [a]"},

		// anti-affinity
		{name: "anti-affinity term not matching allows", labels: kv("zone", "a"), placements: []placementRule{antiOf("sensor", labelsTerm("zone", "b"))}, want: true},
		{name: "anti-affinity term matching rejects", labels: kv("zone", "b"), placements: []placementRule{antiOf("rule core.r", labelsTerm("zone", "a"), labelsTerm("zone", "b"))}, reason: "rule core.r: anti-affinity term {zone=b} matched"},
		{name: "empty anti-affinity term rejects every worker", labels: kv(), placements: []placementRule{antiOf("sensor", selectorTerm{})}, reason: "anti-affinity term {} matched"},
		{name: "anti-affinity DoesNotExist rejects a worker without the key", labels: kv(), placements: []placementRule{antiOf("sensor", exprTerm("gpu", exprDoesNotExist))}, reason: "{gpu does not exist} matched"},
		{name: "preferred terms never exclude", labels: kv("zone", "a"), placements: []placementRule{{Source: "sensor", Affinity: affinity{Preferred: []preferredTerm{{Weight: 100, Preference: labelsTerm("zone", "b")}}}}}, want: true},

		// ordering of reasons
		{name: "selector reason before taint reason", labels: kv(), taints: []workerTaint{gpuNoSchedule}, placements: []placementRule{{Source: "pack", Selector: kv("zone", "a")}}, reason: "pack: selector zone=a"},
		{name: "empty source still gets a name", labels: kv(), placements: []placementRule{{Selector: kv("zone", "a")}}, reason: "placement: selector zone=a"},

		// rebuilt from scheduling.rs tests
		{name: "reference: selector_and_required_affinity_must_match", labels: kv("gpu", "nvidia", "zone", "a"),
			placements: []placementRule{{Source: "sensor", Selector: kv("gpu", "nvidia"), Affinity: affinity{Required: []selectorTerm{labelsTerm("zone", "a")}}}}, want: true},
		{name: "reference: untolerated_no_schedule_taint_rejects_worker (no toleration)", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{sensorPlacement}, reason: "taint gpu=true:no_schedule"},
		{name: "reference: untolerated_no_schedule_taint_rejects_worker (Equal toleration)", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual, Value: sptr("true"), Effect: taintNoSchedule}}}}, want: true},
		{name: "reference: combined_placements_keep_each_required_affinity_group", labels: kv("zone", "a"),
			placements: []placementRule{requiredOf("pack", labelsTerm("zone", "a")), requiredOf("sensor", labelsTerm("gpu", "nvidia"))}, reason: "sensor: required affinity {gpu=nvidia}"},
		{name: "reference: combined_placements_pool_tolerations", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "pack"}, {Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationExists, Effect: taintNoSchedule}}}}, want: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := workerMatchesAll(tc.labels, tc.taints, tc.placements); got != tc.want {
				t.Fatalf("workerMatchesAll: want %v, got %v (reason %q)", tc.want, got, placementMismatch(tc.labels, tc.taints, tc.placements))
			}
			reason := placementMismatch(tc.labels, tc.taints, tc.placements)
			if tc.want {
				if reason != "" {
					t.Fatalf("placementMismatch: want \"\", got %q", reason)
				}
				return
			}
			if tc.reason == "" {
				t.Fatal("test case without an expected reason")
			}
			if !strings.Contains(reason, tc.reason) {
				t.Fatalf("placementMismatch: want a reason containing %q, got %q", tc.reason, reason)
			}
		})
	}
}

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
		{name: "column defaults", sel: "{}", tol: "[]", aff: "{}", want: placementRule{Selector: kv(), Tolerations: []toleration{}}},
		{name: "full placement",
			sel: `{"zone": "edge"}`,
			tol: `[{"key": "gpu", "operator": "exists"}, {"key": "dedicated", "value": "sensors", "effect": "no_schedule"}]`,
			aff: `{"required": [{"match_labels": {"arch": "x86"}, "match_expressions": [{"key": "zone", "operator": "not_in", "values": ["core"]}]}],
			       "preferred": [{"weight": 5, "preference": {"match_labels": {"disk": "ssd"}}}, {"preference": {}}],
			       "anti_affinity": [{"match_expressions": [{"key": "spot", "operator": "exists"}, {"key": "gpu", "operator": "does_not_exist"}]}]}`,
			want: placementRule{
				Selector: kv("zone", "edge"),
				Tolerations: []toleration{
					{Key: "gpu", Operator: tolerationExists},
					{Key: "dedicated", Operator: tolerationEqual, Value: sptr("sensors"), Effect: taintNoSchedule},
				},
				Affinity: affinity{
					Required: []selectorTerm{{MatchLabels: kv("arch", "x86"), MatchExpressions: []labelExpression{{Key: "zone", Operator: exprNotIn, Values: []string{"core"}}}}},
					Preferred: []preferredTerm{
						{Weight: 5, Preference: selectorTerm{MatchLabels: kv("disk", "ssd")}},
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
			want: placementRule{Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual, Value: sptr("true"), Effect: taintPreferNoSchedule}}}},
		{name: "toleration value and effect null are absent", tol: `[{"key": "gpu", "value": null, "effect": null}]`,
			want: placementRule{Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual}}}},
		{name: "affinity as an empty array is an empty affinity (serde sequence form)", aff: `[]`, want: placementRule{}},
		{name: "Exists toleration may carry a blank value", tol: `[{"key": "gpu", "operator": "exists", "value": " "}]`,
			want: placementRule{Tolerations: []toleration{{Key: "gpu", Operator: tolerationExists, Value: sptr(" ")}}}},
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
			got := parseModelPlacement("sensor", raw(tc.sel), raw(tc.tol), raw(tc.aff))
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseModelPlacement:\nwant %+v\n got %+v", tc.want, got)
			}
		})
	}
}

// raw turns "" into SQL NULL (nil) and anything else into its JSON bytes.
func raw(s string) json.RawMessage {
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
		{name: "column defaults", sel: "{}", tol: "[]", aff: "{}", want: placementRule{Selector: kv(), Tolerations: []toleration{}}},
		{name: "full placement", sel: `{"site": "edge"}`, tol: `[{"key": "gpu", "operator": "exists", "effect": "no_schedule"}]`,
			aff: `{"anti_affinity": [{"match_labels": {"spot": "true"}}]}`,
			want: placementRule{Selector: kv("site", "edge"), Tolerations: []toleration{{Key: "gpu", Operator: tolerationExists, Effect: taintNoSchedule}},
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
			got, err := parseRulePlacement("rule core.r", raw(tc.sel), raw(tc.tol), raw(tc.aff))
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
			wantLabels: kv("zone", "edge", "gpu", "nvidia"),
			wantTaints: []workerTaint{{Key: "gpu", Value: sptr("true"), Effect: taintNoSchedule}, {Key: "spot", Effect: taintPreferNoSchedule}}},
		{name: "taint effect defaults to no_schedule", caps: `{"taints": [{"key": "gpu"}]}`, wantTaints: []workerTaint{{Key: "gpu", Effect: taintNoSchedule}}},
		{name: "taint value null is absent", caps: `{"taints": [{"key": "gpu", "value": null}]}`, wantTaints: []workerTaint{{Key: "gpu", Effect: taintNoSchedule}}},
		{name: "taint keys and values are not validated", caps: `{"taints": [{"key": "", "value": ""}]}`, wantTaints: []workerTaint{{Key: "", Value: sptr(""), Effect: taintNoSchedule}}},
		{name: "labels are not validated", caps: `{"labels": {"zone": ""}}`, wantLabels: kv("zone", "")},
		{name: "a non-string label drops all labels", caps: `{"labels": {"zone": "edge", "cores": 4}, "taints": [{"key": "gpu"}]}`, wantTaints: []workerTaint{{Key: "gpu", Effect: taintNoSchedule}}},
		{name: "labels an array", caps: `{"labels": ["zone"]}`},
		{name: "taints an object", caps: `{"taints": {"key": "gpu"}}`},
		{name: "a taint with a bad effect drops all taints", caps: `{"labels": {"a": "b"}, "taints": [{"key": "gpu"}, {"key": "x", "effect": "NoSchedule"}]}`, wantLabels: kv("a", "b")},
		{name: "a taint with a null effect drops all taints", caps: `{"taints": [{"key": "gpu", "effect": null}]}`},
		{name: "a taint without key drops all taints", caps: `{"taints": [{"value": "x"}]}`},
		{name: "taint in sequence form", caps: `{"taints": [["gpu", "true"]]}`, wantTaints: []workerTaint{{Key: "gpu", Value: sptr("true"), Effect: taintNoSchedule}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := workerLabels(raw(tc.caps)); len(got) != len(tc.wantLabels) || (len(got) > 0 && !reflect.DeepEqual(got, tc.wantLabels)) {
				t.Errorf("workerLabels: want %v, got %v", tc.wantLabels, got)
			}
			if got := workerTaints(raw(tc.caps)); len(got) != len(tc.wantTaints) || (len(got) > 0 && !reflect.DeepEqual(got, tc.wantTaints)) {
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
		Labels:        kv("zone", "edge"),
		Taints:        []Taint{{Key: "gpu", Value: "true", Effect: taintNoSchedule}, {Key: "spot"}},
		SensorVersion: "0.1.0",
	})
	b, err := json.Marshal(caps)
	if err != nil {
		t.Fatalf("marshal capabilities: %v", err)
	}
	if got := workerLabels(b); !reflect.DeepEqual(got, kv("zone", "edge")) {
		t.Errorf("workerLabels: want zone=edge, got %v", got)
	}
	want := []workerTaint{{Key: "gpu", Value: sptr("true"), Effect: taintNoSchedule}, {Key: "spot", Effect: taintNoSchedule}}
	if got := workerTaints(b); !reflect.DeepEqual(got, want) {
		t.Errorf("workerTaints: want %+v, got %+v", want, got)
	}
}

// TestPlacementAdmissionScenarios runs whole rows through parsing and
// matching the way sensor_admission.rs combines them (pack, then sensor,
// then each active rule), including the scenario of the reference's
// worker_eligibility_by_sensor_batches_counts_and_placement test.
func TestPlacementAdmissionScenarios(t *testing.T) {
	type ruleCols struct{ ref, sel, tol, aff string }
	worker := `{"labels": {"site": "edge"}, "runtimes": ["python"], "taints": [{"key": "dedicated", "value": "sensors"}]}`
	packTol := `[{"key": "dedicated", "value": "sensors"}]`
	cases := []struct {
		name        string
		caps        string
		packSel     string
		packTol     string
		sensorSel   string
		rules       []ruleCols
		want        bool
		reason      string
		wantRuleErr string
	}{
		{name: "reference: two matching rules", caps: `{"labels": {"site": "edge"}}`, rules: []ruleCols{{"p.a", `{"site": "edge"}`, "[]", "{}"}, {"p.b", `{"site": "edge"}`, "[]", "{}"}}, want: true},
		{name: "reference: mismatching rule", caps: `{"labels": {"site": "edge"}}`, rules: []ruleCols{{"p.c", `{"site": "central"}`, "[]", "{}"}}, reason: "rule p.c: selector site=central not matched (worker has site=edge)"},
		{name: "reference: idle sensor (disabled trigger, no active rule) judged by pack and sensor only", caps: `{"labels": {"site": "edge"}}`, want: true},
		{name: "pack toleration covers the worker taint for every rule", caps: worker, packTol: packTol, rules: []ruleCols{{"p.a", `{"site": "edge"}`, "[]", "{}"}}, want: true},
		{name: "worker taint untolerated", caps: worker, rules: []ruleCols{{"p.a", `{}`, "[]", "{}"}}, reason: "taint dedicated=sensors:no_schedule not tolerated"},
		{name: "rule toleration covers the worker taint", caps: worker, rules: []ruleCols{{"p.a", `{}`, `[{"key": "dedicated", "operator": "exists"}]`, "{}"}}, want: true},
		{name: "an invalid sensor selector constrains nothing", caps: worker, packTol: packTol, sensorSel: `{"site": ""}`, want: true},
		{name: "pack selector", caps: worker, packTol: packTol, packSel: `{"site": "core"}`, reason: "pack: selector site=core"},
		{name: "rule anti-affinity", caps: worker, packTol: packTol, rules: []ruleCols{{"p.a", `{}`, `[]`, `{"anti_affinity": [{"match_labels": {"site": "edge"}}]}`}}, reason: "rule p.a: anti-affinity term {site=edge} matched"},
		{name: "an invalid rule placement is an error, not a mismatch", caps: worker, rules: []ruleCols{{"p.a", `{"site": ""}`, "[]", "{}"}}, wantRuleErr: "rule p.a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			placements := []placementRule{
				parseModelPlacement("pack", raw(tc.packSel), raw(tc.packTol), nil),
				parseModelPlacement("sensor", raw(tc.sensorSel), nil, nil),
			}
			for _, r := range tc.rules {
				p, err := parseRulePlacement("rule "+r.ref, raw(r.sel), raw(r.tol), raw(r.aff))
				if err != nil {
					if tc.wantRuleErr == "" || !strings.Contains(err.Error(), tc.wantRuleErr) {
						t.Fatalf("parseRulePlacement: want error %q, got %v", tc.wantRuleErr, err)
					}
					return
				}
				placements = append(placements, p)
			}
			if tc.wantRuleErr != "" {
				t.Fatalf("want a rule error containing %q, got none", tc.wantRuleErr)
			}
			labels, taints := workerLabels(raw(tc.caps)), workerTaints(raw(tc.caps))
			if got := workerMatchesAll(labels, taints, placements); got != tc.want {
				t.Fatalf("workerMatchesAll: want %v, got %v (%s)", tc.want, got, placementMismatch(labels, taints, placements))
			}
			if reason := placementMismatch(labels, taints, placements); !tc.want && !strings.Contains(reason, tc.reason) {
				t.Fatalf("placementMismatch: want %q, got %q", tc.reason, reason)
			}
		})
	}
}

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
	for _, sel := range []map[string]string{nil, kv("k", "a"), kv("k", "b")} {
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
		{name: "conjunction across placements", placements: []placementRule{{Selector: kv("k", "a")}, {Selector: kv("k", "b")}}, want: placementIncompatible},
		{name: "admission: conflicting selector values", placements: []placementRule{{Source: "pack", Selector: kv("zone", "edge")}, {Source: "rule r", Selector: kv("zone", "internal")}}, want: placementIncompatible},
		{name: "equal selectors agree", placements: []placementRule{{Selector: kv("zone", "edge")}, {Selector: kv("zone", "edge")}}, want: placementCompatible},
		{name: "selector against another placement's anti-affinity", placements: []placementRule{{Selector: kv("zone", "edge")}, antiOf("rule r", labelsTerm("zone", "edge"))}, want: placementIncompatible},
		{name: "required groups from two placements must both hold", placements: []placementRule{requiredOf("pack", exprTerm("k", exprIn, "a")), requiredOf("rule", exprTerm("k", exprNotIn, "a"))}, want: placementIncompatible},
		{name: "required In and anti Exists on another key", placements: []placementRule{requiredOf("pack", exprTerm("k", exprIn, "a")), antiOf("rule", exprTerm("q", exprExists))}, want: placementCompatible},
		{name: "tolerations and preferred terms are ignored", placements: []placementRule{{Tolerations: []toleration{{Key: "x"}}, Affinity: affinity{Preferred: []preferredTerm{{Weight: 1, Preference: labelsTerm("k", "a")}}}}}, want: placementCompatible},
		{name: "input exhaustion is indeterminate", placements: []placementRule{{Selector: kv("k", "a")}}, budget: structuralBudget{MaxInputItems: 1, MaxInputBytes: 1 << 20, MaxSearchSteps: 262144}, want: placementIndeterminate},
		{name: "input bytes exhaustion is indeterminate", placements: []placementRule{{Selector: kv("key", "value")}}, budget: structuralBudget{MaxInputItems: 100, MaxInputBytes: 7, MaxSearchSteps: 262144}, want: placementIndeterminate},
		{name: "a conflict found before the budget runs out is incompatible", placements: []placementRule{{Selector: kv("k", "a")}, {Selector: kv("k", "b")}, {Selector: kv("q", "c")}}, budget: structuralBudget{MaxInputItems: 4, MaxInputBytes: 1 << 20, MaxSearchSteps: 262144}, want: placementIncompatible},
		{name: "search exhaustion is indeterminate", placements: []placementRule{{Affinity: affinity{Required: []selectorTerm{exists}, AntiAffinity: []selectorTerm{exists}}}}, budget: structuralBudget{MaxInputItems: 16384, MaxInputBytes: 1 << 20, MaxSearchSteps: 1}, want: placementIndeterminate},
		{name: "the same with the default budget is incompatible", placements: []placementRule{{Affinity: affinity{Required: []selectorTerm{exists}, AntiAffinity: []selectorTerm{exists}}}}, want: placementIncompatible},
		{name: "many keys without recursion", placements: []placementRule{requiredOf("sensor", selectorTerm{MatchLabels: many})}, budget: structuralBudget{MaxInputItems: 20002, MaxInputBytes: 1 << 20, MaxSearchSteps: 32}, want: placementIndeterminate},
		{name: "many keys with the default budget", placements: []placementRule{requiredOf("sensor", selectorTerm{MatchLabels: many})}, want: placementCompatible},
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

// BenchmarkPlacementMatch is one sensor's decision as a reconcile pass makes
// it: pack, sensor and three rule placements against a tainted worker.
func BenchmarkPlacementMatch(b *testing.B) {
	caps := json.RawMessage(`{"labels": {"zone": "edge", "arch": "x86", "gpu": "nvidia"}, "taints": [{"key": "dedicated", "value": "sensors"}]}`)
	labels, taints := workerLabels(caps), workerTaints(caps)
	placements := []placementRule{
		parseModelPlacement("pack", raw(`{"zone": "edge"}`), raw(`[{"key": "dedicated", "operator": "exists"}]`), raw(`{}`)),
		parseModelPlacement("sensor", raw(`{"arch": "x86"}`), raw(`[]`), raw(`{"required": [{"match_expressions": [{"key": "gpu", "operator": "in", "values": ["nvidia", "amd"]}]}]}`)),
	}
	for i := 0; i < 3; i++ {
		p, err := parseRulePlacement("rule core.r", raw(`{"zone": "edge"}`), raw(`[]`), raw(`{"anti_affinity": [{"match_labels": {"spot": "true"}}]}`))
		if err != nil {
			b.Fatal(err)
		}
		placements = append(placements, p)
	}
	b.Run("match", func(b *testing.B) {
		for b.Loop() {
			if !workerMatchesAll(labels, taints, placements) {
				b.Fatal("expected a match")
			}
		}
	})
	b.Run("parse-rule", func(b *testing.B) {
		for b.Loop() {
			if _, err := parseRulePlacement("rule core.r", raw(`{"zone": "edge"}`), raw(`[]`), raw(`{"anti_affinity": [{"match_labels": {"spot": "true"}}]}`)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
