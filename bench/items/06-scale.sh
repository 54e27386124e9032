#!/usr/bin/env bash
# Item 6: scale to 100/500/1000 native sensors (bench/agentbench scale) on a
# private PostgreSQL that preloads pg_stat_statements.
set -euo pipefail
. "$BENCH_REPO/bench/lib.sh"

cat >"$ITEM_DIR/method.md" <<'EOF'
For each sensor count N, `bench/agentbench scale` seeds a fresh database
(current schema) with N native sensors, each with one enabled rule, whose
entrypoint is `#!/bin/sh`, a mark file written with a shell redirection (no
fork), then `exec sleep`: one small process per sensor.
`sensor.max_concurrent_sensors` is raised to N + 100; heartbeat (30 s),
grace and timeouts keep their defaults. Then it starts the agent binary
(fresh vhost, stand-in token API on loopback) and measures:

- **all running**: from just before the agent's exec until all N marks exist
  (the directory is polled every 20 ms, which is this number's resolution);
  also from the agent's `Attune Sensor Agent is ready` line, which comes
  after runtime detection, the database and the worker registration. Every
  process is then checked alive in `/proc`. The agent's CPU time from exec
  to that moment is recorded too. Just before each agent run, the harness
  itself starts the same N scripts at once (one goroutine each, fork/exec
  from Go into its own process group with stdout and stderr on pipes, as
  the agent does, but no token, database or log files) and times the same
  way: that **floor** is what process creation costs on this machine.
- **RSS**: the agent's `VmHWM` (peak resident set) and `VmRSS` from
  `/proc/<pid>/status` at the end of the idle window. MB here is 10^6 bytes
  (the kernel's kB are KiB; both are shown). The agent runs with
  `GODEBUG=gctrace=1`, which only adds a line per garbage collection to its
  stderr: the live heap it reports (MiB) tells retained memory from garbage
  and runtime overhead. The anonymous part of the RSS comes from
  `/proc/<pid>/smaps_rollup` (the rest is the binary's mapped pages).
- **idle CPU**: after all are running and 3 s of settling, the agent's
  `utime + stime` (`/proc/<pid>/stat`, all threads, in clock ticks of 10 ms)
  over the idle window (60 s; the smoke run uses 5 s), as a percentage of
  one core. The window includes the 2 s reconcile passes and the 30 s
  heartbeats, which is what an idle agent does.
- **statements per reconcile pass**: the harness starts its own PostgreSQL
  (`initdb` into a temporary directory, a free port, stopped afterwards)
  with `shared_preload_libraries = pg_stat_statements`, because the shared
  test server does not preload it and `pg_stat_activity` or
  `pg_stat_database` cannot tell statements apart. At the start of the
  window it resets the statistics of the agent's database; at the end it
  reads every statement the database received, by text. A pass is one call
  of the sensors query (the first of the three in `sensors.go`), so passes
  are counted, not assumed; statements per pass are all statements except
  the heartbeat's `UPDATE worker`, divided by the passes; rows per pass are
  the rows those statements returned. The full listing per N is kept with
  the raw results (`statements-N.tsv`). `log_statement = all` would have
  worked too, but needs log parsing and counts nothing pg_stat_statements
  does not. If the private server cannot be started, the harness falls back
  to the transaction counter of `pg_stat_database` on the shared server with
  passes estimated from the 2 s period, and says so.
- **`sensor_process` rows** (a diagnostic): after the window, the number of
  rows of the agent's database that say `running`, and the agent's
  `sensor_process update failed` warnings.
EOF

pg_tmp=
pg_as=()
stop_private_pg() {
  if [ -n "$pg_tmp" ]; then
    "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_tmp/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$pg_tmp"
  fi
}
trap stop_private_pg EXIT
# start_private_pg: a throw-away PostgreSQL with pg_stat_statements preloaded;
# sets private_url, or returns 1 when it cannot be had here.
start_private_pg() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] && [ -f "$(dirname "$pg_bin")/lib/pg_stat_statements.so" ] || return 1
  pg_tmp=$(mktemp -d /tmp/attune-bench-pg.XXXXXX)
  chmod 755 "$pg_tmp"
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$pg_tmp" || return 1
    pg_as=(runuser -u postgres --)
  fi
  "${pg_as[@]}" "$pg_bin/initdb" -N -D "$pg_tmp/data" -U postgres --auth=trust >"$ITEM_DIR/initdb.log" 2>&1 || return 1
  local port
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)))
  "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_tmp/data" -w -l "$pg_tmp/pg.log" \
    -o "-p $port -k $pg_tmp -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements" start >/dev/null || return 1
  private_url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
}

db_flag=()
if start_private_pg; then
  db_flag=(-db "$private_url")
  bench_log "06-scale: private PostgreSQL with pg_stat_statements at $private_url"
else
  bench_log "06-scale: no private PostgreSQL (need root or the postgres user, initdb and pg_stat_statements): falling back to pg_stat_database"
fi
{ echo "ulimit -n $(ulimit -n), ulimit -u $(ulimit -u), pid_max $(cat /proc/sys/kernel/pid_max)"; } >"$ITEM_DIR/limits.txt"

counts=$(bench_n 100,500,1000 20)
window=$(bench_n 60s 5s)
settle=$(bench_n 3s 1s)
bench_agentbench scale -counts "$counts" -window "$window" -settle "$settle" "${db_flag[@]}"

exact=$(bench_sum statements_exact)
IFS=, read -r -a ns <<<"$counts"
for n in "${ns[@]}"; do
  p=n${n}_
  run=$(bench_sum "${p}all_running_ms")
  if [ "$n" = 500 ]; then bar="≤ 10000 ms"; verdict=$(bench_verdict "$run" '<=' 10000); ratio=$(bench_ratio "$run" 10000)
  else bar="— (reported; the bar is at 500)"; verdict="—"; ratio="—"; fi
  floor=$(bench_sum "${p}floor_ms")
  bench_row "$n sensors: agent exec → all running" "$bar" \
    "$(bench_fmt "$run" 0) ms ($(bench_fmt "$(bench_sum "${p}from_ready_ms")" 0) ms after the ready line; agent CPU meanwhile $(bench_fmt "$(bench_sum "${p}startup_cpu_ms")" 0) ms)" "$ratio" "$verdict"
  ready=$(bench_sum "${p}from_ready_ms")
  bench_row "diagnostic: $n sensors, agent (from its ready line) / floor (the harness starting the same $n scripts at once)" "— (reported)" \
    "$(bench_fmt "$ready" 0) ms vs $(bench_fmt "$floor" 0) ms" "$(bench_ratio "$ready" "$floor")" "—"
done
for n in "${ns[@]}"; do
  p=n${n}_
  hwm=$(bench_sum "${p}hwm_kb")
  bytes=$((hwm * 1024))
  if [ "$n" = 500 ]; then bar="≤ 25 MB (25,000,000 B)"; verdict=$(bench_verdict "$bytes" '<=' 25000000); ratio=$(bench_ratio "$bytes" 25000000)
  elif [ "$n" = 1000 ]; then bar="≤ 40 MB (40,000,000 B)"; verdict=$(bench_verdict "$bytes" '<=' 40000000); ratio=$(bench_ratio "$bytes" 40000000)
  else bar="— (reported; the bars are at 500 and 1000)"; verdict="—"; ratio="—"; fi
  bench_row "$n sensors: agent peak RSS (VmHWM)" "$bar" \
    "$(awk -v b="$bytes" 'BEGIN { printf "%.2f MB (%.2f MiB)\n", b / 1e6, b / 1048576 }'); idle VmRSS $(awk -v k="$(bench_sum "${p}rss_kb")" 'BEGIN { printf "%.2f MB\n", k * 1024 / 1e6 }'); live heap after GC $(bench_sum "${p}live_heap_mb") MiB" \
    "$ratio" "$verdict"
done
for n in "${ns[@]}"; do
  cpu=$(bench_sum "n${n}_cpu_pct")
  bench_row "$n sensors: agent CPU over the idle window" "≤ 2 % of one core" "$(bench_fmt "$cpu" 3) % (window $window)" \
    "$(bench_ratio "$cpu" 2)" "$(bench_verdict "$cpu" '<=' 2)"
done
for n in "${ns[@]}"; do
  p=n${n}_
  per=$(bench_sum "${p}statements_per_pass")
  if [ "$exact" = 1 ]; then verdict=$(bench_verdict "$per" '<=' 3); how="pg_stat_statements"
  else verdict="—"; how="estimate from pg_stat_database"; fi
  bench_row "$n sensors: statements per reconcile pass" "3 (by design), not growing with N" \
    "$(bench_fmt "$per" 3) over $(bench_sum "${p}passes") passes ($how); $(bench_fmt "$(bench_sum "${p}rows_per_pass")" 0) rows per pass; other statements: $(bench_sum "${p}other_statements")" \
    "$(bench_ratio "$per" 3)" "$verdict"
done
for n in "${ns[@]}"; do
  p=n${n}_
  bench_row "diagnostic: $n sensors, sensor_process rows saying running after the window" "— (check: $n)" \
    "$(bench_sum "${p}process_rows_running") of $n; \"sensor_process update failed\" log lines: $(bench_sum "${p}process_record_failures")" "—" "—"
done
if [ ${#ns[@]} -ge 2 ] && [ "$exact" = 1 ]; then
  first=$(bench_sum "n${ns[0]}_statements_per_pass")
  last=$(bench_sum "n${ns[-1]}_statements_per_pass")
  growth=$(awk -v a="$first" -v b="$last" 'BEGIN { printf "%.3f\n", b - a }')
  bench_row "statements per pass, ${ns[-1]} sensors minus ${ns[0]}" "≤ 0 (must not grow with N)" "$growth" "—" "$(bench_verdict "$growth" '<=' 0)"
fi

{
  printf 'Per sensor count (window %s; statements counted with %s):\n\n' "$window" "$([ "$exact" = 1 ] && echo pg_stat_statements || echo 'pg_stat_database (estimate)')"
  printf '| sensors | all running (ms) | floor (ms) | after ready (ms) | start-up CPU (ms) | VmHWM (kB) | VmRSS (kB) | anonymous (kB) | live heap (MiB) | largest heap (MiB) | stacks (MiB) | threads | open fds | idle CPU %% | passes | statements/pass | rows/pass | heartbeat statements |\n'
  printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  awk -F'\t' 'NR > 1 { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $15, $3, $16, $4, $5, $17, $18, $19, $20, $6, $7, $8, $9, $10, $11, $12 }' "$ITEM_DIR/raw/scale.tsv"
  printf '\n"floor" is the harness starting the same scripts at once itself (fork/exec from Go, pipes, own process groups; no token, database or log files). Live and largest heap come from the agent run with `GODEBUG=gctrace=1` (a line per collection on stderr, nothing else changes): the live heap marked by the last collection before the end of the window, and the largest heap at the start of any collection.\n'
  printf '\nLimits: %s.\n' "$(cat "$ITEM_DIR/limits.txt")"
} >"$ITEM_DIR/notes.md"

awk -F'\t' 'NR > 1 { printf "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\n", $1, $4 * 1024 / 1e6, $5 * 1024 / 1e6, $2 / 1000, $15 / 1000, $18 * 1048576 / 1e6 }' "$ITEM_DIR/raw/scale.tsv" >"$ITEM_DIR/plot.dat"
cat >"$ITEM_DIR/plot.gp" <<'EOF'
set output outfile
set title "Item 6: agent memory and start-up against the number of sensors"
set xlabel "native sensors"
set ylabel "agent memory (MB = 10^6 B)"
set y2label "agent exec -> all running (s)"
set yrange [0:*]
set y2range [0:*]
set ytics nomirror
set y2tics
set grid ytics
set key top left
set arrow from graph 0, first 25 to graph 1, first 25 nohead dt 2 lc rgb "red"
set label "RSS bar 25 MB (at 500)" at graph 0.02, first 25 offset 0,0.7 tc rgb "red"
plot "plot.dat" using 1:2 with linespoints pt 7 ps 1.5 lw 2 lc rgb "#d95f02" title "VmHWM (peak RSS)", \
     "" using 1:3 with linespoints pt 6 lw 1 lc rgb "#7570b3" title "VmRSS at idle", \
     "" using 1:6 with linespoints pt 4 lw 2 lc rgb "#1b9e77" title "live heap after GC", \
     "" using 1:4 axes x1y2 with linespoints pt 5 lw 2 dt 3 lc rgb "black" title "all running (s, right axis)", \
     "" using 1:5 axes x1y2 with linespoints pt 3 lw 1 dt 3 lc rgb "gray50" title "floor: harness starts them (s, right axis)"
EOF
