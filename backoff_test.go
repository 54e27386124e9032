package main

import (
	"math"
	"testing"
	"time"
)

func TestRestartDelay(t *testing.T) {
	s := time.Second
	cases := []struct {
		name     string
		failures int
		jitter   float64
		want     time.Duration
	}{
		{"no failure", 0, 0.5, 0},
		{"negative failures", -3, 0.5, 0},
		{"first failure", 1, 0, 5 * s},
		{"second", 2, 0, 10 * s},
		{"third", 3, 0, 20 * s},
		{"fourth", 4, 0, 40 * s},
		{"fifth", 5, 0, 80 * s},
		{"sixth", 6, 0, 160 * s},
		{"seventh is capped", 7, 0, 300 * s},
		{"eighth stays capped", 8, 0, 300 * s},
		{"huge count does not overflow", math.MaxInt, 0, 300 * s},
		{"half jitter adds 5%", 1, 0.5, 5*s + 250*time.Millisecond},
		{"jitter on the cap", 7, 0.5, 315 * s},
		{"negative jitter is clamped", 2, -1, 10 * s},
		{"NaN jitter is clamped", 2, math.NaN(), 10 * s},
		{"jitter 1 stays under +10%", 7, 1, 300*s + time.Duration(float64(300*s)*0.1*0.999999)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := restartDelay(tc.failures, tc.jitter); got != tc.want {
				t.Errorf("restartDelay(%d, %v): want %v, got %v", tc.failures, tc.jitter, tc.want, got)
			}
		})
	}
}

func TestRestartDelayJitterBounds(t *testing.T) {
	for f := 1; f <= 10; f++ {
		base := restartDelay(f, 0)
		for _, j := range []float64{0, 0.1, 0.5, 0.9, 0.999} {
			got := restartDelay(f, j)
			if got < base || got >= base+base/10+time.Millisecond {
				t.Errorf("restartDelay(%d, %v) = %v: want within [%v, %v]", f, j, got, base, base+base/10)
			}
		}
	}
}
