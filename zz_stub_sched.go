package main

// TEMPORARY: stand-ins for h/sched's scheduling.go; deleted at merge.

import "encoding/json"

type toleration struct{}
type affinity struct{}
type workerTaint struct{ Key, Value, Effect string }

type placementRule struct {
	Source      string
	Selector    map[string]string
	Tolerations []toleration
	Affinity    affinity
}

func parseModelPlacement(source string, selector, tolerations, aff json.RawMessage) placementRule {
	p := placementRule{Source: source}
	_ = json.Unmarshal(selector, &p.Selector)
	return p
}

func parseRulePlacement(source string, selector, tolerations, aff json.RawMessage) (placementRule, error) {
	return parseModelPlacement(source, selector, tolerations, aff), nil
}

func workerLabels(capabilities json.RawMessage) map[string]string {
	var c struct {
		Labels map[string]string `json:"labels"`
	}
	_ = json.Unmarshal(capabilities, &c)
	return c.Labels
}

func workerTaints(capabilities json.RawMessage) []workerTaint { return nil }

func placementMismatch(labels map[string]string, taints []workerTaint, placements []placementRule) string {
	for _, p := range placements {
		for k, v := range p.Selector {
			if labels[k] != v {
				return p.Source + ": selector " + k + "=" + v + " not matched"
			}
		}
	}
	return ""
}

// TEMPORARY until h/runtime lands.
func versionIneligible(sp sensorSpec, versions map[string][]string) string { return "" }
