#!/usr/bin/env bash
# run.sh: the benchmark harness of docs/benchmarks.md (issue 5).
#
#   bench/run.sh            full run: every item, real N, then docs/benchmarks.md
#                           and its plots are rewritten from the results
#   bench/run.sh --smoke    CI pass: small N, amd64 only, no bars asserted and no
#                           docs written; fails only when an item produced no number
#   bench/run.sh [--smoke] [--no-docs] [--out DIR] [ITEM...]
#                           ITEM is an item file name without .sh (01-size ...);
#                           a run of some items goes to bench/out/full-partial/
#
# `make bench` and `make bench-smoke` run it under scripts/with-services.sh,
# which exports ATTUNE_TEST_DATABASE_URL and ATTUNE_TEST_AMQP_URL. Results stay
# under bench/out/ (ignored by git). The contract between run.sh, the item
# scripts and report.sh is written at the top of bench/lib.sh.
set -euo pipefail

BENCH_REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_REPO/bench/lib.sh"

BENCH_MODE=full
docs=1
out=
items=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) BENCH_MODE=smoke ;;
    --no-docs) docs=0 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) bench_die "unknown option $1" ;;
    *) items+=("$1") ;;
  esac
  shift
done
[ "$BENCH_MODE" = smoke ] && docs=0
if [ ${#items[@]} -eq 0 ]; then
  for f in "$BENCH_REPO"/bench/items/[0-9]*.sh; do items+=("$(basename "$f" .sh)"); done
elif [ "$docs" = 1 ]; then
  bench_log "only some items selected: docs/benchmarks.md is not rewritten"
  docs=0
fi
# A run of some items gets its own directory, so it never wipes a full run.
partial=
[ "$docs" = 0 ] && [ "$BENCH_MODE" = full ] && [ ${#items[@]} -lt "$(ls "$BENCH_REPO"/bench/items/[0-9]*.sh | wc -l)" ] && partial=-partial
BENCH_OUT=${out:-$BENCH_REPO/bench/out/$BENCH_MODE$partial}
case "$BENCH_OUT" in /*) ;; *) BENCH_OUT=$PWD/$BENCH_OUT ;; esac
rm -rf "$BENCH_OUT"
mkdir -p "$BENCH_OUT/tools" "$BENCH_OUT/build"

command -v go >/dev/null || bench_die "go is required (it builds the agent and the harness tools)"
BENCH_HOST_ARCH=$(go env GOARCH)
if [ "$BENCH_MODE" = smoke ]; then BENCH_ARCHES=$BENCH_HOST_ARCH; else BENCH_ARCHES="amd64 arm64"; fi
export BENCH_MODE BENCH_REPO BENCH_OUT BENCH_HOST_ARCH BENCH_ARCHES
export BENCH_TOOLS=$BENCH_OUT/tools
export BENCH_AGENT=$BENCH_OUT/build/attune-sensor-agent-linux-$BENCH_HOST_ARCH

# The machine, for the report: the numbers mean little without it.
{
  printf 'date\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
  printf 'commit\t%s\n' "$(git -C "$BENCH_REPO" describe --always --dirty 2>/dev/null || echo unknown)"
  printf 'go\t%s\n' "$(go version | awk '{print $3, $4}')"
  printf 'kernel\t%s\n' "$(uname -sr)"
  printf 'cpu\t%s\n' "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)"
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'load_start\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$BENCH_OUT/machine.tsv"

bench_log "mode $BENCH_MODE, output $BENCH_OUT"
(cd "$BENCH_REPO" && go build -o "$BENCH_TOOLS/timeit" ./bench/timeit) || bench_die "build bench/timeit"
# The driver of items 3-6 and the native sensor they install (static and
# stripped, so its start-up, part of every reaction sample, stays small).
(cd "$BENCH_REPO" && go build -o "$BENCH_TOOLS/agentbench" ./bench/agentbench &&
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BENCH_TOOLS/benchsensor" ./bench/benchsensor) ||
  bench_die "build bench/agentbench and bench/benchsensor"
# The agent exactly as `make build` builds it (the Makefile's flags), for
# this machine's architecture; item 1 builds the other ones.
GOOS=linux GOARCH=$BENCH_HOST_ARCH make -s -C "$BENCH_REPO" build BIN="$BENCH_AGENT" ||
  bench_die "make build failed: the agent does not compile"

failed=()
for item in "${items[@]}"; do
  script=$BENCH_REPO/bench/items/$item.sh
  [ -f "$script" ] || bench_die "no item $item (looked for $script)"
  export ITEM_DIR=$BENCH_OUT/$item
  mkdir -p "$ITEM_DIR"
  bench_log "item $item"
  start=$(date +%s)
  if bash "$script" >"$ITEM_DIR/log" 2>&1; then
    [ -f "$ITEM_DIR/status" ] || echo measured >"$ITEM_DIR/status"
  else
    echo "failed" >"$ITEM_DIR/status"
    failed+=("$item")
    bench_log "item $item FAILED; its log:"
    tail -n 30 "$ITEM_DIR/log" >&2
  fi
  bench_log "item $item: $(cat "$ITEM_DIR/status") ($(($(date +%s) - start)) s)"
done
printf 'load_end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$BENCH_OUT/machine.tsv"

# Every measured item must have produced numbers, and only numbers.
for item in "${items[@]}"; do
  d=$BENCH_OUT/$item
  [ "$(cat "$d/status")" = measured ] || continue
  if [ ! -s "$d/values" ] || awk -F'\t' 'NF != 2 || $2 !~ /^-?[0-9]+(\.[0-9]+)?$/ { bad = 1 } END { exit !bad }' "$d/values"; then
    bench_log "item $item: missing or non-numeric values:"
    cat "$d/values" >&2 2>/dev/null || true
    failed+=("$item")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  bench_die "failed items: ${failed[*]} (logs in $BENCH_OUT/<item>/log)"
fi

if [ "$docs" = 1 ]; then
  bash "$BENCH_REPO/bench/report.sh" "$BENCH_OUT" "$BENCH_REPO/docs"
  bench_log "wrote docs/benchmarks.md"
else
  bash "$BENCH_REPO/bench/report.sh" "$BENCH_OUT" "$BENCH_OUT/docs"
  bench_log "report preview: $BENCH_OUT/docs/benchmarks.md"
fi
for item in "${items[@]}"; do
  printf '%s: %s\n' "$item" "$(cat "$BENCH_OUT/$item/status")"
  if [ -f "$BENCH_OUT/$item/table.tsv" ]; then
    if command -v column >/dev/null; then column -t -s $'\t' "$BENCH_OUT/$item/table.tsv"; else cat "$BENCH_OUT/$item/table.tsv"; fi | sed 's/^/  /'
  fi
done
