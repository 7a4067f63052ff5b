#!/usr/bin/env bash
# Runs the Redis test suites against a throwaway Redis Cluster: 3 masters and 3 replicas of
# redis-server on free loopback ports (files in a temp dir, no persistence), created with
# `redis-cli --cluster create`, waited for (cluster_state:ok on every node, replicas in sync) with a
# deadline, and killed at exit. Runs `cargo test -p vestnik-redis` and the server's Redis tests (the
# test files that use the shared Redis) and the JS cluster suites with
# VESTNIK_TEST_REDIS_URL=redis+cluster://seed,seed,…
#
# Usage: scripts/redis-cluster.sh            Never touches a Redis it did not start.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

# free_port: a loopback port that is free, and whose cluster bus port (+10000) is free too.
free_port() {
  python3 - <<'PY'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p > 55000:
        s.close(); continue
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 10000)); b.close(); s.close(); print(p); break
    except OSError:
        s.close(); b.close()
PY
}

# wait_for WHAT SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds, or fails.
wait_for() {
  local what=$1 limit=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "timed out waiting for $what" >&2
      exit 1
    fi
    sleep 0.1
  done
}

PORTS=()
for _ in 1 2 3 4 5 6; do
  port=$(free_port)
  while [[ " ${PORTS[*]} " == *" $port "* ]]; do port=$(free_port); done
  PORTS+=("$port")
  redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-node-timeout 1000 \
    --cluster-config-file "$DIR/nodes-$port.conf" --dir "$DIR" --save '' --appendonly no \
    --repl-diskless-sync yes --repl-diskless-sync-delay 0 >"$DIR/redis-$port.log" 2>&1 &
  PIDS+=($!)
done
for port in "${PORTS[@]}"; do
  wait_for "redis-server on $port" 20 redis-cli -p "$port" ping
done
# Bounded: a node that died before the cluster formed would leave it waiting forever.
timeout 60 redis-cli --cluster create $(printf '127.0.0.1:%s ' "${PORTS[@]}") --cluster-replicas 1 --cluster-yes >/dev/null

healthy() {
  local port
  for port in "${PORTS[@]}"; do
    redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' || return 1
    local repl
    repl=$(redis-cli -p "$port" info replication)
    if ! grep -q 'role:master' <<<"$repl"; then
      grep -q 'master_link_status:up' <<<"$repl" || return 1
      grep -q 'master_sync_in_progress:0' <<<"$repl" || return 1
    fi
  done
}
wait_for "a healthy Redis Cluster" 60 healthy

URL="redis+cluster://$(printf '127.0.0.1:%s,' "${PORTS[@]}" | sed 's/,$//')"
export VESTNIK_TEST_REDIS_URL=$URL
echo "VESTNIK_TEST_REDIS_URL=$URL"

cargo test -p vestnik-redis
# The server's tests that use the shared Redis.
server_tests=()
for f in crates/vestnik-server/tests/*.rs; do
  if grep -q 'redis_url()\|require_redis()' "$f"; then
    server_tests+=(--test "$(basename "$f" .rs)")
  fi
done
cargo test -p vestnik-server "${server_tests[@]}"
# The JS cluster suites (real brokers, pusher-js, the pusher Node SDK) on the Redis Cluster: the
# files that start nodes on the shared Redis. Their NATS cases run again too (they loop over both
# backbones); they are quick.
(cd tests/js && node --test --test-concurrency=1 --test-timeout=180000 \
  test/cluster.test.js test/cluster-webhooks.test.js test/history-api.test.js \
  test/recovery-failover.test.js test/apps-live.test.js)
