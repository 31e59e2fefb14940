#!/usr/bin/env bash
# Runs the benchmark loads against chatdemo and the Tornado reference, one server at a time
# on this machine, and prints one table side by side. With redis-server installed it also
# runs loads 1 and 2 on the Redis store (one instance) and load 1 on two instances sharing
# one Redis, with Redis's own command counts.
#
#   benches/compare.sh            the four loads of the README (Tornado: loads 1 and 2) and
#                                 the join storm, with notices on and off
#   benches/compare.sh --all      Tornado runs loads 3 and 4 too (slow)
#   benches/compare.sh --quick    small versions of every load (a smoke test, ~1 minute)
#
# Servers listen on 127.0.0.1 only; every load stops by itself. Results go to
# target/bench/results.jsonl, the table to target/bench/table.md and SVG charts of them to
# target/bench/charts/.
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

notices=true
port_rs=18890
port_py=18891
port_rs2=18892
server=""
server2=""
redis_pid=""
redis_dir="$PWD/$out/redis"
redis_sock="$redis_dir/redis.sock"
# Instances on one Redis must share the cookie key; any 64 bytes do for a benchmark.
bench_secret=$(od -An -tx1 -N40 /dev/urandom | tr -d ' \n')

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
    # No rate limit in the way of the load; everything else as shipped, except in loads 2-4
    # (see `notices_for` below).
    CHATDEMO_ROOM__RATE_BURST=1000000 CHATDEMO_ROOM__RATE_PER_SEC=1000000 RUST_LOG=warn \
    CHATDEMO_ROOM__ADDRESS_BURST=1000000 CHATDEMO_ROOM__ADDRESS_PER_SEC=1000000 \
    CHATDEMO_SECURITY__LOGIN_BURST=1000000 CHATDEMO_SECURITY__LOGIN_PER_SEC=1000000 \
    CHATDEMO_SERVER__MAX_CONNECTIONS_PER_ADDRESS=1000000000 \
      CHATDEMO_PRESENCE__NOTICES="$notices" \
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
  for pid in "$server" "$server2"; do
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  server=""
  server2=""
}

stop_all() {
  stop_server
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
}
trap stop_all EXIT

# Redis as the store would run in production: append-only, synced every second.
start_redis() {
  rm -rf "$redis_dir"
  mkdir -p "$redis_dir"
  redis-server --port 0 --unixsocket "$redis_sock" --unixsocketperm 700 --dir "$redis_dir" \
    --save '' --appendonly yes --appendfsync everysec > "$out/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 200); do
    if redis-cli -s "$redis_sock" ping >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "redis-server did not start" >&2
  exit 1
}

# start_redis_instance PORT PREFIX: prints nothing, sets $! as the instance's pid.
start_redis_instance() {
  CHATDEMO_ROOM__RATE_BURST=1000000 CHATDEMO_ROOM__RATE_PER_SEC=1000000 RUST_LOG=warn \
    CHATDEMO_ROOM__ADDRESS_BURST=1000000 CHATDEMO_ROOM__ADDRESS_PER_SEC=1000000 \
    CHATDEMO_SECURITY__LOGIN_BURST=1000000 CHATDEMO_SECURITY__LOGIN_PER_SEC=1000000 \
    CHATDEMO_SERVER__MAX_CONNECTIONS_PER_ADDRESS=1000000000 \
    CHATDEMO_STORE__BACKEND=redis CHATDEMO_STORE__REDIS_URL="redis+unix://$redis_sock" \
    CHATDEMO_STORE__KEY_PREFIX="$2" CHATDEMO_SECURITY__COOKIE_SECRET="$bench_secret" \
    CHATDEMO_PRESENCE__NOTICES="$notices" \
    target/release/chatdemo --port "$1" >> "$out/chatdemo-redis.log" 2>&1 &
}

# run_redis_load NAME LOAD INSTANCES extra-args...: on a fresh key prefix, with Redis's
# command counts reset before and recorded after.
run_redis_load() {
  local name=$1 load=$2 instances=$3
  shift 3
  local prefix="bench-$name-$load-$RANDOM"
  notices_for "$load"
  start_redis_instance "$port_rs" "$prefix"
  server=$!
  local second=()
  if [ "$instances" = 2 ]; then
    start_redis_instance "$port_rs2" "$prefix"
    server2=$!
    wait_port "$port_rs2"
    second=(--url2 "http://127.0.0.1:$port_rs2" --server-pid2 "$server2")
  fi
  wait_port "$port_rs"
  redis-cli -s "$redis_sock" config resetstat >/dev/null
  echo "== load $load: $name ($instances instance(s) on Redis) $*"
  "$bench" --url "http://127.0.0.1:$port_rs" --server-pid "$server" "${second[@]}" \
    --label "$name/load$load" --json "$results" "$@"
  redis-cli -s "$redis_sock" info commandstats \
    | python3 benches/commandstats.py "$name/load$load" "$instances" >> "$results"
  stop_server
  sleep 1
}

notices_for() { # load-number
  # Every load runs with join/leave notices on, as shipped: they are folded (protocol v3),
  # so thousands of logins arriving within seconds are a handful of entries. The join
  # storm also runs with them off, to show what they cost.
  notices=true
  if [ "$1" = storm-off ]; then notices=false; fi
}

run_load() { # name load-number extra-args...
  local name=$1 load=$2
  shift 2
  notices_for "$load"
  local port=$port_rs
  [ "$name" = tornado ] && port=$port_py
  start_server "$name"
  echo "== load $load: $name $*"
  "$bench" --url "http://127.0.0.1:$port" --server-pid "$server" --label "$name/load$load" \
    --json "$results" "$@"
  stop_server
  sleep 1
}

# The join storm: 15,000 WebSocket logins arriving evenly over 10 s while 2 messages a
# second are posted, with notices on and then off (see docs/PERFORMANCE.md).
run_storm() { # notices: on|off
  local label=storm
  [ "$1" = off ] && label=storm-off
  run_load chatdemo "$label" "${storm[@]}"
}

if [ "$quick" = 1 ]; then
  storm=(--ws 1500 --polls 0 --messages 10 --rate 2 --storm 3)
  load1=(--ws 20 --polls 20 --messages 200)
  load2=(--ws 100 --polls 100 --messages 40 --rate 20)
  load3=(--ws 500 --polls 250 --messages 10 --rate 5)
  load4=(--ws 500 --polls 250 --idle 3)
else
  storm=(--ws 15000 --polls 0 --messages 30 --rate 2 --storm 10)
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

run_storm on
run_storm off

if command -v redis-server >/dev/null 2>&1; then
  start_redis
  run_redis_load redis 1 1 "${load1[@]}"
  run_redis_load redis 2 1 "${load2[@]}"
  run_redis_load redis-2x 1 2 "${load1[@]}"
else
  echo "redis-server is not installed: the Redis store's loads are skipped" >&2
fi

python3 benches/table.py "$results" | tee "$out/table.md"
# The charts, drawn from the same JSON (docs/PERFORMANCE.md shows a published run's).
python3 benches/charts.py "$results" "$out/charts"
