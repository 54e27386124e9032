# lib.sh: helpers shared by bench/run.sh and the item scripts (sourced, bash).
#
# An item script (bench/items/NN-name.sh) is run by run.sh with these
# variables exported, and writes only into $ITEM_DIR:
#   BENCH_MODE   full | smoke (smoke: small N, no bars asserted, CI)
#   BENCH_REPO   repository root
#   BENCH_OUT    this run's output directory
#   BENCH_TOOLS  directory holding the harness's own tools (timeit; agentbench
#                and benchsensor, the driver and sensor of items 3-6)
#   BENCH_AGENT  the agent built for this machine's architecture (make build)
#   BENCH_ARCHES the architectures item 1 builds (full: amd64 arm64)
#   ITEM_DIR     this item's output directory (exists, empty)
# Files an item leaves in $ITEM_DIR (report.sh and the smoke check read them):
#   status     "measured", or "pending: <why>" for an item that cannot run yet
#   method.md  how the item is measured (markdown, static text)
#   table.tsv  metric, bar, result, ratio, verdict (tab-separated, one row each)
#   values     name<TAB>number, every number the item measured (smoke checks them)
#   notes.md   optional, what this run found out (markdown)
#   plot.gp    optional gnuplot script; report.sh renders it with gnuplot,
#              setting the variable `outfile`, in $ITEM_DIR.

bench_log() { printf '[bench] %s\n' "$*" >&2; }
bench_die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# bench_n FULL SMOKE: the repetition count for the current mode.
bench_n() { if [ "${BENCH_MODE:-full}" = smoke ]; then echo "$2"; else echo "$1"; fi; }

# bench_row METRIC BAR RESULT RATIO VERDICT: one table row of this item.
bench_row() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$ITEM_DIR/table.tsv"; }

# bench_value NAME NUMBER: one measured number (the smoke pass checks it is one).
bench_value() { printf '%s\t%s\n' "$1" "$2" >>"$ITEM_DIR/values"; }

# bench_ratio A B: A/B with three decimals.
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) { print "nan"; exit } printf "%.3f\n", a / b }'; }

# bench_verdict A OP B: PASS when "A OP B" holds (OP one of <= >= < >), else MISS.
bench_verdict() {
  awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
    ok = (op == "<=" && a <= b) || (op == ">=" && a >= b) || (op == "<" && a < b) || (op == ">" && a > b)
    print (ok ? "PASS" : "MISS") }'
}

# bench_bytes N: "11,350,178 B (10.82 MiB)".
bench_bytes() {
  awk -v n="$1" 'BEGIN {
    s = sprintf("%d", n); out = ""
    while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
    printf "%s%s B (%.2f MiB)\n", s, out, n / 1048576 }'
}

# bench_ensure_cmd CMD DEBIAN_PACKAGE: make CMD available, installing the
# package with apt-get when running as root on Debian/Ubuntu; returns 1 when
# it stays missing (the caller falls back or reports it).
bench_ensure_cmd() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    bench_log "installing $2 for $1"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1; } || true
  fi
  command -v "$1" >/dev/null 2>&1
}

# bench_pending WHY: mark this item as not measurable yet.
bench_pending() { printf 'pending: %s\n' "$1" >"$ITEM_DIR/status"; }

# bench_agentbench SUBCOMMAND [FLAG...]: run bench/agentbench (items 3-6)
# against this run's agent, with its raw output in $ITEM_DIR/raw; the
# driver's own log goes to $ITEM_DIR/agentbench.log. Every number of its
# summary becomes one of this item's values.
bench_agentbench() {
  local sub=$1; shift
  mkdir -p "$ITEM_DIR/raw"
  (cd "$BENCH_REPO" && "$BENCH_TOOLS/agentbench" "$sub" -agent "$BENCH_AGENT" \
    -sensor "$BENCH_TOOLS/benchsensor" -schema "$BENCH_REPO/testdata/schema/current.sql" \
    -out "$ITEM_DIR/raw" "$@") 2>"$ITEM_DIR/agentbench.log" ||
    bench_die "agentbench $sub failed: $(tail -n 5 "$ITEM_DIR/agentbench.log")"
  [ -s "$ITEM_DIR/raw/summary.tsv" ] || bench_die "agentbench $sub wrote no summary"
  cat "$ITEM_DIR/raw/summary.tsv" >>"$ITEM_DIR/values"
}

# bench_sum NAME: one number of the agentbench summary.
bench_sum() {
  local v
  v=$(awk -F'\t' -v k="$1" '$1 == k { print $2; found = 1 } END { exit !found }' "$ITEM_DIR/raw/summary.tsv") ||
    bench_die "agentbench summary has no $1"
  echo "$v"
}

# bench_fmt NUMBER [DECIMALS]: a number rounded for a table cell (default 1 decimal).
bench_fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { printf "%.*f\n", d, v }'; }
