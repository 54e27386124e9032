#!/usr/bin/env bash
# Item 3: reaction latency, rule enabled -> sensor process started, with the
# broker and with the broker unreachable (bench/agentbench reaction).
set -euo pipefail
. "$BENCH_REPO/bench/lib.sh"

cat >"$ITEM_DIR/method.md" <<'EOF'
`bench/agentbench reaction` runs the agent binary (`make build`) twice, each
time against a fresh database (current schema) holding N + 1 native sensors
whose rules are all disabled, a fresh RabbitMQ vhost, and an in-process
stand-in for the Attune API that issues sensor tokens at once (real HTTP on
loopback). Every trial enables the rule of its own, not yet running sensor,
as the API does: `UPDATE rule SET enabled = true` (autocommit), then a
`RuleEnabled` envelope published to `attune.events` with routing key
`rule.enabled` on a connection opened beforehand. The clock starts when the
UPDATE has returned (the rule is enabled in the database) and stops at the
first timestamp the sensor process takes: the sensor is `bench/benchsensor`
(a small static Go program, installed as the pack's native entrypoint) whose
`main` reads the clock first thing and writes it to a file that the harness
polls every millisecond. The poll period does not limit the resolution,
since the number in the file is the sensor's own clock reading (same machine,
`CLOCK_REALTIME`, nanoseconds).

What the stamp adds over "process started": the time from the sensor's exec
to its `main`. The harness measures it in the same run by exec'ing the same
sensor directly (fork/exec from Go into its own process group, as the agent
does) and reports it as the calibration row; it is part of every sample, and
it is the measurement's floor. The agent's own "sensor started" log line,
written when its fork/exec has returned, is reported as a second view.

Trials are spaced by random gaps (seeded, reproducible): 100-500 ms with the
broker; 0-2000 ms without it, so that the enable instants fall evenly over
the agent's 2 s reconcile period (a fixed gap would lock onto one phase of
it). The first trial of each run is a warm-up and is not counted.
Percentiles are nearest-rank (every reported value was measured). "Broker
unreachable" is a second agent whose `ATTUNE_MQ_URL` points at a loopback
port nobody listens on (the API's publish would fail; only the UPDATE is
made), so only the 2 s reconcile pass can notice the change.
EOF

n=$(bench_n 30 3)
bench_agentbench reaction -n "$n"

b50=$(bench_sum broker_ms_p50); b95=$(bench_sum broker_ms_p95)
bmin=$(bench_sum broker_ms_min); bmax=$(bench_sum broker_ms_max)
d50=$(bench_sum nobroker_ms_p50); d95=$(bench_sum nobroker_ms_p95)
dmin=$(bench_sum nobroker_ms_min); dmax=$(bench_sum nobroker_ms_max)
c50=$(bench_sum calibration_ms_p50); c95=$(bench_sum calibration_ms_p95)
dist() { printf 'p50 %s ms, p95 %s ms (min %s, max %s; N = %s)' "$(bench_fmt "$1")" "$(bench_fmt "$2")" "$(bench_fmt "$3")" "$(bench_fmt "$4")" "$n"; }

r=$(bench_ratio "$b50" 150)
bench_row "with the broker: rule enabled → sensor started, p50" "≤ 150 ms" "$(dist "$b50" "$b95" "$bmin" "$bmax")" "$r" "$(bench_verdict "$b50" '<=' 150)"
# Without the broker the issue bounds the latency by the reconcile interval:
# a change waits at most 2 s for the next pass, then costs one launch, which
# the with-broker p95 measures.
bound=$(awk -v b="$b95" 'BEGIN { printf "%.1f\n", 2000 + b }')
bench_row "broker unreachable: rule enabled → sensor started, max" \
  "bounded by the 2 s reconcile interval: ≤ 2000 ms + one launch (with-broker p95) = $bound ms" \
  "$(dist "$d50" "$d95" "$dmin" "$dmax")" "$(bench_ratio "$dmax" "$bound")" "$(bench_verdict "$dmax" '<=' "$bound")"
bench_row "diagnostic: with the broker, rule enabled → agent's \"sensor started\" log line, p50" "— (reported)" \
  "$(bench_fmt "$(bench_sum broker_agentlog_ms_p50)") ms (p95 $(bench_fmt "$(bench_sum broker_agentlog_ms_p95)"))" "—" "—"
bench_row "measurement floor: exec → the sensor's first timestamp, no agent (calibration)" "— (reported)" \
  "p50 $(bench_fmt "$c50") ms, p95 $(bench_fmt "$c95") ms (N = $(bench_sum calibration_ms_n))" "—" "—"
bench_row "diagnostic: with the broker, p50 minus the measurement floor's p50" "— (reported)" \
  "$(awk -v a="$b50" -v b="$c50" 'BEGIN { printf "%.1f ms\n", a - b }')" "—" "—"
bench_row "diagnostic: publishing the RuleEnabled message (harness side), p50" "— (reported)" \
  "$(bench_fmt "$(bench_sum broker_publish_ms_p50)" 2) ms" "—" "—"

{
  printf 'N = %s measured trials per mode after one warm-up; %s sensor-token requests answered by the stand-in API.\n' \
    "$n" "$(bench_sum token_requests)"
  printf 'Expected without the broker if the agent reacts only on its 2 s pass: about 1000 ms median, 1900 ms p95 (uniform wait) plus one launch.\n'
} >"$ITEM_DIR/notes.md"

# Distribution plot: the empirical CDF of each mode (log time axis).
for m in broker nobroker calibration; do
  sort -g "$ITEM_DIR/raw/$m.samples" | awk '{ a[NR] = $1 } END { for (i = 1; i <= NR; i++) printf "%s\t%.4f\n", a[i], i / NR }' >"$ITEM_DIR/$m.cdf"
done
cat >"$ITEM_DIR/plot.gp" <<'EOF'
set output outfile
set title "Item 3: rule enabled -> sensor process started (empirical CDF of the trials)"
set xlabel "latency (ms, log scale)"
set ylabel "fraction of trials"
set logscale x
set yrange [0:1.02]
set grid xtics ytics mxtics
set key below
set arrow from 150, graph 0 to 150, graph 1 nohead dt 2 lc rgb "red"
set label "bar 150 ms" at 150, graph 0.05 offset 0.5,0 tc rgb "red"
set arrow from 2000, graph 0 to 2000, graph 1 nohead dt 2 lc rgb "gray40"
set label "2 s reconcile" at 2000, graph 0.05 offset 0.5,0 tc rgb "gray40"
plot "calibration.cdf" using 1:2 with steps lw 2 lc rgb "gray50" title "floor: exec -> first timestamp (no agent)", \
     "broker.cdf" using 1:2 with steps lw 2 lc rgb "#1b9e77" title "with the broker", \
     "nobroker.cdf" using 1:2 with steps lw 2 lc rgb "#d95f02" title "broker unreachable"
EOF
