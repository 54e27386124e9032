#!/usr/bin/env bash
# Item 4: crash handling, sensor exit -> agent notices. Pending: needs the
# running agent (service and supervisor integration).
set -euo pipefail
. "$BENCH_REPO/bench/lib.sh"

cat >"$ITEM_DIR/method.md" <<'EOF2'
Planned: the agent supervises a sensor that exits on a signal from the
harness; the time from the sensor's exit (its own last timestamp) to the
agent's log line or status-file update for that exit, ≥ 30 trials. Bar:
p50 ≤ 50 ms.
EOF2
bench_pending "needs the whole agent running against the services; left for the follow-up on the integrated agent"
