#!/usr/bin/env bash
# with-services.sh CMD...: run CMD with PostgreSQL and RabbitMQ available to the tests.
#
# For each service, in order: use the URL the caller exported
# (ATTUNE_TEST_DATABASE_URL / ATTUNE_TEST_AMQP_URL); else the local service on its
# standard port when it answers; else a private throw-away instance started from the
# locally installed postgresql / rabbitmq-server packages (temp directory, free port,
# stopped on exit); else fail with one line telling how to get it.
set -euo pipefail

tmp=$(mktemp -d /tmp/attune-test-services.XXXXXX)
chmod 755 "$tmp"
export ATTUNE_TEST_SERVICES_DIR="$tmp" # private instances live here; removed on exit
pids_to_stop=()
cleanup() {
  local rc=$?
  if [ -n "${PRIVATE_PGDATA:-}" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PRIVATE_PGDATA" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -n "${PRIVATE_RMQ_NODE:-}" ]; then
    rabbitmqctl -n "$PRIVATE_RMQ_NODE" stop >/dev/null 2>&1 || true
  fi
  # A stopping server may still write a file or two: retry once.
  rm -rf "$tmp" 2>/dev/null || { sleep 2; rm -rf "$tmp"; }
  exit $rc
}
trap cleanup EXIT INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A port the kernel picks; without python3, a random one checked to be unused.
free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null && return
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    port_open "$p" || { echo "$p"; return; }
  done
  echo "with-services: found no free port" >&2
  return 1
}

# --- PostgreSQL -------------------------------------------------------------
if [ -z "${ATTUNE_TEST_DATABASE_URL:-}" ]; then
  if port_open 5432; then
    export ATTUNE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
  else
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
      echo "with-services: PostgreSQL is not reachable on 127.0.0.1:5432 and not installed; install the 'postgresql' package or set ATTUNE_TEST_DATABASE_URL" >&2
      exit 1
    fi
    PRIVATE_PGDATA="$tmp/pgdata"; port=$(free_port)
    mkdir -p "$PRIVATE_PGDATA" && chown postgres "$PRIVATE_PGDATA" "$tmp"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$PRIVATE_PGDATA" -U postgres --auth=trust >/dev/null
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PRIVATE_PGDATA" -w -l "$tmp/pg.log" \
      -o "-p $port -k $tmp -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
    export ATTUNE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
    echo "with-services: started a private PostgreSQL on port $port" >&2
  fi
fi

# --- RabbitMQ ---------------------------------------------------------------
if [ -z "${ATTUNE_TEST_AMQP_URL:-}" ]; then
  if port_open 5672; then
    export ATTUNE_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/"
  else
    if ! command -v rabbitmq-server >/dev/null; then
      echo "with-services: RabbitMQ is not reachable on 127.0.0.1:5672 and not installed; install the 'rabbitmq-server' package or set ATTUNE_TEST_AMQP_URL" >&2
      exit 1
    fi
    port=$(free_port); dist=$(free_port)
    PRIVATE_RMQ_NODE="attune-test-$$@localhost"
    export RABBITMQ_NODENAME="$PRIVATE_RMQ_NODE" RABBITMQ_NODE_PORT="$port" RABBITMQ_DIST_PORT="$dist" \
      RABBITMQ_MNESIA_BASE="$tmp/rmq/mnesia" RABBITMQ_LOG_BASE="$tmp/rmq/log" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$tmp/rmq/plugins" RABBITMQ_PID_FILE="$tmp/rmq/pid" \
      RABBITMQ_CONFIG_FILE="$tmp/rmq/rabbitmq.conf"
    mkdir -p "$tmp/rmq" && echo "[]." > "$tmp/rmq/plugins"
    # Our own config: the system one may pin the listener to 5672.
    echo "listeners.tcp.local = 127.0.0.1:$port" > "$tmp/rmq/rabbitmq.conf"
    # Debian's wrapper runs the server as the rabbitmq user: it must own its dirs.
    if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq "$tmp/rmq"; fi
    rabbitmq-server -detached >/dev/null 2>&1
    up=0
    for _ in $(seq 1 24); do
      if rabbitmqctl -q -n "$PRIVATE_RMQ_NODE" await_startup --timeout 5 >/dev/null 2>&1 &&
         rabbitmqctl -q -n "$PRIVATE_RMQ_NODE" list_vhosts >/dev/null 2>&1; then up=1; break; fi
      sleep 1
    done
    if [ "$up" != 1 ]; then
      echo "with-services: the private RabbitMQ did not start; its logs:" >&2
      tail -n 30 "$tmp"/rmq/log/*.log >&2 2>/dev/null || true
      exit 1
    fi
    unset RABBITMQ_NODENAME RABBITMQ_NODE_PORT RABBITMQ_DIST_PORT
    export ATTUNE_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:$port/"
    export ATTUNE_TEST_RABBITMQCTL="rabbitmqctl -n $PRIVATE_RMQ_NODE"
    echo "with-services: started a private RabbitMQ on port $port" >&2
  fi
fi

"$@"
