#!/usr/bin/env bash
# The trickle against Socket.IO: 2,000 WebSockets, 200 messages at 20 a second, each to
# everyone, on chatdemo and on Socket.IO 4.8 (benches/socketio/server.js, its docs' chat
# example), driven by the same lean Node client (benches/socketio/client.mjs), rounds
# alternating; prints the median of each figure and appends every run to
# target/bench/socketio/trickle.jsonl. Each run fails on any lost, repeated or
# out-of-order delivery.
#
#   benches/socketio.sh [--runs N] [--workers W] [--quick]
#
# --workers: the client's receiving threads (2 by default; 1 makes the client itself the
# limit, see client.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
sockets=2000
messages=200
rate=20
workers=2
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --quick) sockets=200; messages=40; shift ;;
    *) echo "usage: $0 [--runs N] [--workers W] [--quick]" >&2; exit 2 ;;
  esac
done

npm ci --prefix benches/socketio --no-audit --no-fund --loglevel=error
cargo build --release --locked --quiet
out=target/bench/socketio
mkdir -p "$out"
results="$out/trickle.jsonl"
: > "$results"
port_rs=18894
port_io=18895
pids=()
stop_all() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_all EXIT

wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listening on port $1" >&2
  exit 1
}

# As compare.sh runs it: limits out of the way of the load, notices on, as shipped.
CHATDEMO_ROOM__RATE_BURST=1000000 CHATDEMO_ROOM__RATE_PER_SEC=1000000 RUST_LOG=warn \
CHATDEMO_ROOM__ADDRESS_BURST=1000000 CHATDEMO_ROOM__ADDRESS_PER_SEC=1000000 \
CHATDEMO_SECURITY__LOGIN_BURST=1000000 CHATDEMO_SECURITY__LOGIN_PER_SEC=1000000 \
CHATDEMO_SERVER__MAX_CONNECTIONS_PER_ADDRESS=1000000000 CHATDEMO_PRESENCE__NOTICES=true \
  target/release/chatdemo --port "$port_rs" > "$out/chatdemo.log" 2>&1 &
chatdemo=$!
pids+=("$chatdemo")
node benches/socketio/server.js "$port_io" > "$out/socketio.log" 2>&1 &
socketio=$!
pids+=("$socketio")
wait_port "$port_rs"
wait_port "$port_io"

for round in $(seq 1 "$runs"); do
  echo "== round $round of $runs" >&2
  node benches/socketio/client.mjs --proto chatdemo --url "http://127.0.0.1:$port_rs" \
    --pid "$chatdemo" --sockets "$sockets" --messages "$messages" --rate "$rate" \
    --workers "$workers" --label chatdemo --json "$results"
  sleep 2
  node benches/socketio/client.mjs --proto socketio --url "http://127.0.0.1:$port_io" \
    --pid "$socketio" --sockets "$sockets" --messages "$messages" --rate "$rate" \
    --workers "$workers" --label socketio --json "$results"
  sleep 2
done

python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
print("| server | runs | p50 ms | p99 ms | server CPU per delivery (µs) | client CPU (s) |")
print("| --- | --- | --- | --- | --- | --- |")
for label in ("chatdemo", "socketio"):
    mine = [r for r in runs if r["label"] == label]
    if not mine:
        continue
    med = lambda key: statistics.median(r[key] for r in mine)
    rng = lambda key: f'{min(r[key] for r in mine)}–{max(r[key] for r in mine)}'
    print(f'| {label} | {len(mine)} | {med("p50_ms")} ({rng("p50_ms")}) | {med("p99_ms")} ({rng("p99_ms")}) '
          f'| {med("cpu_per_delivery_us")} ({rng("cpu_per_delivery_us")}) | {med("client_cpu_s")} |')
PY
