package main

import (
	"encoding/json"
	"errors"
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
	versions := []runtimeVersionRow{row("3.11", false, true), row("3.12", true, true), row("3.13", false, true), row("3.14", false, false)}
	tests := []struct {
		name       string
		versions   []runtimeVersionRow
		constraint string
		want       string // selected version; "" = runtime's own config
		wantErr    bool
	}{
		{name: "no versions, no constraint: runtime config", versions: nil, want: ""},
		{name: "no versions but a constraint: refuse", versions: nil, constraint: ">=3.12", wantErr: true},
		{name: "no constraint: default wins", versions: versions, want: "3.12"},
		{name: "no constraint, no default: highest available", versions: []runtimeVersionRow{row("3.11", false, true), row("3.13", false, true), row("3.14", false, false)}, want: "3.13"},
		{name: "no constraint, nothing available: runtime config", versions: []runtimeVersionRow{row("3.11", false, false)}, want: ""},
		{name: "unavailable default is skipped", versions: []runtimeVersionRow{row("3.11", true, false), row("3.10", false, true)}, want: "3.10"},
		{name: "constraint picks highest match", versions: versions, constraint: ">=3.11", want: "3.13"},
		{name: "constraint ignores unavailable rows", versions: versions, constraint: ">=3.14", wantErr: true},
		{name: "exact minor", versions: versions, constraint: "3.11", want: "3.11"},
		{name: "range", versions: versions, constraint: ">=3.11,<3.13", want: "3.12"},
		{name: "no match refuses", versions: versions, constraint: "2.7", wantErr: true},
		{name: "invalid constraint refuses", versions: versions, constraint: ">=", wantErr: true},
		{name: "whitespace constraint is no constraint", versions: versions, constraint: "  ", want: "3.12"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := sensorSpec{Ref: "pack.s", RuntimeName: "Python", RuntimeVersions: tc.versions, RuntimeVersionConstraint: tc.constraint}
			got, err := selectRuntimeVersion(spec)
			if tc.wantErr {
				if !errors.Is(err, ErrNoRuntimeVersion) {
					t.Fatalf("error = %v, want ErrNoRuntimeVersion", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
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
