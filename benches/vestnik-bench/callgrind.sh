#!/usr/bin/env bash
# Instructions per delivery and per trigger, counted by callgrind (docs/benchmarks.md, "callgrind").
# Instruction counts repeat exactly from run to run, unlike CPU time on a shared machine, so they are
# the firm evidence in an A/B. For each workload the broker runs under callgrind twice, once with a
# long and once with a short measured window; the difference in instructions divided by the
# difference in deliveries (or triggers) cancels start-up, the socket ramp and the shutdown.
#
# Usage: benches/vestnik-bench/callgrind.sh BROKER_BINARY [ROUNDS]
#        prints one line per round and workload: workload, instructions per unit.
# Env:   BENCH=path  the vestnik-bench binary (default target/release/vestnik-bench)
#        LONG=12 SHORT=4  the two measured windows, seconds
#        BROKER_ARGS="--config FILE"  more arguments for the broker (word-split), e.g. an app with
#                                     history off for the history on/off A/B
set -euo pipefail

broker="${1:?usage: callgrind.sh BROKER_BINARY [ROUNDS]}"
rounds="${2:-3}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bench="${BENCH:-$root/target/release/vestnik-bench}"
long="${LONG:-12}"
short="${SHORT:-4}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Runs the broker under callgrind, the bench against it with "$@", and prints
# "instructions units" (units: deliveries for fanout, triggers for triggers).
one() {
  local unit="$1"; shift
  local out="$work/cg.out" log="$work/broker.log"
  rm -f "$out"
  # shellcheck disable=SC2086 # BROKER_ARGS is split into words on purpose
  valgrind --tool=callgrind --callgrind-out-file="$out" "$broker" --host 127.0.0.1 --port 0 \
    ${BROKER_ARGS:-} 2>"$log" >/dev/null &
  local pid=$! port=""
  for _ in $(seq 1 600); do
    port="$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log" | head -n1)"
    [[ -n "$port" ]] && break
    sleep 0.1
  done
  [[ -n "$port" ]] || { cat "$log"; echo "callgrind.sh: broker did not start" >&2; exit 1; }
  "$bench" --quiet --app-id app-id --app-key app-key --app-secret app-secret \
    --json "$work/r.json" "$@" --ws "ws://127.0.0.1:$port" --http "http://127.0.0.1:$port" >/dev/null
  kill -TERM "$pid"
  wait "$pid" || true
  local ir
  ir="$(sed -n -e "s/^summary: \([0-9]*\).*/\1/p" -e "s/^totals: \([0-9]*\).*/\1/p" "$out" | head -n1)"
  local n
  n="$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["delivery"]["delivered"] if sys.argv[2]=="deliveries" else r["http"]["events"])' "$work/r.json" "$unit")"
  echo "$ir $n"
}

per_unit() {
  local name="$1" unit="$2"; shift 2
  read -r ir_l n_l < <(one "$unit" "$@" -d "$long")
  read -r ir_s n_s < <(one "$unit" "$@" -d "$short")
  python3 -c 'import sys; a,b,c,d=map(int,sys.argv[2:6]); print(f"{sys.argv[1]} {(a-c)/(b-d):.0f} ({b-d} {sys.argv[6]})")' \
    "$name" "$ir_l" "$n_l" "$ir_s" "$n_s" "$unit"
}

for r in $(seq 1 "$rounds"); do
  per_unit "fanout-n100-c10-r50 round $r" deliveries fanout -n 100 -c 10 -r 50 --warmup 1
  per_unit "triggers-c1 round $r" triggers triggers --concurrency 1 --warmup 1
done
