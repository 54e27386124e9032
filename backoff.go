package main

import "time"

// Restart backoff for sensors that exit while they should still run
// (CONTRACT §7). The reference waits 5 s × 2^(failures−1), capped at 300 s;
// the agent keeps that schedule, adds a little jitter so that sensors which
// crashed together (a broker or API outage) do not all restart in the same
// second, and forgets old failures after a healthy run.
const (
	// restartBaseDelay is the delay after the first failure.
	restartBaseDelay = 5 * time.Second
	// restartMaxDelay caps the exponential schedule (before jitter).
	restartMaxDelay = 300 * time.Second
	// restartJitterFraction is the largest share of the delay that jitter
	// adds: a jitter of 0.999 lengthens a 300 s delay to at most 330 s.
	restartJitterFraction = 0.10
	// healthyRunReset is how long a run must last for the failure count to
	// go back to zero: a sensor that ran this long was working, so its next
	// crash is treated as a first failure again (5 s), not as the n-th.
	healthyRunReset = 60 * time.Second
)

// restartDelay returns how long to wait before restarting a sensor that has
// failed `failures` times in a row: 5, 10, 20, 40, 80, 160, 300, 300... seconds.
// failures ≤ 0 means nothing failed, so there is no delay. jitter is a
// caller-supplied random number in [0, 1) (the caller owns the randomness so
// that this stays a pure, table-testable function); it adds up to +10 % on
// top of the capped delay, never subtracts. Values outside [0, 1) are
// clamped so that a bad random source cannot shorten or explode the delay.
func restartDelay(failures int, jitter float64) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := restartBaseDelay
	for i := 1; i < failures && d < restartMaxDelay; i++ {
		d *= 2
	}
	d = min(d, restartMaxDelay)
	switch {
	case jitter < 0 || jitter != jitter: // negative or NaN
		jitter = 0
	case jitter >= 1:
		jitter = 0.999999
	}
	return d + time.Duration(float64(d)*restartJitterFraction*jitter)
}
