#!/usr/bin/env bash
# Item 8: sensor logs shipped to the API (bench/agentbench logs).
set -euo pipefail
. "$BENCH_REPO/bench/lib.sh"

cat >"$ITEM_DIR/method.md" <<'EOF2'
`bench/agentbench logs` runs the agent binary against a fresh database
(current schema, which has the `log_stream` table, so the agent ships every
sensor's stdout and stderr to the API as segmented log streams, CONTRACT §13)
with two native sensors and the default `artifacts.*` settings. The stand-in
API accepts segment PUTs (sequence checked per version) and seals, and
records when each segment was committed; it stores no bytes and writes no
rows (that cost is the API's).

- Throughput: one noisy sensor writes 200 MiB as fast as it can
  (`yes | head -c`). Bytes per second shipped = bytes committed / (last flood
  segment committed − the agent's `sensor started` line); the agent's CPU
  (utime + stime from `/proc/<pid>/stat`) over the same span, per MB. The
  local `sensors/<ref>/stdout.log` is written too, as always.
- Latency: the second sensor writes `stamp <unix ns>` every 50 ms; after the
  flood, for 10 s, each line's latency is from its stamp to the commit of the
  segment holding it (from then on GET /api/v1/sensors/{ref}/logs/{stream}
  serves it). Percentiles are nearest-rank.
EOF2

bytes=$(bench_n 209715200 20971520)
window=$(bench_n 10s 3s)
bench_agentbench logs -bytes "$bytes" -window "$window"

mbps=$(bench_sum flood_mb_per_s)
cpu=$(bench_sum agent_cpu_ms_per_mb)
p50=$(bench_sum latency_ms_p50)
bench_row "bytes per second shipped from one noisy sensor" "— (reported)" \
  "$(bench_fmt "$mbps" 1) MB/s ($(bench_sum flood_bytes_shipped) of $(bench_sum flood_bytes_written) bytes in $(bench_fmt "$(bench_sum flood_seconds)" 2) s)" "—" "—"
bench_row "agent CPU per MB shipped" "— (reported)" \
  "$(bench_fmt "$cpu" 2) ms CPU per MB ($(bench_fmt "$(bench_sum agent_cpu_seconds)" 2) s in all)" "—" "—"
bench_row "line written → readable through the API, p50" "≤ 1000 ms" \
  "p50 $(bench_fmt "$p50" 1) ms, p95 $(bench_fmt "$(bench_sum latency_ms_p95)" 1) ms (min $(bench_fmt "$(bench_sum latency_ms_min)" 1), max $(bench_fmt "$(bench_sum latency_ms_max)" 1); N = $(bench_sum latency_ms_n))" \
  "$(bench_ratio "$p50" 1000)" "$(bench_verdict "$p50" '<=' 1000)"

printf 'Flood of %s bytes; %s versions sealed by the controlled stop and rotations; %s segments refused.\n' \
  "$bytes" "$(bench_sum seals)" "$(bench_sum segments_refused)" >"$ITEM_DIR/notes.md"
