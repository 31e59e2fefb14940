#!/usr/bin/env bash
# Runs the benchmark loads against chatdemo and the Tornado reference, one server at a time
# on this machine, and prints the figures side by side and against issue 19's targets.
#
#   A  100 WebSockets + 100 long polls, 1,000 messages flat out (CPU per delivery); on
#      chatdemo's two stores also at 250 messages a second
#   B  1,000 WebSockets + 1,000 long polls, 100 messages at 20 a second (latency)
#   idle  3,000 idle WebSockets (memory per socket)
#
# Those three run in rounds (3 by default), the servers alternating within each round and
# their order reversed every other round, so the machine's drift falls on all of them;
# every figure is the median of its runs (benches/results.py). Load A runs on the Redis
# store too (one instance), with redis-server's own CPU. Then once each: load 3 (10,000
# WebSockets + 5,000 polls at 1 message a second), load 4 (the same held idle for 60 s),
# the join storm with notices on and off, Load B on Redis and load A on two instances on
# one Redis. Last, the trickle against Socket.IO (benches/socketio.sh, the same rounds).
#
#   benches/compare.sh            everything above; about 15 minutes
#   benches/compare.sh --runs N   N rounds instead of 3
#   benches/compare.sh --quick    small versions of every load, one round (a smoke test)
#
# Servers listen on 127.0.0.1 only; every load stops by itself. Results go to
# target/bench/results.jsonl, the tables to target/bench/table.md and SVG charts of them
# to target/bench/charts/.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; runs=1; shift ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: $0 [--quick] [--runs N]" >&2; exit 2 ;;
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
  # --store-pid: redis-server's own CPU, over the same window as the server's.
  "$bench" --url "http://127.0.0.1:$port_rs" --server-pid "$server" "${second[@]}" \
    --store-pid "$redis_pid" --label "$name/load$load" --json "$results" "$@"
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
  loadA=(--ws 20 --polls 20 --messages 200)
  loadAeven=(--ws 20 --polls 20 --messages 200 --rate 100)
  loadB=(--ws 100 --polls 100 --messages 40 --rate 20)
  loadidle=(--ws 300 --polls 0 --idle 2)
  load3=(--ws 500 --polls 250 --messages 10 --rate 5)
  load4=(--ws 500 --polls 250 --idle 3)
  trickle=(--quick)
else
  storm=(--ws 15000 --polls 0 --messages 30 --rate 2 --storm 10)
  loadA=(--ws 100 --polls 100 --messages 1000)
  # Load A at a rate both stores keep up with: flat out, the memory store's poster is
  # answered sooner, so more messages overlap and share writes (see docs/PERFORMANCE.md).
  loadAeven=(--ws 100 --polls 100 --messages 1000 --rate 250)
  loadB=(--ws 1000 --polls 1000 --messages 100 --rate 20)
  loadidle=(--ws 3000 --polls 0 --idle 10)
  load3=(--ws 10000 --polls 5000 --messages 50 --rate 1)
  load4=(--ws 10000 --polls 5000 --idle 60)
  trickle=()
fi
have_redis=0
if command -v redis-server >/dev/null 2>&1; then
  have_redis=1
  start_redis
else
  echo "redis-server is not installed: the Redis store's loads are skipped" >&2
fi

started=$SECONDS
progress() { echo "== [$(( (SECONDS - started) / 60 ))m$(( (SECONDS - started) % 60 ))s] $*" >&2; }

# run_in_round NAME LOAD args...: chatdemo or Tornado as they are; "redis" is chatdemo on
# the Redis store (skipped without redis-server).
run_in_round() {
  local name=$1 load=$2
  shift 2
  progress "round $round of $runs: load $load on $name"
  if [ "$name" != redis ]; then
    run_load "$name" "$load" "$@"
  elif [ "$have_redis" = 1 ]; then
    run_redis_load redis "$load" 1 "$@"
  fi
}

for round in $(seq 1 "$runs"); do
  servers=(chatdemo tornado redis)
  if [ $((round % 2)) = 0 ]; then servers=(redis tornado chatdemo); fi
  for name in "${servers[@]}"; do
    run_in_round "$name" A "${loadA[@]}"
  done
  for name in "${servers[@]}"; do
    [ "$name" = tornado ] || run_in_round "$name" Aeven "${loadAeven[@]}"
  done
  for name in "${servers[@]}"; do
    [ "$name" = redis ] && continue
    run_in_round "$name" B "${loadB[@]}"
    run_in_round "$name" idle "${loadidle[@]}"
  done
done

progress "load 3"
run_load chatdemo 3 "${load3[@]}"
progress "load 4"
run_load chatdemo 4 "${load4[@]}"
progress "join storm, notices on"
run_storm on
progress "join storm, notices off"
run_storm off
if [ "$have_redis" = 1 ]; then
  progress "load B on Redis"
  run_redis_load redis B 1 "${loadB[@]}"
  progress "load A on two instances on one Redis"
  run_redis_load redis-2x A 2 "${loadA[@]}"
fi
stop_all
trap - EXIT

progress "the trickle against Socket.IO"
benches/socketio.sh --runs "$runs" "${trickle[@]}"
# Its runs join the others, labelled trickle/<server>.
python3 - target/bench/socketio/trickle.jsonl >> "$results" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    row = json.loads(line)
    row["label"] = "trickle/" + row["label"]
    print(json.dumps(row))
PY
progress "done"

python3 benches/table.py "$results" | tee "$out/table.md"
python3 benches/targets.py "$results" | tee -a "$out/table.md"
# The charts, drawn from the same JSON (docs/PERFORMANCE.md shows a published run's).
python3 benches/charts.py "$results" "$out/charts"
