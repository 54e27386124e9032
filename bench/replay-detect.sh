#!/bin/sh
# replay-detect.sh: the baseline of benchmark item 2. It replays the reference
# agent's runtime detection (attune-system/attune,
# crates/common/src/agent_runtime_detection.rs) step for step, with the same
# processes in the same order, so that its wall time is what that algorithm
# costs on this machine:
#
#   for each candidate, in the contract's order (shell, python, node, ruby, go,
#   java, r, perl), for each of its binaries in order:
#     - bash and sh: if /bin/<name> exists, that is the path (no process);
#     - otherwise run the external `which <name>` (found on PATH); only if
#       `which` cannot be started at all, run `sh -c "command -v <name>"`;
#     - the first binary found is run with its version argument and the
#       candidate is done; one that is not found moves on to the next binary.
#   Everything is sequential and waits for each process to exit (no timeout).
#
# The version is parsed in the shell, without extra processes (the reference
# parses in-process too). Output: one "name<TAB>path<TAB>first output line"
# line per detected runtime. The process count equals the reference's; what
# differs is that the steps are driven by a shell (dash) instead of Rust's
# Command, a difference of well under a millisecond per step.
set -u

nl='
'
if command -v which >/dev/null 2>&1; then have_which=1; else have_which=0; fi

# probe NAME VERSION_ARG BINARY...
probe() {
  name=$1 arg=$2
  shift 2
  for bin in "$@"; do
    path=
    if { [ "$bin" = bash ] || [ "$bin" = sh ]; } && [ -e "/bin/$bin" ]; then
      path=/bin/$bin
    elif [ "$have_which" = 1 ]; then
      path=$(which "$bin" 2>/dev/null) || path=
    else
      path=$(sh -c "command -v $bin" 2>/dev/null) || path=
    fi
    if [ -n "$path" ]; then
      out=$("$path" "$arg" 2>&1)
      out=${out#"$nl"}
      printf '%s\t%s\t%s\n' "$name" "$path" "${out%%"$nl"*}"
      return 0
    fi
  done
  return 0
}

probe shell --version bash sh
probe python --version python3 python
probe node --version node nodejs
probe ruby --version ruby
probe go version go
probe java -version java
probe r --version Rscript
probe perl --version perl
