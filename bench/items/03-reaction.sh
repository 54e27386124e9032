#!/usr/bin/env bash
# Item 3: reaction latency, rule enabled -> sensor started. Pending: needs the
# running agent (service and supervisor integration).
set -euo pipefail
. "$BENCH_REPO/bench/lib.sh"

cat >"$ITEM_DIR/method.md" <<'EOF2'
Planned: a fresh database and vhost (`ATTUNE_TEST_DATABASE_URL`,
`ATTUNE_TEST_AMQP_URL` from `scripts/with-services.sh`), the agent started
from `$BENCH_AGENT` with a pack whose sensor writes a timestamp when it starts;
then, ≥ 30 trials: enable a rule (row update plus the reference's
rule-lifecycle message) and time until the sensor's process is running.
p50/p95 reported; the same with the broker stopped (the agent's reconcile
pass alone must pick the change up). Bars: the issue's, unchanged.
EOF2
bench_pending "needs the whole agent running against the services; left for the follow-up on the integrated agent"
