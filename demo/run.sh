#!/usr/bin/env bash
# run.sh: the attune-sensor-agent demo (`make demo`, `make demo-check`).
#
#   demo/run.sh           run until Ctrl-C, printing every event that arrives
#   demo/run.sh --check   run until 2 events arrived, stop, verify, exit 0/1
#
# It creates a throw-away database (testdata/schema/current.sql plus
# demo/seed.sql: pack `demo`, sensor demo.ticker, trigger demo.tick, rule
# demo.on_tick) and a throw-away RabbitMQ vhost (the default vhost when
# rabbitmqctl cannot be used), starts demo/fake_api.py as the Attune API,
# builds the agent and runs it with pretty logs against all of that. The
# agent registers a sensor worker, asks the API for a sensor token and starts
# demo/packs/demo/sensors/ticker.py, which posts an event every few seconds.
#
# Ctrl-C (or SIGTERM) stops everything: the agent gets one SIGTERM and stops
# its sensor (a second Ctrl-C is forwarded, which makes the agent kill its
# sensors at once), then the API is stopped, the database dropped, the vhost
# deleted and the work directory removed. Should the script itself be killed
# with SIGKILL, leftovers are named attune_demo_* / attune-demo-*.
#
# Environment (scripts/with-services.sh sets the first three, as for make test):
#   ATTUNE_TEST_DATABASE_URL  admin URL of PostgreSQL (default the local one)
#   ATTUNE_TEST_AMQP_URL      AMQP URL of RabbitMQ's default vhost (default local)
#   ATTUNE_TEST_RABBITMQCTL   rabbitmqctl command (default rabbitmqctl)
#   AGENT_BIN                 use this agent binary instead of building one
#   DEMO_CHECK_TIMEOUT        seconds --check waits for its events (default 90)
#   DEMO_INTERVAL             seconds between two ticks (default 3; 1 with --check)
#
# Needs bash, python3, psql and (without AGENT_BIN) go.
set -euo pipefail

usage() { sed -n '3,4p' "$0" | sed 's/^# *//'; }
mode=interactive
case "${1:-}" in
"") ;;
--check) mode=check ;;
-h | --help) usage && exit 0 ;;
*) usage >&2 && exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
admin_url=${ATTUNE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
amqp_base=${ATTUNE_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
read -r -a rmqctl <<<"${ATTUNE_TEST_RABBITMQCTL:-rabbitmqctl}"
check_timeout=${DEMO_CHECK_TIMEOUT:-90}
want_events=2
if [ "$mode" = check ]; then interval=${DEMO_INTERVAL:-1}; else interval=${DEMO_INTERVAL:-3}; fi

say() { printf '[demo] %s\n' "$*"; }
now() { date +%s.%N; }
since() { python3 -c 'import sys; print("%.1fs" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$(now)"; }

for tool in python3 psql; do
	command -v "$tool" >/dev/null || { say "$tool is required and not on PATH"; exit 1; }
done
if [ -z "${AGENT_BIN:-}" ] && ! command -v go >/dev/null; then
	say "go is required to build the agent (or set AGENT_BIN)"
	exit 1
fi

started=$(now)
suffix=$(python3 -c 'import secrets; print(secrets.token_hex(4))')
db=attune_demo_$suffix
vhost=attune-demo-$suffix
worker=sensor-demo-$suffix
work=$(mktemp -d /tmp/attune-demo.XXXXXX)
agent_pid="" api_pid="" agent_rc="" db_created="" vhost_created=""

# --- teardown ----------------------------------------------------------------

# stop_agent sends the agent one SIGTERM and waits for it; a further SIGINT or
# SIGTERM meanwhile is forwarded (the agent's hard stop), and a watchdog
# SIGKILLs it if it is still there after its own shutdown bound plus 15 s.
stop_agent() {
	[ -n "$agent_pid" ] && [ -z "$agent_rc" ] || return 0
	trap 'kill -TERM "$agent_pid" 2>/dev/null || true' INT TERM
	kill -TERM "$agent_pid" 2>/dev/null || true
	set -m
	(sleep 45 && kill -KILL "$agent_pid") >/dev/null 2>&1 &
	local dog=$!
	set +m
	local rc
	while :; do
		rc=0
		wait "$agent_pid" 2>/dev/null || rc=$?
		# wait returns >128 when a trapped signal interrupts it; the agent is
		# gone only once kill -0 fails.
		kill -0 "$agent_pid" 2>/dev/null || break
	done
	kill -- -"$dog" 2>/dev/null || true
	agent_rc=$rc
}

# cleanup runs on every exit: agent, API, database, vhost, work directory.
cleanup() {
	local rc=$?
	set +e
	trap - EXIT
	stop_agent
	trap '' INT TERM
	if [ -n "$agent_rc" ] && [ "$agent_rc" != 0 ]; then
		say "agent exited with code $agent_rc"
	fi
	if [ -n "$api_pid" ]; then
		kill -TERM "$api_pid" 2>/dev/null
		wait "$api_pid" 2>/dev/null
	fi
	if [ -n "$db_created" ] && ! psql "$admin_url" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; then
		say "could not drop database $db"
		rc=1
	fi
	if [ -n "$vhost_created" ] && ! "${rmqctl[@]}" -q delete_vhost "$vhost" >/dev/null 2>&1; then
		say "could not delete vhost $vhost"
		rc=1
	fi
	rm -rf "$work"
	local gone=()
	[ -n "$agent_pid" ] && gone+=("agent")
	[ -n "$api_pid" ] && gone+=("API")
	[ -n "$db_created" ] && gone+=("database $db")
	[ -n "$vhost_created" ] && gone+=("vhost $vhost")
	gone+=("$work")
	say "stopped and removed: $(IFS=,; echo "${gone[*]}" | sed 's/,/, /g')"
	exit "$rc"
}
trap cleanup EXIT

# interrupted is the first SIGINT/SIGTERM: in the interactive demo it is the
# way to stop (exit 0), for --check it means the check did not finish.
interrupted() {
	echo
	if [ "$mode" = check ]; then
		say "CHECK FAILED: interrupted by SIG$1 before $want_events events arrived"
		exit 1
	fi
	say "SIG$1: stopping"
	exit 0
}
trap 'interrupted INT' INT
trap 'interrupted TERM' TERM

# fail ends the run with one clear reason and, for --check, the tail of each log.
fail() {
	if [ "$mode" = check ]; then say "CHECK FAILED: $*"; else say "FAILED: $*"; fi
	for f in "$work/api.log" "$work/agent.log"; do
		[ -s "$f" ] && { say "--- last lines of $(basename "$f")"; tail -n 25 "$f"; }
	done
	exit 1
}

# --- database, broker, API -----------------------------------------------------

with_path() { python3 -c 'import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + u.quote(sys.argv[2], safe=""))))' "$1" "$2"; }

psql "$admin_url" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null ||
	fail "cannot create database $db (is PostgreSQL up? ATTUNE_TEST_DATABASE_URL, or run through make demo)"
db_created=1
db_url=$(with_path "$admin_url" "$db")
psql "$db_url" -q -v ON_ERROR_STOP=1 -f "$repo/testdata/schema/current.sql" >/dev/null ||
	fail "cannot load testdata/schema/current.sql into $db"
psql "$db_url" -q -v ON_ERROR_STOP=1 -v sensor_config="{\"interval_seconds\": $interval}" -f "$repo/demo/seed.sql" >/dev/null ||
	fail "cannot load demo/seed.sql into $db"

# The newest schema runs sensors only under a workload lease, pinned to the
# pack's active release: publish demo/packs/demo as release 1.0.0 the way
# Attune lays it out ({packs}/.releases/sha256/{digest}/pack and pack.tar.gz).
packs=$work/packs
mkdir -p "$packs"
cp -a "$repo/demo/packs/demo" "$packs/demo"
tar -C "$packs/demo" -czf "$work/pack.tar.gz" .
digest=$(sha256sum "$work/pack.tar.gz" | cut -d' ' -f1)
release_dir=$packs/.releases/sha256/$digest
mkdir -p "$release_dir"
mv "$work/pack.tar.gz" "$release_dir/pack.tar.gz"
cp -a "$packs/demo" "$release_dir/pack"
psql "$db_url" -q -v ON_ERROR_STOP=1 -v digest="$digest" -v size="$(stat -c %s "$release_dir/pack.tar.gz")" >/dev/null <<'SQL' ||
SET search_path TO attune, public;
WITH r AS (
  INSERT INTO pack_release (pack, pack_ref, version, digest, archive_path, content_path, archive_size, manifest)
  SELECT id, ref, '1.0.0', :'digest', '.releases/sha256/' || :'digest' || '/pack.tar.gz',
         '.releases/sha256/' || :'digest' || '/pack', :'size'::bigint, '{}'::jsonb
  FROM pack WHERE ref = 'demo' RETURNING id, pack)
UPDATE pack SET active_release = r.id FROM r WHERE pack.id = r.pack;
SQL
	fail "cannot publish the demo pack release into $db"

amqp_user=$(python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).username or "guest")' "$amqp_base")
if "${rmqctl[@]}" -q add_vhost "$vhost" >/dev/null 2>&1; then
	vhost_created=1
	"${rmqctl[@]}" -q set_permissions -p "$vhost" "$amqp_user" '.*' '.*' '.*' >/dev/null
	amqp_url=$(with_path "$amqp_base" "$vhost")
else
	vhost="(default)"
	amqp_url=$amqp_base
	say "rabbitmqctl could not add a vhost; using the broker's default vhost"
fi

set -m
if [ "$mode" = check ]; then
	python3 -u "$repo/demo/fake_api.py" --port-file "$work/api.port" --events-file "$work/events.jsonl" >"$work/api.log" 2>&1 &
else
	python3 -u "$repo/demo/fake_api.py" --port-file "$work/api.port" --events-file "$work/events.jsonl" &
fi
api_pid=$!
set +m
for _ in $(seq 100); do
	[ -s "$work/api.port" ] && break
	kill -0 "$api_pid" 2>/dev/null || break
	sleep 0.1
done
[ -s "$work/api.port" ] || fail "the demo API did not start (python3 $repo/demo/fake_api.py)"
api_url=http://127.0.0.1:$(cat "$work/api.port")

# --- agent -----------------------------------------------------------------------

bin=${AGENT_BIN:-$work/attune-sensor-agent}
if [ -z "${AGENT_BIN:-}" ]; then
	say "building the agent"
	version=$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
	commit=$(git -C "$repo" describe --always --dirty --abbrev=40 --match=NONE 2>/dev/null || true)
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version -X main.buildCommit=$commit" -o "$bin" .) ||
		fail "go build of the agent failed"
fi

say "database $db, vhost $vhost, api $api_url, worker $worker, work dir $work"
agent_env=(
	"PATH=$PATH" "HOME=${HOME:-/root}" "LANG=C.UTF-8"
	"ATTUNE__DATABASE__URL=$db_url"
	"ATTUNE__MESSAGE_QUEUE__URL=$amqp_url" "ATTUNE_MQ_URL=$amqp_url"
	"ATTUNE__SECURITY__JWT_SECRET=demo-secret-$suffix"
	"ATTUNE_API_URL=$api_url"
	"ATTUNE_PACKS_BASE_DIR=$packs"
	"ATTUNE__RUNTIME_ENVS_DIR=$work/runtime_envs"
	"ATTUNE__ARTIFACTS_DIR=$work/artifacts"
	"ATTUNE__SENSOR__WORKER_NAME=$worker"
	"ATTUNE__SENSOR__HEARTBEAT_INTERVAL=5"
	"ATTUNE__SENSOR__SHUTDOWN_TIMEOUT=10"
	"ATTUNE_SENSOR_STATUS_FILE=$work/status.json"
	"ATTUNE__LOG__FORMAT=pretty"
	"ATTUNE__LOG__MIRROR_RUNTIME_STDERR_TO_STDIO=true"
)
agent_started=$(now)
set -m
if [ "$mode" = check ]; then
	(cd "$work" && exec env -i "${agent_env[@]}" "$bin") >"$work/agent.log" 2>&1 &
else
	(cd "$work" && exec env -i "${agent_env[@]}" "$bin") &
	say "agent started (pid $!); events appear below as [api] lines. Ctrl-C stops everything."
fi
agent_pid=$!
set +m

# events counts what the API accepted so far.
events() { if [ -f "$work/events.jsonl" ]; then wc -l <"$work/events.jsonl"; else echo 0; fi; }

if [ "$mode" = interactive ]; then
	first=""
	while kill -0 "$agent_pid" 2>/dev/null; do
		if [ -z "$first" ] && [ "$(events)" -gt 0 ]; then
			first=1
			say "first event $(since "$agent_started") after the agent started ($(since "$started") after make demo)"
		fi
		sleep 0.2
	done
	wait "$agent_pid" || agent_rc=$?
	agent_rc=${agent_rc:-0}
	say "the agent stopped by itself (exit code $agent_rc)"
	exit 1
fi

# --check: wait for the events, stop the agent, verify it stopped cleanly.
deadline=$((SECONDS + check_timeout))
first=""
while [ "$(events)" -lt "$want_events" ]; do
	kill -0 "$agent_pid" 2>/dev/null || fail "the agent exited before $want_events events arrived"
	[ "$SECONDS" -lt "$deadline" ] || fail "only $(events) of $want_events events arrived within ${check_timeout}s"
	if [ -z "$first" ] && [ "$(events)" -gt 0 ]; then first=$(since "$agent_started"); fi
	sleep 0.2
done
[ -n "$first" ] || first=$(since "$agent_started")
say "$want_events events arrived (first $first after the agent started)"
stop_agent
trap 'interrupted INT' INT
trap 'interrupted TERM' TERM
[ "$agent_rc" = 0 ] || fail "the agent exited with code $agent_rc after SIGTERM, want 0"
grep -q "Attune Sensor Agent shutdown complete" "$work/agent.log" || fail "no 'shutdown complete' line in the agent log"
status=$(psql "$db_url" -Atq -c "SELECT status FROM attune.worker WHERE name = '$worker'")
[ "$status" = inactive ] || fail "worker row $worker is '$status' after shutdown, want inactive"
grep -q '"trigger_ref": "demo.tick"' "$work/events.jsonl" || fail "the events are not demo.tick events"
say "check passed: $want_events events, clean agent shutdown, worker row inactive, total $(since "$started")"
