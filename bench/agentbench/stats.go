package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile is the nearest-rank percentile of xs (p in (0, 100]): the
// smallest sample such that at least p % of the samples are ≤ it. No
// interpolation, so every reported percentile is a value that was measured.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(float64(len(s)) * p / 100))
	rank = max(1, min(rank, len(s)))
	return s[rank-1]
}

// ms converts a duration to milliseconds as a float.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summaryFile collects the name → number results of one run; the item
// scripts turn them into table rows and values (bench/lib.sh contract).
type summaryFile struct {
	keys []string
	vals map[string]float64
}

func newSummary() *summaryFile { return &summaryFile{vals: map[string]float64{}} }

// put records one number; a later put of the same name replaces it.
func (s *summaryFile) put(name string, v float64) {
	if _, ok := s.vals[name]; !ok {
		s.keys = append(s.keys, name)
	}
	s.vals[name] = v
}

// putDist records n, p50, p95, min and max of samples under prefix_*.
func (s *summaryFile) putDist(prefix string, samples []float64) {
	s.put(prefix+"_n", float64(len(samples)))
	if len(samples) == 0 {
		return
	}
	s.put(prefix+"_p50", percentile(samples, 50))
	s.put(prefix+"_p95", percentile(samples, 95))
	s.put(prefix+"_min", slices.Min(samples))
	s.put(prefix+"_max", slices.Max(samples))
}

// write stores the summary as name<TAB>number lines.
func (s *summaryFile) write(path string) error {
	var b strings.Builder
	for _, k := range s.keys {
		fmt.Fprintf(&b, "%s\t%s\n", k, formatNumber(s.vals[k]))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// formatNumber prints integers without decimals and others with three.
func formatNumber(v float64) string {
	if v == float64(int64(v)) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// writeSamples stores one sample per line (three decimals).
func writeSamples(path string, xs []float64) error {
	var b strings.Builder
	for _, x := range xs {
		fmt.Fprintf(&b, "%.3f\n", x)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
