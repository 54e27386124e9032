package main

// scheduling_test.go covers scheduling.go: every operator, effect and edge
// of the reference's placement matching, cases rebuilt by hand from the
// reference's own unit and admission tests, and whole rows run through
// parsing and matching together. The shared case builders live here.

import (
	"encoding/json"
	"strings"
	"testing"
)

func placementStrPtr(s string) *string { return &s }

// kv builds a label map from key, value pairs.
func placementLabels(pairs ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return m
}

func labelsTerm(pairs ...string) selectorTerm {
	return selectorTerm{MatchLabels: placementLabels(pairs...)}
}

func exprTerm(key, op string, values ...string) selectorTerm {
	return selectorTerm{MatchExpressions: []labelExpression{{Key: key, Operator: op, Values: values}}}
}

func requiredPlacement(source string, terms ...selectorTerm) placementRule {
	return placementRule{Source: source, Affinity: affinity{Required: terms}}
}

func antiPlacement(source string, terms ...selectorTerm) placementRule {
	return placementRule{Source: source, Affinity: affinity{AntiAffinity: terms}}
}

var (
	gpuNoSchedule   = workerTaint{Key: "gpu", Value: placementStrPtr("true"), Effect: taintNoSchedule}
	gpuPreferNoSch  = workerTaint{Key: "gpu", Value: placementStrPtr("true"), Effect: taintPreferNoSchedule}
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
		{name: "empty placement, worker with labels", labels: placementLabels("zone", "a"), placements: []placementRule{sensorPlacement}, want: true},

		// selectors
		{name: "selector equal", labels: placementLabels("zone", "edge", "arch", "x86"), placements: []placementRule{{Source: "sensor", Selector: placementLabels("zone", "edge")}}, want: true},
		{name: "selector value differs", labels: placementLabels("zone", "core"), placements: []placementRule{{Source: "rule core.x", Selector: placementLabels("zone", "edge")}}, reason: "rule core.x: selector zone=edge not matched (worker has zone=core)"},
		{name: "selector key missing", labels: placementLabels("arch", "x86"), placements: []placementRule{{Source: "pack", Selector: placementLabels("zone", "edge")}}, reason: "pack: selector zone=edge not matched (worker has no zone label)"},
		{name: "selector compares case exactly", labels: placementLabels("zone", "Edge"), placements: []placementRule{{Source: "sensor", Selector: placementLabels("zone", "edge")}}, reason: "zone=edge"},
		{name: "selector compares whitespace exactly", labels: placementLabels("zone", "edge "), placements: []placementRule{{Source: "sensor", Selector: placementLabels("zone", "edge")}}, reason: "zone=edge"},
		{name: "selector keys are case sensitive", labels: placementLabels("Zone", "edge"), placements: []placementRule{{Source: "sensor", Selector: placementLabels("zone", "edge")}}, reason: "no zone label"},
		{name: "every selector key must match", labels: placementLabels("zone", "edge", "gpu", "amd"), placements: []placementRule{{Source: "sensor", Selector: placementLabels("zone", "edge", "gpu", "nvidia")}}, reason: "gpu=nvidia"},
		{name: "every placement's selector must match", labels: placementLabels("zone", "edge"), placements: []placementRule{{Source: "pack", Selector: placementLabels("zone", "edge")}, {Source: "rule core.r", Selector: placementLabels("site", "a")}}, reason: "rule core.r: selector site=a"},

		// taints and tolerations
		{name: "untolerated NoSchedule taint fails", taints: []workerTaint{gpuNoSchedule}, placements: []placementRule{sensorPlacement}, reason: "taint gpu=true:no_schedule not tolerated"},
		{name: "untolerated valueless taint fails", taints: []workerTaint{bareNoSchedule}, placements: []placementRule{sensorPlacement}, reason: "taint dedicated:no_schedule not tolerated"},
		{name: "PreferNoSchedule taint does not exclude", taints: []workerTaint{gpuPreferNoSch}, placements: []placementRule{sensorPlacement}, want: true},
		{name: "Equal toleration with the same value", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual, Value: placementStrPtr("true")}}}}, want: true},
		{name: "Equal toleration with another value", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual, Value: placementStrPtr("false")}}}}, reason: "taint gpu=true"},
		{name: "Equal toleration without value does not match a valued taint", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual}}}}, reason: "taint gpu=true"},
		{name: "Equal toleration without value matches a valueless taint", taints: []workerTaint{bareNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "dedicated", Operator: tolerationEqual}}}}, want: true},
		{name: "Equal toleration with a value does not match a valueless taint", taints: []workerTaint{bareNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "dedicated", Operator: tolerationEqual, Value: placementStrPtr("x")}}}}, reason: "taint dedicated"},
		{name: "Equal absent value differs from an empty taint value", taints: []workerTaint{{Key: "k", Value: placementStrPtr(""), Effect: taintNoSchedule}},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "k", Operator: tolerationEqual}}}}, reason: "taint k=:no_schedule"},
		{name: "Exists toleration ignores the value", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationExists, Value: placementStrPtr("other")}}}}, want: true},
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
		{name: "required term by labels", labels: placementLabels("zone", "a"), placements: []placementRule{requiredPlacement("sensor", labelsTerm("zone", "a"))}, want: true},
		{name: "required term not matched", labels: placementLabels("zone", "b"), placements: []placementRule{requiredPlacement("sensor", labelsTerm("zone", "a"))}, reason: "sensor: required affinity {zone=a} not matched"},
		{name: "required terms are OR", labels: placementLabels("zone", "b"), placements: []placementRule{requiredPlacement("sensor", labelsTerm("zone", "a"), labelsTerm("zone", "b"))}, want: true},
		{name: "none of several required terms", labels: placementLabels("zone", "c"), placements: []placementRule{requiredPlacement("sensor", labelsTerm("zone", "a"), labelsTerm("zone", "b"))}, reason: "sensor: none of 2 required affinity terms matched (first: {zone=a})"},
		{name: "a term is AND", labels: placementLabels("zone", "a"), placements: []placementRule{requiredPlacement("sensor", selectorTerm{MatchLabels: placementLabels("zone", "a"), MatchExpressions: []labelExpression{{Key: "gpu", Operator: exprExists}}})}, reason: "{zone=a, gpu exists}"},
		{name: "empty required term matches anything", labels: placementLabels(), placements: []placementRule{requiredPlacement("sensor", selectorTerm{})}, want: true},
		{name: "In with the value", labels: placementLabels("zone", "b"), placements: []placementRule{requiredPlacement("sensor", exprTerm("zone", exprIn, "a", "b"))}, want: true},
		{name: "In without the value", labels: placementLabels("zone", "c"), placements: []placementRule{requiredPlacement("sensor", exprTerm("zone", exprIn, "a", "b"))}, reason: "{zone in [a,b]}"},
		{name: "In with the key absent", labels: placementLabels(), placements: []placementRule{requiredPlacement("sensor", exprTerm("zone", exprIn, "a"))}, reason: "zone in [a]"},
		{name: "NotIn with another value", labels: placementLabels("zone", "c"), placements: []placementRule{requiredPlacement("sensor", exprTerm("zone", exprNotIn, "a", "b"))}, want: true},
		{name: "NotIn with the value", labels: placementLabels("zone", "a"), placements: []placementRule{requiredPlacement("sensor", exprTerm("zone", exprNotIn, "a", "b"))}, reason: "{zone not in [a,b]}"},
		{name: "NotIn with the key absent", labels: placementLabels(), placements: []placementRule{requiredPlacement("sensor", exprTerm("zone", exprNotIn, "a"))}, want: true},
		{name: "Exists with the key", labels: placementLabels("gpu", ""), placements: []placementRule{requiredPlacement("sensor", exprTerm("gpu", exprExists))}, want: true},
		{name: "Exists without the key", labels: placementLabels(), placements: []placementRule{requiredPlacement("sensor", exprTerm("gpu", exprExists))}, reason: "{gpu exists}"},
		{name: "DoesNotExist without the key", labels: placementLabels("zone", "a"), placements: []placementRule{requiredPlacement("sensor", exprTerm("gpu", exprDoesNotExist))}, want: true},
		{name: "DoesNotExist with the key", labels: placementLabels("gpu", "x"), placements: []placementRule{requiredPlacement("sensor", exprTerm("gpu", exprDoesNotExist))}, reason: "{gpu does not exist}"},
		{name: "unknown operator never matches", labels: placementLabels("gpu", "x"), placements: []placementRule{requiredPlacement("sensor", exprTerm("gpu", "Exists"))}, reason: "required affinity {gpu Exists?} not matched"},
		{name: "In compares values exactly", labels: placementLabels("zone", "A"), placements: []placementRule{requiredPlacement("sensor", exprTerm("zone", exprIn, "a"))}, reason: "zone in [a]"},

		// anti-affinity
		{name: "anti-affinity term not matching allows", labels: placementLabels("zone", "a"), placements: []placementRule{antiPlacement("sensor", labelsTerm("zone", "b"))}, want: true},
		{name: "anti-affinity term matching rejects", labels: placementLabels("zone", "b"), placements: []placementRule{antiPlacement("rule core.r", labelsTerm("zone", "a"), labelsTerm("zone", "b"))}, reason: "rule core.r: anti-affinity term {zone=b} matched"},
		{name: "empty anti-affinity term rejects every worker", labels: placementLabels(), placements: []placementRule{antiPlacement("sensor", selectorTerm{})}, reason: "anti-affinity term {} matched"},
		{name: "anti-affinity DoesNotExist rejects a worker without the key", labels: placementLabels(), placements: []placementRule{antiPlacement("sensor", exprTerm("gpu", exprDoesNotExist))}, reason: "{gpu does not exist} matched"},
		{name: "preferred terms never exclude", labels: placementLabels("zone", "a"), placements: []placementRule{{Source: "sensor", Affinity: affinity{Preferred: []preferredTerm{{Weight: 100, Preference: labelsTerm("zone", "b")}}}}}, want: true},

		// ordering of reasons
		{name: "selector reason before taint reason", labels: placementLabels(), taints: []workerTaint{gpuNoSchedule}, placements: []placementRule{{Source: "pack", Selector: placementLabels("zone", "a")}}, reason: "pack: selector zone=a"},
		{name: "empty source still gets a name", labels: placementLabels(), placements: []placementRule{{Selector: placementLabels("zone", "a")}}, reason: "placement: selector zone=a"},

		// rebuilt from scheduling.rs tests
		{name: "reference: selector_and_required_affinity_must_match", labels: placementLabels("gpu", "nvidia", "zone", "a"),
			placements: []placementRule{{Source: "sensor", Selector: placementLabels("gpu", "nvidia"), Affinity: affinity{Required: []selectorTerm{labelsTerm("zone", "a")}}}}, want: true},
		{name: "reference: untolerated_no_schedule_taint_rejects_worker (no toleration)", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{sensorPlacement}, reason: "taint gpu=true:no_schedule"},
		{name: "reference: untolerated_no_schedule_taint_rejects_worker (Equal toleration)", taints: []workerTaint{gpuNoSchedule},
			placements: []placementRule{{Source: "sensor", Tolerations: []toleration{{Key: "gpu", Operator: tolerationEqual, Value: placementStrPtr("true"), Effect: taintNoSchedule}}}}, want: true},
		{name: "reference: combined_placements_keep_each_required_affinity_group", labels: placementLabels("zone", "a"),
			placements: []placementRule{requiredPlacement("pack", labelsTerm("zone", "a")), requiredPlacement("sensor", labelsTerm("gpu", "nvidia"))}, reason: "sensor: required affinity {gpu=nvidia}"},
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
				parseModelPlacement("pack", placementJSON(tc.packSel), placementJSON(tc.packTol), nil),
				parseModelPlacement("sensor", placementJSON(tc.sensorSel), nil, nil),
			}
			for _, r := range tc.rules {
				p, err := parseRulePlacement("rule "+r.ref, placementJSON(r.sel), placementJSON(r.tol), placementJSON(r.aff))
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
			labels, taints := workerLabels(placementJSON(tc.caps)), workerTaints(placementJSON(tc.caps))
			if got := workerMatchesAll(labels, taints, placements); got != tc.want {
				t.Fatalf("workerMatchesAll: want %v, got %v (%s)", tc.want, got, placementMismatch(labels, taints, placements))
			}
			if reason := placementMismatch(labels, taints, placements); !tc.want && !strings.Contains(reason, tc.reason) {
				t.Fatalf("placementMismatch: want %q, got %q", tc.reason, reason)
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
		parseModelPlacement("pack", placementJSON(`{"zone": "edge"}`), placementJSON(`[{"key": "dedicated", "operator": "exists"}]`), placementJSON(`{}`)),
		parseModelPlacement("sensor", placementJSON(`{"arch": "x86"}`), placementJSON(`[]`), placementJSON(`{"required": [{"match_expressions": [{"key": "gpu", "operator": "in", "values": ["nvidia", "amd"]}]}]}`)),
	}
	for i := 0; i < 3; i++ {
		p, err := parseRulePlacement("rule core.r", placementJSON(`{"zone": "edge"}`), placementJSON(`[]`), placementJSON(`{"anti_affinity": [{"match_labels": {"spot": "true"}}]}`))
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
			if _, err := parseRulePlacement("rule core.r", placementJSON(`{"zone": "edge"}`), placementJSON(`[]`), placementJSON(`{"anti_affinity": [{"match_labels": {"spot": "true"}}]}`)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
