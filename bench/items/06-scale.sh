#!/usr/bin/env bash
# Item 6: scale to 100/500/1000 native sensors. Pending: needs the running
# agent (service and supervisor integration).
set -euo pipefail
. "$BENCH_REPO/bench/lib.sh"

cat >"$ITEM_DIR/method.md" <<'EOF2'
Planned: 100, 500 and 1000 native sensors with one active rule each; time from
agent start to all running, the agent's peak RSS (`/proc/<pid>/status`
VmHWM), idle CPU over a minute (`/proc/<pid>/stat`), and statements per
reconcile pass (a counting proxy or pg_stat_statements when preloaded). A
plot of the four against the sensor count.
EOF2
bench_pending "needs the whole agent running against the services; left for the follow-up on the integrated agent"
