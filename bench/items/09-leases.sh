#!/usr/bin/env bash
# Item 9: workload leases (issue 9): failover after SIGTERM and SIGKILL,
# statements per renewal tick against the held lease count, N sensors from
# agent start to all running, rule enabled -> sensor running, all with leases
# (bench/agentbench failover, renewals and reaction on the current schema).
set -euo pipefail
. "$BENCH_REPO/bench/lib.sh"

cat >"$ITEM_DIR/method.md" <<'EOF'
Every run is on the current schema (`testdata/schema/current.sql`, with
`sensor_workload` and `sensor_workload_assignment`), so the agent runs a
sensor only under a lease: the harness publishes the bench pack as an active
`pack_release` (`{packs}/.releases/sha256/{digest}/pack` and `pack.tar.gz`),
and its stand-in API refuses a token request without the fence (400) and
echoes `workload_fence` (the agent refuses a token without it). Sensors are
the idle shell sensors of item 6 (one process each, a mark file written at
start, then `sleep`).

- **Failover** (`agentbench failover`): three agents share one database
  holding S sensors; each agent's `max_concurrent_sensors` is S/2, so the
  two survivors can always take everything. Each repetition picks the agent
  holding the most live leases (from `sensor_workload_assignment`), signals
  it, and polls the process table every 20 ms until each of the S sensors
  has a live process that is not one of the victim's; the clock runs from
  the signal to that poll. Then the victim is started again (same worker
  name) and the next repetition waits for its ready line. SIGTERM: a
  graceful stop, which releases every lease. SIGKILL: the agent runs under
  `unshare --pid --fork --mount-proc --kill-child`, the harness SIGKILLs
  `unshare`, the agent (PID 1 of its namespace) dies, and its sensors with
  it, as in a container; its leases stay until they lapse. The lease numbers
  are divided by the test knob `ATTUNE_SENSOR_AGENT_TEST_LEASE_SCALE=30`
  (renewal lease 120 s → 4 s, renewal tick 30 s → 1 s, start lease 900 s →
  30 s); the 2 s reconcile pass is not scaled. Also counted: sensors of the
  survivors that were stopped and started again during a failover.
- **Statements per renewal tick** (`agentbench renewals`): one agent with N
  sensors (N = 100, 500, 1000 held leases) talks to PostgreSQL through a
  loopback proxy in the harness that reads the frontend side of the wire
  protocol (simple Query; Parse/Bind/Execute, the text remembered per
  prepared statement) and groups statements by transaction. Every
  transaction that contains the batched renewal `UPDATE
  sensor_workload_assignment … FROM unnest(…)` is one tick; its statements,
  BEGIN and COMMIT included, are counted. Ticks are counted in a 10 s window
  after all sensors run and two tick periods have passed (scale 30: one
  tick a second); afterwards the database must show all N leases renewed in
  the window. No pg_stat_statements needed.
- **N sensors from agent start to all running**: in the same runs, from just
  before the agent's exec until every sensor's mark exists (polled every
  20 ms), as item 6 measures it; compared with item 6's figure from before
  leases (5220 ms at 500, docs/benchmarks.md of that run, on the same
  machine kind) and with item 6's bar (≤ 10 s at 500).
- **Rule enabled → sensor running** (`agentbench reaction`): item 3's
  method unchanged, so each sample now includes the lease's acquire
  transaction and the fenced token round trip; only the with-broker p50 is
  the bar.
EOF

smoke=0; [ "$BENCH_MODE" = smoke ] && smoke=1
counts=$( [ $smoke = 1 ] && echo 10,30 || echo 100,500,1000 )
window=$( [ $smoke = 1 ] && echo 3s || echo 10s )
sensors=$(bench_n 30 6); reps=$(bench_n 5 1); rn=$(bench_n 30 2)

# sub NAME SUBCOMMAND FLAGS...: one agentbench run into raw/NAME, its
# summary's numbers prefixed NAME_ in this item's values.
sub() {
  local name=$1 cmd=$2; shift 2
  mkdir -p "$ITEM_DIR/raw/$name"
  (cd "$BENCH_REPO" && "$BENCH_TOOLS/agentbench" "$cmd" -agent "$BENCH_AGENT" \
    -sensor "$BENCH_TOOLS/benchsensor" -schema "$BENCH_REPO/testdata/schema/current.sql" \
    -out "$ITEM_DIR/raw/$name" "$@") 2>"$ITEM_DIR/agentbench-$name.log" ||
    bench_die "agentbench $cmd failed: $(tail -n 5 "$ITEM_DIR/agentbench-$name.log")"
  [ -s "$ITEM_DIR/raw/$name/summary.tsv" ] || bench_die "agentbench $cmd wrote no summary"
  awk -F'\t' -v p="$name" '{ print p "_" $1 "\t" $2 }' "$ITEM_DIR/raw/$name/summary.tsv" >>"$ITEM_DIR/values"
}
get() {
  awk -F'\t' -v k="$1" '$1 == k { print $2; found = 1 } END { exit !found }' "$ITEM_DIR/values" ||
    bench_die "no value $1"
}

sub failover failover -sensors "$sensors" -reps "$reps" -scale 30
sub renewals renewals -counts "$counts" -window "$window" -scale 30
sub startup renewals -counts "$(bench_n 500 30)" -scale 30 -count-statements=false
sub reaction reaction -n "$rn"

lease=$(get failover_renewal_lease_s)
for sig in sigterm sigkill; do
  p50=$(get failover_${sig}_ms_p50); mx=$(get failover_${sig}_ms_max); mn=$(get failover_${sig}_ms_min)
  churn=$(get failover_${sig}_survivor_restarts)
  if [ $sig = sigterm ]; then
    # Released at the stop: the survivors' next pass takes them; issue 9's
    # test bound is two reconcile passes.
    bar=4000; what="two 2 s reconcile passes (graceful stop releases every lease) = 4000 ms"
    metric="SIGTERM of 1 of 3 agents → all $sensors sensors running again"
    unscaled="unscaled: the same (nothing waits on a lease)"
  else
    bar=$(awk -v l="$lease" 'BEGIN { printf "%d\n", l * 1000 + 2000 }')
    what="renewal lease (scaled: ${lease} s) + one 2 s pass = ${bar} ms"
    metric="SIGKILL of 1 of 3 agents (own PID namespace) → all $sensors sensors running again"
    unscaled="unscaled expectation: 120 s + one 2 s pass = 122 s"
  fi
  bench_row "$metric, max (lease numbers ÷ 30)" "≤ $what" \
    "p50 $(bench_fmt "$p50") ms, max $(bench_fmt "$mx") ms (min $(bench_fmt "$mn"); $reps repetitions; survivors' sensors restarted meanwhile: $churn); $unscaled" \
    "$(bench_ratio "$mx" "$bar")" "$(bench_verdict "$mx" '<=' "$bar")"
done

IFS=, read -r -a ns <<<"$counts"
cells=""; first=""; last=""
for n in "${ns[@]}"; do
  lo=$(get renewals_stmts_per_tick_min_$n); hi=$(get renewals_stmts_per_tick_max_$n)
  cells="$cells${cells:+; }N = $n: $lo–$hi ($(get renewals_ticks_$n) ticks)"
  [ -z "$first" ] && first=$lo
  last=$hi
done
bench_row "statements per renewal tick at ${counts//,/ \/ } held leases" \
  "must not grow with N (max at N = ${ns[-1]} ≤ min at N = ${ns[0]})" "$cells" \
  "$(bench_ratio "$last" "$first")" "$(bench_verdict "$last" '<=' "$first")"

sn=$(bench_n 500 30)
ar=$(get startup_all_running_ms_$sn)
bench_row "$sn sensors: agent exec → all running, with leases" "≤ 10000 ms (item 6's bar at 500); before leases 5220 ms (item 6, earlier run)" \
  "$(bench_fmt "$ar" 0) ms ($(bench_ratio "$ar" 5220) × the pre-lease figure)" "$(bench_ratio "$ar" 10000)" "$(bench_verdict "$ar" '<=' 10000)"
for n in "${ns[@]}"; do
  bench_row "diagnostic: $n sensors, exec → all running with the counting proxy in the database path" "— (reported)" \
    "$(bench_fmt "$(get renewals_all_running_ms_$n)" 0) ms" "—" "—"
done

b50=$(get reaction_broker_ms_p50)
bench_row "with leases, with the broker: rule enabled → sensor started, p50 (item 3's method)" "≤ 150 ms" \
  "p50 $(bench_fmt "$b50") ms, p95 $(bench_fmt "$(get reaction_broker_ms_p95)") ms (N = $rn; floor p50 $(bench_fmt "$(get reaction_calibration_ms_p50)") ms)" \
  "$(bench_ratio "$b50" 150)" "$(bench_verdict "$b50" '<=' 150)"
bench_row "with leases, broker unreachable: rule enabled → sensor started, p50" "— (reported)" \
  "p50 $(bench_fmt "$(get reaction_nobroker_ms_p50)") ms, max $(bench_fmt "$(get reaction_nobroker_ms_max)") ms" "—" "—"

unf=$(( $(get failover_unfenced_token_requests) + $(get renewals_unfenced_token_requests) + $(get reaction_unfenced_token_requests) ))
{
  printf 'Sensor-token requests answered: %s (failover), %s (renewals), %s (reaction); requests without a fence refused: %s.\n' \
    "$(get failover_token_requests)" "$(get renewals_token_requests)" "$(get reaction_token_requests)" "$unf"
  printf 'Lease scale 30 for failover and renewals (renewal lease %s s, renewal tick 1 s); the reaction runs use the production numbers.\n' "$lease"
} >"$ITEM_DIR/notes.md"
