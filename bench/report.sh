#!/usr/bin/env bash
# report.sh OUT DOCS: write DOCS/benchmarks.md and DOCS/benchmarks/*.png from
# the results of one bench/run.sh run in OUT. Everything in the page comes
# from OUT or from files under bench/ (methods from the item scripts, analysis
# from bench/notes/<item>.md), so the page is never edited by hand.
set -euo pipefail
BENCH_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$BENCH_REPO/bench/lib.sh"

out=$1 docs=$2
mkdir -p "$docs/benchmarks"
docs=$(cd "$docs" && pwd) # plots are rendered from inside each item's directory
page=$docs/benchmarks.md
machine() { awk -F'\t' -v k="$1" '$1 == k { print $2 }' "$out/machine.tsv"; }

item_title() {
  case "$1" in
    01-*) echo "1. Binary size" ;;
    02-*) echo "2. \`--detect-only\` wall time" ;;
    03-*) echo "3. Reaction latency: rule enabled → sensor started" ;;
    04-*) echo "4. Crash handling: sensor exit → agent notices" ;;
    05-*) echo "5. Shutdown of 100 SIGTERM-ignoring sensors" ;;
    06-*) echo "6. Scale: 100 / 500 / 1000 native sensors" ;;
    07-*) echo "7. Heartbeat cost" ;;
    08-*) echo "8. Sensor logs shipped to the API" ;;
    09-*) echo "9. Workload leases: failover, renewal cost, start-up, reaction" ;;
    *) echo "$1" ;;
  esac
}

# Plots need gnuplot: a full run installs it (Debian package gnuplot-nox), a
# smoke run uses it only when present.
gnuplot_ok=0
if command -v gnuplot >/dev/null 2>&1 || { [ "${BENCH_MODE:-full}" = full ] && bench_ensure_cmd gnuplot gnuplot-nox; }; then
  gnuplot_ok=1
  term="png size 900,440 noenhanced"
  if gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo; then term="pngcairo size 900,440 noenhanced font ',10'"; fi
fi

# md_table FILE: table.tsv as a markdown table.
md_table() {
  printf '| Metric | Bar | Result | Ratio | Verdict |\n|---|---|---|---:|---|\n'
  awk -F'\t' '{ for (i = 1; i <= NF; i++) gsub(/\|/, "\\|", $i)
    v = $5; if (v == "PASS") v = "**PASS**"; else if (v == "MISS") v = "**MISS**"
    printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, v }' "$1"
}

items=()
for d in "$out"/[0-9]*/; do items+=("$(basename "$d")"); done

{
  cat <<EOF
# Benchmarks

Measured by \`make bench\` (\`bench/run.sh\`) on $(machine date), commit
\`$(machine commit)\`. This page is generated: methods live in
\`bench/items/*.sh\`, analysis in \`bench/notes/*.md\`; rerun \`make bench\` to
refresh it rather than editing it.

## Reproduce

\`\`\`sh
make bench               # every item; rewrites docs/benchmarks.md and docs/benchmarks/*.png
make bench-smoke         # CI: small N, host architecture only; checks that every
                         # item produced numbers, asserts no bar, writes no docs
bench/run.sh 02-detect   # one item (results in bench/out/full-partial/02-detect/)
\`\`\`

Both \`make\` targets run under \`scripts/with-services.sh\` (PostgreSQL and
RabbitMQ for the items that need them). The harness needs Go, a POSIX shell,
gzip and awk; it installs gnuplot (\`gnuplot-nox\`) with apt-get for the plots
when it runs as root and it is missing, and otherwise leaves the plots out.
It times commands with its own \`bench/timeit\` (standard library only), so
it does not need hyperfine. Items 3 to 6 run the agent itself through
\`bench/agentbench\` (a fresh database per agent run, a fresh vhost made with
\`rabbitmqctl\` or \`\$ATTUNE_TEST_RABBITMQCTL\`, a stand-in for the token API)
and install \`bench/benchsensor\` as their native sensor; item 6 also starts a
throw-away PostgreSQL from the installed server binaries (\`initdb\`, with
\`pg_stat_statements\` preloaded) and falls back to the shared server's
counters, saying so, when it cannot.

## Machine

| | |
|---|---|
| CPU | $(machine cpu) |
| Cores (\`nproc\`) | $(machine nproc) |
| Kernel | $(machine kernel) |
| Go | $(machine go) |
| Load average at start / end | $(machine load_start) / $(machine load_end) |

The machine is shared with other work (see the load average): wall times
carry that noise, which is why every comparison is a ratio of medians taken
in the same run, interleaved round-robin, never a ratio across runs.

## Method, common to all items

- Every comparison is a ratio measured in the same run: the baseline and the
  agent are built or timed together, and timed commands are interleaved
  round-robin by \`bench/timeit\` (one run of each per round, the first
  command rotating, after one warm-up round), so a slow spell on the machine
  hits both sides alike.
- Times are medians with the minimum and maximum over the N repeated runs
  stated in each item; counts and sizes that do not vary are given once.
- A bar that is missed is reported as **MISS** with the reason below it; bars
  are the issue's and are not adjusted to the results.

## Summary

| Item | Status | Verdicts |
|---|---|---|
EOF
  for item in "${items[@]}"; do
    d=$out/$item
    verdicts=-
    if [ -f "$d/table.tsv" ]; then
      verdicts=$(awk -F'\t' '$5 == "PASS" { p++ } $5 == "MISS" { m++ } END { printf "%d PASS, %d MISS", p, m }' "$d/table.tsv")
    fi
    printf '| [%s](#%s) | %s | %s |\n' "$(item_title "$item")" "$item" "$(cat "$d/status")" "$verdicts"
  done

  for item in "${items[@]}"; do
    d=$out/$item
    printf '\n<a id="%s"></a>\n\n## %s\n\n' "$item" "$(item_title "$item")"
    status=$(cat "$d/status")
    case "$status" in
      measured) ;;
      pending:*) printf '**Not measured yet**: %s.\n\n' "${status#pending: }" ;;
      *) printf '**%s**\n\n' "$status" ;;
    esac
    if [ -f "$d/method.md" ]; then printf '### Method\n\n'; cat "$d/method.md"; echo; fi
    if [ -f "$d/table.tsv" ]; then printf '### Result\n\n'; md_table "$d/table.tsv"; echo; fi
    if [ -f "$d/notes.md" ]; then cat "$d/notes.md"; echo; fi
    if [ -f "$d/plot.gp" ]; then
      png=$docs/benchmarks/$item.png
      if [ "$gnuplot_ok" = 1 ] && (cd "$d" && gnuplot -e "set terminal $term" -e "outfile='$png'" plot.gp) 2>"$d/gnuplot.log"; then
        printf '![%s](benchmarks/%s.png)\n\n' "$(item_title "$item")" "$item"
      else
        printf '_(plot not rendered: gnuplot unavailable or failed; data in bench/out/…/%s/plot.dat)_\n\n' "$item"
      fi
    fi
    if [ -f "$BENCH_REPO/bench/notes/$item.md" ]; then
      printf '### Analysis\n\n'; cat "$BENCH_REPO/bench/notes/$item.md"; echo
    fi
  done
} >"$page"
