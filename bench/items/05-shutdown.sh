#!/usr/bin/env bash
# Item 5: shutdown of N SIGTERM-ignoring sensors (bench/agentbench shutdown).
set -euo pipefail
. "$BENCH_REPO/bench/lib.sh"

cat >"$ITEM_DIR/method.md" <<'EOF'
`bench/agentbench shutdown` seeds a fresh database (current schema) with N
native sensors whose entrypoint is `#!/bin/sh`, `trap '' TERM`, a mark file
written with a shell redirection, then `exec sleep`: one process per sensor,
and since an ignored signal stays ignored across exec, a `sleep` that ignores
SIGTERM (the harness checks each one's `SigIgn` mask in `/proc/<pid>/status`
before the stop). `sensor.max_concurrent_sensors` is raised to N + 50; the
grace period (5 s) and `sensor.shutdown_timeout` (30 s) keep their defaults.
The agent runs against a fresh vhost and the stand-in API. Once every sensor
has written its mark and the agent has logged every start, the harness sends
SIGTERM to the agent and times until it has reaped the agent (it is the
agent's parent, so the exit instant is exact to scheduling). Right then it
scans `/proc` for any process carrying this run's API URL and a sensor ref
in its environment: the processes left behind. The trial is repeated with a
fresh agent each time.
EOF

sensors=$(bench_n 100 20)
trials=$(bench_n 3 1)
bench_agentbench shutdown -sensors "$sensors" -trials "$trials"

med=$(bench_sum shutdown_ms_p50)
mn=$(bench_sum shutdown_ms_min)
mx=$(bench_sum shutdown_ms_max)
left=$(bench_sum left_max)
bench_row "SIGTERM → agent exited, $sensors sensors ignoring SIGTERM (worst of $trials)" "≤ 7000 ms (grace 5 s + 2 s)" \
  "max $(bench_fmt "$mx") ms (median $(bench_fmt "$med"), min $(bench_fmt "$mn"))" \
  "$(bench_ratio "$mx" 7000)" "$(bench_verdict "$mx" '<=' 7000)"
bench_row "sensor processes left when the agent exited (worst of $trials)" "0" "$left" "—" "$(bench_verdict "$left" '<=' 0)"
bench_row "sensors that ignored SIGTERM (SigIgn checked before the stop; fewest of $trials)" "— (check: all)" \
  "$(bench_sum ignoring_term_min) of $sensors" "—" "—"
bench_row "sensors the agent had to SIGKILL after the grace (fewest of $trials)" "— (reported)" \
  "$(bench_sum killed_after_grace_min) of $sensors" "—" "—"
oneby=$((sensors * 5000))
bench_row "contrast: stopping them one by one (the reference), $sensors × 5 s" "— (reported)" \
  "$oneby ms" "$(bench_ratio "$oneby" "$med") × the agent's median" "—"

printf 'Agent exit code: %s (worst of %s trials).\n' "$(bench_sum exit_code_max)" "$trials" >"$ITEM_DIR/notes.md"
