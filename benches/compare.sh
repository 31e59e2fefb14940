#!/usr/bin/env bash
# Runs the benchmark loads against chatdemo and the Tornado reference, one server at a time
# on this machine, and prints one table side by side.
#
#   benches/compare.sh            the four loads of the README (Tornado: loads 1 and 2)
#   benches/compare.sh --all      Tornado runs loads 3 and 4 too (slow)
#   benches/compare.sh --quick    small versions of every load (a smoke test, ~1 minute)
#
# Servers listen on 127.0.0.1 only; every load stops by itself. Results go to
# target/bench/results.jsonl and the table to target/bench/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
all_tornado=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --all) all_tornado=1 ;;
    *) echo "usage: $0 [--quick] [--all]" >&2; exit 2 ;;
  esac
done

out=target/bench
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"

cargo build --locked --release --bin chatdemo
bench=$(cargo bench --locked --bench fanout --no-run 2>&1 | grep -o 'target/release/deps/fanout-[0-9a-f]*' | head -n 1)
venv=target/tornado-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "tornado==6.6.1"
fi

port_rs=18890
port_py=18891
server=""

wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2
  exit 1
}

start_server() {
  if [ "$1" = chatdemo ]; then
    # No rate limit in the way of the load; everything else as shipped.
    CHATDEMO_ROOM__RATE_BURST=1000000000 CHATDEMO_ROOM__RATE_PER_SEC=1000000000 RUST_LOG=warn \
      target/release/chatdemo --port "$port_rs" > "$out/chatdemo.log" 2>&1 &
    server=$!
    wait_port "$port_rs"
  else
    "$venv/bin/python" benches/tornado/chatdemo.py --port="$port_py" --logging=warning \
      > "$out/tornado.log" 2>&1 &
    server=$!
    wait_port "$port_py"
  fi
}

stop_server() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
}
trap stop_server EXIT

run_load() { # name load-number extra-args...
  local name=$1 load=$2
  shift 2
  local port=$port_rs
  [ "$name" = tornado ] && port=$port_py
  start_server "$name"
  echo "== load $load: $name $*"
  "$bench" --url "http://127.0.0.1:$port" --server-pid "$server" --label "$name/load$load" \
    --json "$results" "$@"
  stop_server
  sleep 1
}

if [ "$quick" = 1 ]; then
  load1=(--ws 20 --polls 20 --messages 200)
  load2=(--ws 100 --polls 100 --messages 40 --rate 20)
  load3=(--ws 500 --polls 250 --messages 10 --rate 5)
  load4=(--ws 500 --polls 250 --idle 3)
else
  load1=(--ws 100 --polls 100 --messages 1000)
  load2=(--ws 2000 --polls 2000 --messages 200 --rate 20)
  load3=(--ws 10000 --polls 5000 --messages 50 --rate 1)
  load4=(--ws 10000 --polls 5000 --idle 60)
fi

for name in chatdemo tornado; do
  run_load "$name" 1 "${load1[@]}"
  run_load "$name" 2 "${load2[@]}"
  if [ "$name" = chatdemo ] || [ "$all_tornado" = 1 ] || [ "$quick" = 1 ]; then
    run_load "$name" 3 "${load3[@]}"
    run_load "$name" 4 "${load4[@]}"
  fi
done

python3 benches/table.py "$results" | tee "$out/table.md"
