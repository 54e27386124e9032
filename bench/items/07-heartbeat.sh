#!/usr/bin/env bash
# Item 7: statements, round trips and wire bytes of one heartbeat, counters
# unchanged vs changed, measured by TestHeartbeatCost (heartbeat_cost_test.go)
# on a fresh database.
set -euo pipefail
. "$BENCH_REPO/bench/lib.sh"

cat >"$ITEM_DIR/method.md" <<'EOF'
`TestHeartbeatCost` (`heartbeat_cost_test.go`, run by the harness with
`go test -run '^TestHeartbeatCost$'`) creates a fresh database with the
current schema, opens a pool configured exactly as the agent's
(`configureAgentPool`), registers a worker with production-shaped
capabilities (four interpreters, agent-mode keys) and calls the real
`heartbeater.tick` against the real `pgRegistry`, N times per scenario:
counters unchanged, and a counter changed every beat. Each scenario runs
back to back (the connection was just used) and "idle": the pool is told the
connection has been idle past pgxpool's 1 s ping threshold, which is what
production sees with a 30 s interval, so the liveness ping the pool sends
before the first statement of a beat is counted too (no sleeping).

Statements are counted with a pgx `QueryTracer` on the pool (every `Exec`,
`Query`, `QueryRow`; the pool's ping is not a statement). Bytes are counted
on the wire by a counting `net.Conn` installed with pgx's `DialFunc`: every
byte the client writes and reads, protocol framing included, no TLS (local
server). Round trips are client writes: pgx sends each request (for a
cached prepared statement: Bind, Describe, Execute, Sync) in one write, then
waits. Two warm-up beats first prepare both statements on the connection (a
statement's first use on a connection costs one more round trip, once per
connection).
`pg_stat_statements` was not used: `CREATE EXTENSION` works but the view
needs `shared_preload_libraries`, which the test server does not load, and it
counts no bytes anyway; `pg_stat_activity` counts neither.

The bars are CONTRACT §4's: capabilities are rewritten only when a counter
changed, so an unchanged beat is one statement and a changed one two.
EOF

n=$(bench_n 200 5)
raw=$ITEM_DIR/raw.tsv
(cd "$BENCH_REPO" && ATTUNE_BENCH_HEARTBEAT_N=$n ATTUNE_BENCH_HEARTBEAT_OUT=$raw \
  go test -run '^TestHeartbeatCost$' -count=1 -v . >"$ITEM_DIR/go-test.log" 2>&1) ||
  bench_die "TestHeartbeatCost failed: $(tail -n 20 "$ITEM_DIR/go-test.log")"
[ -s "$raw" ] || bench_die "TestHeartbeatCost wrote no numbers to $raw"

while IFS=$'\t' read -r scenario metric med lo hi; do
  bench_value "${scenario}_${metric}_median" "$med"
  bench_value "${scenario}_${metric}_min" "$lo"
  bench_value "${scenario}_${metric}_max" "$hi"
done <"$raw"

get() { awk -F'\t' -v s="$1" -v m="$2" -v c="${3:-3}" '$1 == s && $2 == m { print $c }' "$raw"; }
mm() { printf '%s (min %s, max %s)' "$(get "$1" "$2" 3)" "$(get "$1" "$2" 4)" "$(get "$1" "$2" 5)"; }
for s in unchanged changed unchanged_idle changed_idle; do
  case $s in unchanged*) want=1 ;; *) want=2 ;; esac
  label=${s/_idle/, after idle (pool ping)}
  st=$(get "$s" statements 5)
  bench_row "$label: statements per beat" "≤ $want (CONTRACT §4)" "$(mm "$s" statements)" "$(bench_ratio "$st" "$want")" "$(bench_verdict "$st" '<=' "$want")"
  bench_row "$label: round trips per beat" "— (reported)" "$(mm "$s" round_trips)" "—" "—"
  bench_row "$label: bytes sent / received per beat" "— (reported)" "$(mm "$s" bytes_sent) / $(mm "$s" bytes_received)" "—" "—"
done
changed_total=$(awk -v a="$(get changed bytes_sent)" -v b="$(get changed bytes_received)" 'BEGIN { print a + b }')
unchanged_total=$(awk -v a="$(get unchanged bytes_sent)" -v b="$(get unchanged bytes_received)" 'BEGIN { print a + b }')
bench_row "changed / unchanged, bytes both ways" "— (reported)" "$changed_total B vs $unchanged_total B" "$(bench_ratio "$changed_total" "$unchanged_total")" "—"
printf 'N = %s beats per scenario. The capabilities JSON written on a change is %s bytes.\n' \
  "$n" "$(get capabilities_json bytes)" >"$ITEM_DIR/notes.md"
