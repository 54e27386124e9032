package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRuntimeVersionConstraintMatching(t *testing.T) {
	tests := []struct {
		version, constraint string
		want                bool
	}{
		// bare versions mean ~ (same minor), as in the reference
		{"3.12.1", "3.12", true},
		{"3.12.9", "3.12", true},
		{"3.13.0", "3.12", false},
		{"3.11.9", "3.12", false},
		{"3.0.5", "3", true},
		{"3.1.0", "3", false},
		{"3.12.1", "3.12.1", true},
		{"3.12.0", "3.12.1", false},
		{"3.12", "v3.12", true},
		// operators, with missing components padded
		{"3.12.1", ">=3.12", true},
		{"3.11.0", ">=3.12", false},
		{"4.0.0", ">=3.12", true},
		{"3.12.5", ">=3.12,<4.0", true},
		{"4.0.0", ">=3.12, <4.0", false},
		{"3.12.1", "=3.12.1", true},
		{"3.12.2", "=3.12.1", false},
		{"3.12.0", "=3.12", true},
		{"3.12.1", "=3.12", false},
		{"3.12.0", "<=3.12", true},
		{"3.12.1", "<=3.12", false},
		{"3.12.1", ">3.12", true},
		{"3.12.0", ">3.12", false},
		{"3.12.5", "~3.12", true},
		{"3.13.0", "~3.12", false},
		{"3.15.0", "^3.12", true},
		{"4.0.0", "^3.12", false},
		{"0.2.5", "^0.2", true},
		{"0.3.0", "^0.2", false},
		{"0.0.3", "^0.0.3", true},
		{"0.0.4", "^0.0.3", false},
		{"20.11.0", ">= 18", true},
		{"1.0.0", "*", true},
		// lenient version strings
		{"v20.11.0", ">=20", true},
		{"3.12.1.4", "3.12", true},
		// pre-releases only match a comparator naming the same x.y.z
		{"3.13.0-rc.1", ">=3.12", false},
		{"3.13.0-rc.1", ">=3.13.0-rc.0", true},
		{"3.13.0", ">3.13.0-rc.1", true},
	}
	for _, tc := range tests {
		t.Run(tc.version+" "+tc.constraint, func(t *testing.T) {
			v, ok := parseRuntimeSemver(tc.version)
			if !ok {
				t.Fatalf("parseRuntimeSemver(%q) failed", tc.version)
			}
			req, err := parseRuntimeVersionConstraint(tc.constraint)
			if err != nil {
				t.Fatalf("parseRuntimeVersionConstraint(%q): %v", tc.constraint, err)
			}
			if got := runtimeVersionMatches(req, v); got != tc.want {
				t.Errorf("%q matches %q = %v, want %v", tc.version, tc.constraint, got, tc.want)
			}
		})
	}
}

func TestRuntimeVersionConstraintErrors(t *testing.T) {
	for _, c := range []string{">=", "3.x", "==3.12", "!3", "~>3.1", ">=banana"} {
		if _, err := parseRuntimeVersionConstraint(c); err == nil {
			t.Errorf("parseRuntimeVersionConstraint(%q) succeeded, want an error", c)
		}
	}
}

func TestCompareRuntimeSemver(t *testing.T) {
	order := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0"}
	for i := 0; i+1 < len(order); i++ {
		a, _ := parseRuntimeSemver(order[i])
		b, _ := parseRuntimeSemver(order[i+1])
		if compareRuntimeSemver(a, b) >= 0 || compareRuntimeSemver(b, a) <= 0 {
			t.Errorf("want %s < %s", order[i], order[i+1])
		}
	}
}

func TestSelectRuntimeVersion(t *testing.T) {
	row := func(v string, isDefault, available bool) runtimeVersionRow {
		return runtimeVersionRow{Version: v, IsDefault: isDefault, Available: available,
			ExecutionConfig: json.RawMessage(`{"interpreter":{"binary":"python` + v + `"}}`)}
	}
	// The image: rows 3.11/3.12/3.13, default 3.12 (3.14 unavailable).
	versions := []runtimeVersionRow{row("3.11", false, true), row("3.12", true, true), row("3.13", false, true), row("3.14", false, false)}
	py311 := map[string][]string{"python": {"3.11.7"}}
	all := map[string][]string{"python": {"3.11.2", "3.12.1", "3.13.0", "3.14.0"}}
	tests := []struct {
		name       string
		versions   []runtimeVersionRow
		constraint string
		advertised map[string][]string
		aliases    []string
		want       string // selected version; "" = runtime's own config
		ineligible bool
	}{
		{name: "no versions, no constraint: runtime config", versions: nil, advertised: all, want: ""},
		{name: "no versions but a constraint: ineligible", versions: nil, constraint: ">=3.12", advertised: all, ineligible: true},
		{name: "python 3.11 image: the advertised 3.11, not the default 3.12", versions: versions, advertised: py311, want: "3.11"},
		{name: "everything advertised: default wins", versions: versions, advertised: all, want: "3.12"},
		{name: "no default among the advertised: highest advertised", versions: versions,
			advertised: map[string][]string{"python": {"3.11.2", "3.13.0"}}, want: "3.13"},
		{name: "available flag does not decide", versions: versions, advertised: map[string][]string{"python": {"3.14.0"}}, want: "3.14"},
		{name: "nothing advertised: runtime config", versions: versions, advertised: nil, want: ""},
		{name: "advertised version has no row: runtime config", versions: versions, advertised: map[string][]string{"python": {"3.9.1"}}, want: ""},
		{name: "nothing advertised with a constraint: ineligible", versions: versions, constraint: ">=3.11", advertised: nil, ineligible: true},
		{name: "advertised under an alias", versions: versions, aliases: []string{"py3"}, advertised: map[string][]string{"py3": {"3.13.1"}}, want: "3.13"},
		{name: "alias normalised like the capability key", versions: versions, aliases: []string{"Python3"}, advertised: py311, want: "3.11"},
		{name: "another runtime's versions do not count", versions: versions, advertised: map[string][]string{"node": {"3.12.0"}}, want: ""},
		{name: "constraint picks highest advertised match", versions: versions, constraint: ">=3.11", advertised: all, want: "3.14"},
		{name: "constraint the image satisfies", versions: versions, constraint: "3.11", advertised: py311, want: "3.11"},
		{name: "constraint the image does not satisfy: ineligible", versions: versions, constraint: ">=3.12", advertised: py311, ineligible: true},
		{name: "range", versions: versions, constraint: ">=3.11,<3.13", advertised: all, want: "3.12"},
		{name: "no match: ineligible", versions: versions, constraint: "2.7", advertised: all, ineligible: true},
		{name: "invalid constraint: ineligible", versions: versions, constraint: ">=", advertised: all, ineligible: true},
		{name: "whitespace constraint is no constraint", versions: versions, constraint: "  ", advertised: all, want: "3.12"},
		{name: "version that cannot name a directory: ineligible", versions: []runtimeVersionRow{row("3.12.0+../x", true, true)},
			advertised: map[string][]string{"python": {"3.12.0+../x"}}, ineligible: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := sensorSpec{Ref: "pack.s", RuntimeName: "Python", RuntimeAliases: tc.aliases,
				RuntimeVersions: tc.versions, RuntimeVersionConstraint: tc.constraint}
			got, eligible, reason := selectRuntimeVersion(spec, tc.advertised)
			if tc.ineligible {
				if eligible || got != nil || reason == "" {
					t.Fatalf("got (%v, %v, %q), want ineligible with a reason", got, eligible, reason)
				}
				if err := runtimeVersionError(spec, reason); !errors.Is(err, ErrNoRuntimeVersion) || !strings.Contains(err.Error(), "pack.s") {
					t.Errorf("runtimeVersionError = %v, want ErrNoRuntimeVersion naming the sensor", err)
				}
				return
			}
			if !eligible || reason != "" {
				t.Fatalf("ineligible (%q), want eligible", reason)
			}
			gotV := ""
			if got != nil {
				gotV = got.Version
			}
			if gotV != tc.want {
				t.Errorf("selected %q, want %q", gotV, tc.want)
			}
		})
	}
}

func TestAdvertisedRuntimeVersions(t *testing.T) {
	v := "3.11.7"
	caps := buildCapabilities(capabilityInput{Interpreters: []Interpreter{
		{Name: "python", Path: "/usr/bin/python3", Version: v}, {Name: "shell", Path: "/bin/bash"}}})
	got := advertisedRuntimeVersions(caps)
	if len(got) != 1 || len(got["python"]) != 1 || got["python"][0] != v {
		t.Errorf("from buildCapabilities: %v, want python [3.11.7]", got)
	}
	// The same object read back from the worker row (JSON-decoded), with
	// runtime_versions missing for node: detected_interpreters fills it in.
	var decoded map[string]any
	if err := json.Unmarshal([]byte(`{"runtime_versions": {"Python3": ["3.12.1", ""]},
		"detected_interpreters": [{"name": "python", "path": "/p", "version": "3.9.0"},
		{"name": "nodejs", "path": "/n", "version": "20.1.0"}, {"name": "ruby", "path": "/r", "version": null}]}`), &decoded); err != nil {
		t.Fatal(err)
	}
	got = advertisedRuntimeVersions(decoded)
	if fmt.Sprint(got) != "map[node:[20.1.0] python:[3.12.1]]" {
		t.Errorf("from JSON: %v", got)
	}
}
