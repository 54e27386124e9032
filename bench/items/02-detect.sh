#!/usr/bin/env bash
# Item 2: --detect-only wall time against the slowest single version probe and
# against a sequential replay of the reference algorithm, all in one
# round-robin timeit run on a controlled PATH.
set -euo pipefail
. "$BENCH_REPO/bench/lib.sh"

fake_delay=0.2
cat >"$ITEM_DIR/method.md" <<EOF
A PATH directory is set up with the real bash (as \`/bin/bash\`, where both
algorithms look first), python3, node and perl (symlinks to the real
binaries, interpreter shims resolved away) and three fakes for slow
interpreters: \`ruby\`, \`java\` and \`Rscript\` are \`/bin/sh\` scripts that sleep
${fake_delay} s and print a version (java on stderr, as \`java -version\` does);
\`go\` is absent, so one candidate costs a failed lookup. Every command runs
with only \`PATH\` (that directory), \`HOME\` and \`LANG\` in its environment.

\`bench/timeit\` then runs, round-robin in one process (one run of each per
round, the first command rotating, after a warm-up round), N times each:
the agent's \`--detect-only\`; \`bench/replay-detect.sh\` under \`/bin/sh\`, which
replays the reference algorithm with the same processes in the same order
(\`which\` then the version command, candidate after candidate, each waited
for); and each interpreter's version command alone. Wall time is from
\`fork\` to reaped exit; stdout and stderr go to /dev/null. The "slowest
single probe" is the largest median among the version commands. Both ratios
compare medians from that same run. A sanity check first asserts that the
agent and the replay report the same runtimes. Two diagnostics run in the
same rounds: \`all-probes-at-once-sh\`, a \`/bin/sh\` script that starts every
version command at once by its known path and waits (no lookups, no Go:
what starting them all together costs on this machine without the agent),
and the agent's bare start-up, \`--version\`.
EOF

pathdir=$ITEM_DIR/path
mkdir -p "$pathdir"
notes=$ITEM_DIR/notes.md
: >"$notes"
sleep_bin=$(command -v sleep)

# real_interp NAME RESOLVE-COMMAND...: symlink the real binary behind NAME,
# following version-manager shims (pyenv) to the interpreter itself.
real_interp() {
  local name=$1; shift
  local p
  if p=$("$@" 2>/dev/null) && [ -n "$p" ] && [ -x "$p" ]; then
    ln -sf "$p" "$pathdir/$name"
    printf -- '- `%s`: %s (real)\n' "$name" "$p" >>"$notes"
    return 0
  fi
  return 1
}
# fake_interp NAME STDOUT-TEXT STDERR-TEXT DELAY: a stand-in interpreter.
fake_interp() {
  local f=$pathdir/$1
  echo '#!/bin/sh' >"$f"
  if [ "$4" != 0 ]; then echo "$sleep_bin $4" >>"$f"; fi
  if [ -n "$2" ]; then printf "echo '%s'\n" "$2" >>"$f"; fi
  if [ -n "$3" ]; then printf "echo '%s' >&2\n" "$3" >>"$f"; fi
  chmod +x "$f"
}

[ -x /bin/bash ] || bench_die "/bin/bash is required (both algorithms resolve the shell there)"
printf -- '- `bash`: /bin/bash (real)\n' >>"$notes"
if [ "$BENCH_MODE" = full ]; then
  command -v python3 >/dev/null || bench_ensure_cmd python3 python3 || true
  command -v node >/dev/null || bench_ensure_cmd node nodejs || true
  command -v perl >/dev/null || bench_ensure_cmd perl perl || true
fi
real_interp python3 python3 -c 'import os, sys; print(os.path.realpath(sys.executable))' ||
  { fake_interp python3 "Python 3.11.2" "" 0; printf -- '- `python3`: not installed, instant fake\n' >>"$notes"; }
real_interp node node -e 'console.log(process.execPath)' ||
  { fake_interp node "v18.19.0" "" 0; printf -- '- `node`: not installed, instant fake\n' >>"$notes"; }
real_interp perl perl -e 'print $^X' ||
  { fake_interp perl "This is perl 5, version 36, subversion 0 (v5.36.0)" "" 0; printf -- '- `perl`: not installed, instant fake\n' >>"$notes"; }
fake_interp ruby "ruby 3.1.2p20 (2022-04-12 revision 4491bb740a) [x86_64-linux-gnu]" "" "$fake_delay"
fake_interp java "" 'openjdk version "17.0.15" 2025-04-15' "$fake_delay"
fake_interp Rscript "Rscript (R) version 4.2.2 (2022-10-31)" "" "$fake_delay"
printf -- '- `ruby`, `java`, `Rscript`: fakes sleeping %s s\n- `go`: absent\n' "$fake_delay" >>"$notes"
which_bin=$(command -v which || true)
if [ -n "$which_bin" ]; then
  ln -sf "$(readlink -f "$which_bin")" "$pathdir/which"
else
  printf -- '- no `which` installed: the replay takes the reference fallback `sh -c "command -v"`\n' >>"$notes"
fi
ln -sf "$(readlink -f "$(command -v sh)")" "$pathdir/sh"

run_env=(env -i "PATH=$pathdir" "HOME=${HOME:-/root}" "LANG=C.UTF-8")

# Sanity: both report the same runtimes, else the comparison is meaningless.
"${run_env[@]}" "$BENCH_AGENT" --detect-only >"$ITEM_DIR/agent-report.txt" 2>"$ITEM_DIR/agent-stderr.txt" ||
  bench_die "agent --detect-only failed: $(head -c 300 "$ITEM_DIR/agent-stderr.txt")"
grep -q '=== Attune Agent Runtime Detection Report ===' "$ITEM_DIR/agent-report.txt" ||
  bench_die "agent --detect-only printed no detection report: $(head -c 300 "$ITEM_DIR/agent-report.txt" "$ITEM_DIR/agent-stderr.txt")"
"${run_env[@]}" /bin/sh "$BENCH_REPO/bench/replay-detect.sh" >"$ITEM_DIR/replay-report.txt"
agent_names=$(sed -n 's/^  ✓ \([a-z]*\) .*/\1/p' "$ITEM_DIR/agent-report.txt" | paste -sd, -)
replay_names=$(cut -f1 "$ITEM_DIR/replay-report.txt" | paste -sd, -)
[ "$agent_names" = "$replay_names" ] ||
  bench_die "agent found [$agent_names] but the replay found [$replay_names]"
[ "$(echo "$agent_names" | tr , '\n' | wc -l)" -ge 4 ] || bench_die "fewer than four runtimes detected: $agent_names"
printf '\nBoth detected: `%s`.\n' "$agent_names" >>"$notes"

# Diagnostics: every version command started at once from /bin/sh, paths
# already known (no lookup, no agent): what concurrency alone costs on this
# machine; and the agent's bare start-up (--version).
{
  echo '#!/bin/sh'
  echo "/bin/bash --version >/dev/null 2>&1 &"
  for c in "python3 --version" "node --version" "ruby --version" "java -version" "Rscript --version" "perl --version"; do
    echo "$pathdir/$c >/dev/null 2>&1 &"
  done
  echo wait
} >"$ITEM_DIR/parallel-probes.sh"

n=$(bench_n 30 3)
probes=(
  ::: probe-bash /bin/bash --version
  ::: probe-python3 "$pathdir/python3" --version
  ::: probe-node "$pathdir/node" --version
  ::: probe-ruby "$pathdir/ruby" --version
  ::: probe-java "$pathdir/java" -version
  ::: probe-Rscript "$pathdir/Rscript" --version
  ::: probe-perl "$pathdir/perl" --version
)
mkdir -p "$ITEM_DIR/samples"
"${run_env[@]}" "$BENCH_TOOLS/timeit" -n "$n" -warmup 1 -samples "$ITEM_DIR/samples" -- \
  agent "$BENCH_AGENT" --detect-only \
  ::: replay /bin/sh "$BENCH_REPO/bench/replay-detect.sh" \
  ::: all-probes-at-once-sh /bin/sh "$ITEM_DIR/parallel-probes.sh" \
  ::: agent-version "$BENCH_AGENT" --version \
  "${probes[@]}" >"$ITEM_DIR/timeit.tsv"

field() { awk -F'\t' -v k="$1" -v c="$2" '$1 == k { print $c }' "$ITEM_DIR/timeit.tsv"; }
agent_med=$(field agent 3)
replay_med=$(field replay 3)
slowest=$(awk -F'\t' '$1 ~ /^probe-/ && $3 > m { m = $3; k = $1 } END { print k }' "$ITEM_DIR/timeit.tsv")
slowest_med=$(field "$slowest" 3)
while IFS=$'\t' read -r name count med lo hi cpu; do
  bench_value "${name}_median_ms" "$med"
  bench_value "${name}_min_ms" "$lo"
  bench_value "${name}_max_ms" "$hi"
  bench_value "${name}_cpu_median_ms" "$cpu"
done <"$ITEM_DIR/timeit.tsv"

mm() { printf '%s ms (min %s, max %s)' "$(field "$1" 3)" "$(field "$1" 4)" "$(field "$1" 5)"; }
r1=$(bench_ratio "$agent_med" "$slowest_med")
bench_row "agent --detect-only / slowest single probe (${slowest#probe-})" \
  "≤ 1.3 × slowest probe ($(mm "$slowest"))" "$(mm agent)" "$r1" "$(bench_verdict "$r1" '<=' 1.3)"
r2=$(bench_ratio "$replay_med" "$agent_med")
bench_row "sequential replay / agent --detect-only" "≥ 2 × (replay $(mm replay))" "$(mm agent)" "$r2" "$(bench_verdict "$r2" '>=' 2)"
par_med=$(field all-probes-at-once-sh 3)
bench_row "diagnostic: agent / all probes started at once from sh" "— (reported)" "sh: $(mm all-probes-at-once-sh)" "$(bench_ratio "$agent_med" "$par_med")" "—"
bench_row "diagnostic: agent start-up alone (--version)" "— (reported)" "$(mm agent-version)" "—" "—"
{
  printf '\nEvery command, N = %s each (ms; cpu = user+sys median):\n\n' "$n"
  printf '| command | median | min | max | cpu |\n|---|---:|---:|---:|---:|\n'
  awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $3, $4, $5, $6 }' "$ITEM_DIR/timeit.tsv"
} >>"$notes"

awk -F'\t' '{ printf "\"%s\"\t%s\t%s\t%s\n", $1, $3, $4, $5 }' "$ITEM_DIR/timeit.tsv" >"$ITEM_DIR/plot.dat"
cat >"$ITEM_DIR/plot.gp" <<'EOF'
set output outfile
set title "Item 2: --detect-only vs sequential replay vs single probes (ms: median bar, min-max whisker)"
set style fill solid 0.6 border -1
set boxwidth 0.6
set ylabel "wall time (ms)"
set yrange [0:*]
set grid ytics
set xtics rotate by -30
unset key
plot "plot.dat" using 0:2:xtic(1) with boxes, "" using 0:2:3:4 with yerrorbars pt 7 ps 0.5 lc rgb "black"
EOF
