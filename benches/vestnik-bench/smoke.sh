#!/usr/bin/env bash
# Smoke test for vestnik-bench: builds the broker and the bench (debug), starts the broker on a free
# loopback port, runs every scenario tiny (50 sockets, about 2 s each), and checks that every JSON
# report says lost == 0 and sockets_failed == 0. Exits non-zero on the first failure.
#
# Then a short chaos run per backbone (three nodes on a private redis-server, then nats-server,
# each on a free port that the harness starts and kills itself; 45 s of node kills, backbone
# restarts, node cuts, node stops past node_timeout_ms, client cuts and slow readers), which fails on any loss the
# relay hold and replay do not excuse, any duplicate, reordering, ghost, lost webhook or leak.
# Node kills are in too: the presence-webhook race after a kill (a member back on the killed node's
# new incarnation just before the others wrote the old one off) is closed (docs/reliability.md).
# Needs redis-server and nats-server on the PATH.
#
# Usage: benches/vestnik-bench/smoke.sh            (from anywhere in the repo)
# Env:   VESTNIK_BIN=path  use this broker binary instead of building target/debug/vestnik
#        KEEP=1            keep the work directory with the reports, logs and the SVG
#        VESTNIK_CHAOS_SEED=n  the chaos runs' fault schedule (default 11, fixed so CI is repeatable)
#        VESTNIK_CHAOS_SECS=n  the chaos runs' length (default 45)
#
# cross-node points node A and node B at the same broker: a real cross-node run needs two brokers
# joined by the cluster adapter, which does not exist yet.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

cargo build -q -p vestnik-bench
if [[ -z "${VESTNIK_BIN:-}" ]]; then
  cargo build -q -p vestnik-server
  VESTNIK_BIN="$root/target/debug/vestnik"
fi
bench="$root/target/debug/vestnik-bench"

work="$(mktemp -d)"
broker_pid=""
cleanup() {
  if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  if [[ "${KEEP:-0}" == "1" ]]; then echo "smoke: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

"$VESTNIK_BIN" --host 127.0.0.1 --port 0 2>"$work/broker.log" &
broker_pid=$!
port=""
for _ in $(seq 1 100); do
  port="$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$work/broker.log" | head -n1)"
  [[ -n "$port" ]] && break
  kill -0 "$broker_pid" 2>/dev/null || { cat "$work/broker.log"; echo "smoke: broker exited"; exit 1; }
  sleep 0.1
done
[[ -n "$port" ]] || { cat "$work/broker.log"; echo "smoke: no 'listening on' line"; exit 1; }
echo "smoke: broker pid $broker_pid on port $port"

ws="ws://127.0.0.1:$port"
http="http://127.0.0.1:$port"
common=(--smoke --quiet --pid "$broker_pid")

# Prints "lost sockets_failed" of a report, with jq, python3 or, failing both, sed.
figures() {
  if command -v jq >/dev/null; then
    jq -r '"\(.lost) \(.sockets_failed)"' "$1"
  elif command -v python3 >/dev/null; then
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["lost"], r["sockets_failed"])' "$1"
  else
    echo "$(sed -n 's/^  "lost": \([0-9]*\).*/\1/p' "$1") $(sed -n 's/^  "sockets_failed": \([0-9]*\).*/\1/p' "$1")"
  fi
}

failed=0
passed=0
check() {
  local name="$1"; shift
  local report="$work/$name.json"
  echo "smoke: $name"
  if ! timeout 120 "$bench" "$@" "${common[@]}" --json "$report" >"$work/$name.txt" 2>&1; then
    cat "$work/$name.txt"; echo "smoke: FAIL $name (exit status)"; failed=$((failed + 1)); return
  fi
  read -r lost sockets_failed < <(figures "$report")
  if [[ "$lost" == "0" && "$sockets_failed" == "0" ]]; then
    passed=$((passed + 1))
  else
    cat "$work/$name.txt"
    echo "smoke: FAIL $name (lost=$lost sockets_failed=$sockets_failed)"
    failed=$((failed + 1))
  fi
}

check fanout fanout --ws "$ws" --http "$http"
check fanout-batch fanout --ws "$ws" --http "$http" --batch 5 --private
check idle idle --ws "$ws" --http "$http"
check connect connect --ws "$ws" --http "$http" --concurrency 16
check triggers triggers --ws "$ws" --http "$http" --concurrency 4
check cross-node cross-node --http-a "$http" --ws-b "$ws"

# floor (issue 17): no broker, a plain writer over loopback sockets; the floor a delivery is compared with.
check floor floor

# recovery (issue 14): sockets cut and back with `recover` while events flow; it judges itself
# (exit 2 on any loss, repeat or failed recovery).
echo "smoke: recovery"
if timeout 120 "$bench" recovery --ws "$ws" --http "$http" --smoke --quiet --json "$work/recovery.json" \
     >"$work/recovery.txt" 2>&1 && grep -q 'result           PASS' "$work/recovery.txt"; then
  passed=$((passed + 1))
else
  cat "$work/recovery.txt"; echo "smoke: FAIL recovery"; failed=$((failed + 1))
fi

check sweep sweep --ws "$ws" --http "$http" --plot "$work/sweep.svg"
if [[ -s "$work/sweep.svg" ]] && "$bench" plot "$work/sweep.json" "$work/fanout.json" -o "$work/plot.svg" >/dev/null \
   && grep -q '<svg' "$work/plot.svg"; then
  passed=$((passed + 1))
else
  echo "smoke: FAIL plot"; failed=$((failed + 1))
fi

# The chaos run judges itself: exit 0 is PASS, 2 lists each violated figure as a FAIL: line.
chaos_seed="${VESTNIK_CHAOS_SEED:-11}"
chaos_secs="${VESTNIK_CHAOS_SECS:-45}"
for backbone in redis nats; do
  name="chaos-$backbone"
  echo "smoke: $name (seed $chaos_seed, ${chaos_secs}s)"
  if timeout $((chaos_secs + 180)) "$bench" chaos --adapter "$backbone" --duration "$chaos_secs" \
       --seed "$chaos_seed" --relay-hold-ms 10000 --vestnik-bin "$VESTNIK_BIN" \
       --faults kill,backbone,cut,stop,client-cut,slow-reader \
       --json "$work/$name.json" >"$work/$name.txt" 2>&1; then
    passed=$((passed + 1))
  else
    cat "$work/$name.txt"; echo "smoke: FAIL $name"; failed=$((failed + 1))
  fi
done

# --- soak (short): churn against one node, then a 2-node cluster on its own redis-server; each
# starts its own nodes from $VESTNIK_BIN and exits non-zero when memory or descriptors do not end
# flat or a node does not return to idle. About 40 s each.
soak_check() {
  local name="$1"; shift
  echo "smoke: $name"
  if timeout 180 "$bench" soak --smoke --quiet --vestnik-bin "$VESTNIK_BIN" --out "$work/$name" "$@" \
       >"$work/$name.txt" 2>&1 && grep -q '<svg' "$work/$name/soak.svg" && [[ -s "$work/$name/soak.csv" ]]; then
    passed=$((passed + 1))
  else
    cat "$work/$name.txt"; echo "smoke: FAIL $name"; failed=$((failed + 1))
  fi
}
soak_check soak-one-node
soak_check soak-redis-2 --cluster 2 --adapter redis
# --- end soak

echo "smoke: $passed passed, $failed failed"
[[ "$failed" == "0" ]]
