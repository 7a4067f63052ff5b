#!/usr/bin/env bash
# The Redis, NATS, PostgreSQL and MariaDB servers the tests need, for scripts/test.sh (which sources
# this file) or alone.
#
# - Installs the Debian packages `redis-server`, `nats-server`, `postgresql` and `mariadb-server` with
#   apt when their binaries are missing (some tests also start private servers of their own, so the
#   binaries are needed even when shared servers run). apt needs root.
# - Uses the shared servers on 127.0.0.1:6379, :4222, :5432 (trust auth) and :3306 (root, empty
#   password) when they answer; otherwise (or always, with TEST_FORCE_OWN_SERVICES=1) starts its own on
#   free loopback ports: Redis without persistence, NATS with JetStream in a temporary store, a
#   PostgreSQL cluster (initdb, trust auth) and a MariaDB data dir (root without a password), each in a
#   temporary directory. Already-set VESTNIK_TEST_* variables are kept as they are.
# - Exports VESTNIK_TEST_REDIS_URL, VESTNIK_TEST_NATS_URL, VESTNIK_TEST_POSTGRES and
#   VESTNIK_TEST_MYSQL for every test layer, and VESTNIK_REDIS_SERVER / VESTNIK_NATS_SERVER (the
#   binaries, for the tests' private servers).
# - stop_services stops only what start_services started.
#
# Alone: scripts/services.sh run -- COMMAND...   (starts what is missing, runs COMMAND, stops)
# Never stops or restarts a server it did not start.

SERVICES_PIDS=()
SERVICES_DIRS=()

# apt_install PACKAGE...: installs Debian packages, updating the package lists once if needed.
apt_install() {
  echo "installing: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "$@" >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

# Where Debian puts nats-server (often not on a user's PATH).
SERVICES_SBIN=${SERVICES_SBIN:-/usr/sbin}

# find_binary NAME: its path on PATH or in $SERVICES_SBIN; prints nothing when absent.
find_binary() {
  command -v "$1" 2>/dev/null || { [ -x "$SERVICES_SBIN/$1" ] && echo "$SERVICES_SBIN/$1"; } || true
}

# listening PORT: whether something accepts connections on 127.0.0.1:PORT.
listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_listening PORT PID NAME LOG: up to 10 s for PORT, failing early when PID exits.
wait_listening() {
  local port=$1 pid=$2 name=$3 log=$4
  for _ in $(seq 1 100); do
    listening "$port" && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "services: $name exited" >&2; return 1; }
    sleep 0.1
  done
  cat "$log" >&2
  echo "services: $name is not listening on 127.0.0.1:$port after 10 s" >&2
  return 1
}

# pg_bin: the newest PostgreSQL's binary directory (Debian keeps initdb and pg_ctl off the PATH).
pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
  true
}

ensure_service_binaries() {
  local need=()
  [ -n "$(find_binary redis-server)" ] || need+=(redis-server)
  [ -n "$(find_binary nats-server)" ] || need+=(nats-server)
  [ -n "$(pg_bin)" ] || need+=(postgresql)
  [ -n "$(find_binary mariadbd)" ] || need+=(mariadb-server)
  if [ ${#need[@]} -gt 0 ]; then
    apt_install "${need[@]}"
    # Debian's nats-server and mariadbd land in /usr/sbin.
    SERVICES_SBIN=/usr/sbin
  fi
  VESTNIK_REDIS_SERVER=$(find_binary redis-server)
  VESTNIK_NATS_SERVER=$(find_binary nats-server)
  [ -n "$VESTNIK_REDIS_SERVER" ] || { echo "services: no redis-server after installing it" >&2; return 1; }
  [ -n "$VESTNIK_NATS_SERVER" ] || { echo "services: no nats-server after installing it" >&2; return 1; }
  [ -n "$(pg_bin)" ] || { echo "services: no PostgreSQL after installing it" >&2; return 1; }
  [ -n "$(find_binary mariadbd)" ] || { echo "services: no mariadbd after installing it" >&2; return 1; }
  export VESTNIK_REDIS_SERVER VESTNIK_NATS_SERVER
}

# AS_DB_USER: the prefix that runs a database command as the `postgres` system user when we are
# root (initdb and the servers refuse root), else nothing. An array rather than a function, so that
# `$!` of a backgrounded server is runuser's pid (which passes SIGTERM on), not a subshell's.
AS_DB_USER=()
if [ "$(id -u)" = 0 ]; then AS_DB_USER=(runuser -u postgres --); fi

# start_own_postgres: a throw-away cluster with trust auth on a free port; sets VESTNIK_TEST_POSTGRES.
start_own_postgres() {
  local bin dir port
  bin=$(pg_bin)
  port=$(free_port) || return 1
  dir=$(mktemp -d)
  SERVICES_DIRS+=("$dir")
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  "${AS_DB_USER[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; echo "services: initdb failed" >&2; return 1; }
  "${AS_DB_USER[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 \
    -c fsync=off >"$dir/postgres.log" 2>&1 &
  SERVICES_PIDS+=($!)
  wait_listening "$port" "$!" postgres "$dir/postgres.log" || return 1
  VESTNIK_TEST_POSTGRES=postgres://postgres@127.0.0.1:$port
  echo "services: started postgres (pid $!) on 127.0.0.1:$port"
}

# start_own_mariadb: a throw-away data dir (root without a password) on a free port; sets
# VESTNIK_TEST_MYSQL.
start_own_mariadb() {
  local dir port user
  port=$(free_port) || return 1
  dir=$(mktemp -d)
  SERVICES_DIRS+=("$dir")
  user=$(id -un)
  [ "$(id -u)" = 0 ] && { user=postgres; chown postgres "$dir"; }
  "${AS_DB_USER[@]}" mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
    --skip-test-db >"$dir/install.log" 2>&1 \
    || { cat "$dir/install.log" >&2; echo "services: mariadb-install-db failed" >&2; return 1; }
  "${AS_DB_USER[@]}" "$(find_binary mariadbd)" --no-defaults --datadir="$dir/data" --port="$port" \
    --bind-address=127.0.0.1 --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
    --skip-log-bin --innodb-flush-log-at-trx-commit=0 >"$dir/mariadb.log" 2>&1 &
  SERVICES_PIDS+=($!)
  wait_listening "$port" "$!" mariadbd "$dir/mariadb.log" || return 1
  VESTNIK_TEST_MYSQL=mysql://root@127.0.0.1:$port
  echo "services: started mariadbd (pid $!, as $user) on 127.0.0.1:$port"
}

start_services() {
  ensure_service_binaries || return 1
  local own=${TEST_FORCE_OWN_SERVICES:-0} dir port
  if [ -z "${VESTNIK_TEST_REDIS_URL:-}" ]; then
    if [ "$own" != 1 ] && listening 6379; then
      VESTNIK_TEST_REDIS_URL=redis://127.0.0.1:6379
      echo "services: using the Redis on 127.0.0.1:6379"
    else
      port=$(free_port) || { echo "services: python3 is needed to pick a free port" >&2; return 1; }
      dir=$(mktemp -d)
      SERVICES_DIRS+=("$dir")
      "$VESTNIK_REDIS_SERVER" --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --dir "$dir" >"$dir/redis.log" 2>&1 &
      SERVICES_PIDS+=($!)
      wait_listening "$port" "$!" redis-server "$dir/redis.log" || return 1
      VESTNIK_TEST_REDIS_URL=redis://127.0.0.1:$port
      echo "services: started redis-server (pid $!) on 127.0.0.1:$port"
    fi
  fi
  if [ -z "${VESTNIK_TEST_NATS_URL:-}" ]; then
    if [ "$own" != 1 ] && listening 4222; then
      VESTNIK_TEST_NATS_URL=nats://127.0.0.1:4222
      echo "services: using the NATS on 127.0.0.1:4222"
    else
      port=$(free_port) || { echo "services: python3 is needed to pick a free port" >&2; return 1; }
      dir=$(mktemp -d)
      SERVICES_DIRS+=("$dir")
      "$VESTNIK_NATS_SERVER" -a 127.0.0.1 -p "$port" -js -sd "$dir/jetstream" >"$dir/nats.log" 2>&1 &
      SERVICES_PIDS+=($!)
      wait_listening "$port" "$!" nats-server "$dir/nats.log" || return 1
      VESTNIK_TEST_NATS_URL=nats://127.0.0.1:$port
      echo "services: started nats-server -js (pid $!) on 127.0.0.1:$port"
    fi
  fi
  if [ -z "${VESTNIK_TEST_POSTGRES:-}" ]; then
    if [ "$own" != 1 ] && listening 5432; then
      VESTNIK_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432
      echo "services: using the PostgreSQL on 127.0.0.1:5432"
    else
      start_own_postgres || return 1
    fi
  fi
  if [ -z "${VESTNIK_TEST_MYSQL:-}" ]; then
    if [ "$own" != 1 ] && listening 3306; then
      VESTNIK_TEST_MYSQL=mysql://root@127.0.0.1:3306
      echo "services: using the MariaDB on 127.0.0.1:3306"
    else
      start_own_mariadb || return 1
    fi
  fi
  export VESTNIK_TEST_REDIS_URL VESTNIK_TEST_NATS_URL VESTNIK_TEST_POSTGRES VESTNIK_TEST_MYSQL
}

stop_services() {
  local pid dir
  for pid in "${SERVICES_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      echo "services: stopped pid $pid"
    fi
  done
  for dir in "${SERVICES_DIRS[@]}"; do rm -rf "$dir"; done
  SERVICES_PIDS=()
  SERVICES_DIRS=()
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  if [ "${1:-}" != run ] || [ "${2:-}" != -- ] || [ $# -lt 3 ]; then
    echo "usage: $0 run -- COMMAND..." >&2
    exit 2
  fi
  shift 2
  trap stop_services EXIT
  start_services
  echo "services: VESTNIK_TEST_REDIS_URL=$VESTNIK_TEST_REDIS_URL VESTNIK_TEST_NATS_URL=$VESTNIK_TEST_NATS_URL" \
    "VESTNIK_TEST_POSTGRES=$VESTNIK_TEST_POSTGRES VESTNIK_TEST_MYSQL=$VESTNIK_TEST_MYSQL"
  "$@"
fi
