package main

import "strings"

// baselineNames are the only agent variables a child process inherits
// (CONTRACT §6): everything else, secrets included, is withheld.
var baselineNames = []string{
	"PATH", "HOME", "LANG", "TZ", "TMPDIR",
	"LC_ALL", "LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE", "LC_MONETARY",
	"LC_MESSAGES", "LC_PAPER", "LC_NAME", "LC_ADDRESS", "LC_TELEPHONE",
	"LC_MEASUREMENT", "LC_IDENTIFICATION",
}

// baselineEnv returns the child baseline environment built from environ (in
// os.Environ form): the baseline names and the passthrough names, in that
// order, each at most once, skipping names that are not set. It is used for
// version probes and as the start of every sensor's environment.
func baselineEnv(environ []string, passthrough []string) []string {
	vals := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			if _, dup := vals[k]; !dup {
				vals[k] = v
			}
		}
	}
	out := make([]string, 0, len(baselineNames)+len(passthrough))
	seen := make(map[string]bool, cap(out))
	for _, names := range [][]string{baselineNames, passthrough} {
		for _, k := range names {
			if v, ok := vals[k]; ok && !seen[k] {
				seen[k] = true
				out = append(out, k+"="+v)
			}
		}
	}
	return out
}
