#!/usr/bin/env bash
# A/B: two release binaries of chatdemo under the same load, alternating (A, B, B, A, ...)
# so the machine's drift falls on both, several runs each; prints the medians and ranges.
# Each server runs as compare.sh runs it (notices on, the limits per login and per address
# out of the way, RUST_LOG=warn), on the memory store unless --redis.
#
#   benches/ab.sh --a OLD_BINARY --b NEW_BINARY [--runs 6] [--load 1|2|3|4|A|B] [--redis]
#                 [--notices on|off]
#
# Results: target/bench/ab-load<N>.jsonl (labels "a/loadN" and "b/loadN") and a summary on
# stdout. Servers listen on 127.0.0.1 only; every load stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

a="" b="" runs=6 load=1 redis=0 notices=true
while [ $# -gt 0 ]; do
  case "$1" in
    --a) a="$2"; shift 2 ;;
    --b) b="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --load) load="$2"; shift 2 ;;
    --redis) redis=1; shift ;;
    --notices) [ "$2" = off ] && notices=false || notices=true; shift 2 ;;
    *) echo "usage: $0 --a BIN --b BIN [--runs N] [--load 1|2|3|4] [--redis]" >&2; exit 2 ;;
  esac
done
[ -x "$a" ] && [ -x "$b" ] || { echo "--a and --b must be executables" >&2; exit 2; }

out=target/bench
mkdir -p "$out"
results="$out/ab-load$load.jsonl"
: > "$results"
cargo bench --locked --bench fanout --no-run >/dev/null 2>&1
bench=$(cargo bench --locked --bench fanout --no-run 2>&1 | grep -o 'target/release/deps/fanout-[0-9a-f]*' | head -n 1)

case "$load" in
  1|A) args=(--ws 100 --polls 100 --messages 1000) ;;
  # Issue 19's load B: the trickle's tail with both transports.
  B) args=(--ws 1000 --polls 1000 --messages 100 --rate 20) ;;
  2) args=(--ws 2000 --polls 2000 --messages 200 --rate 20) ;;
  3) args=(--ws 10000 --polls 5000 --messages 50 --rate 1) ;;
  4) args=(--ws 10000 --polls 5000 --idle 60) ;;
  *) echo "--load is 1 to 4, A (= 1) or B" >&2; exit 2 ;;
esac
ulimit -n "$(ulimit -Hn)"

port=18895
server=""
rundir=""
redis_pid=""
redis_dir="$PWD/$out/ab-redis"
stop() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=""
}
trap 'stop; [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; [ -n "$rundir" ] && rm -rf "$rundir"; true' EXIT

store_env=()
if [ "$redis" = 1 ]; then
  rm -rf "$redis_dir"; mkdir -p "$redis_dir"
  redis-server --port 0 --unixsocket "$redis_dir/redis.sock" --unixsocketperm 700 \
    --dir "$redis_dir" --save '' --appendonly yes --appendfsync everysec > "$out/ab-redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 200); do redis-cli -s "$redis_dir/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
  store_env=(CHATDEMO_STORE__BACKEND=redis "CHATDEMO_STORE__REDIS_URL=redis+unix://$redis_dir/redis.sock"
    "CHATDEMO_SECURITY__COOKIE_SECRET=$(od -An -tx1 -N40 /dev/urandom | tr -d ' \n')")
fi

# The servers run in an empty directory: a ./config.toml of another version (this
# repository's) must not reach the other binary.
rundir=$(mktemp -d)
# The limits out of the way of the load and the notices as asked, for the settings each
# binary knows: an older binary refuses a setting it does not have (the first wave, 001a1ef,
# has no presence and no per-address or per-login limits).
known_env() { # binary run-label
  local setting key
  for setting in "CHATDEMO_STORE__KEY_PREFIX=ab-$2-$RANDOM" CHATDEMO_ROOM__RATE_BURST=1000000 CHATDEMO_ROOM__RATE_PER_SEC=1000000 \
    CHATDEMO_ROOM__ADDRESS_BURST=1000000 CHATDEMO_ROOM__ADDRESS_PER_SEC=1000000 \
    CHATDEMO_SECURITY__LOGIN_BURST=1000000 CHATDEMO_SECURITY__LOGIN_PER_SEC=1000000 \
    CHATDEMO_SERVER__MAX_CONNECTIONS_PER_ADDRESS=1000000000 \
    "CHATDEMO_PRESENCE__NOTICES=$notices"; do
    key=${setting%%=*}
    key=${key##*__}
    if grep -q "${key,,}" "$1"; then echo "$setting"; fi
  done
}
run() { # label binary run-number
  # shellcheck disable=SC2046 # one word per setting
  (cd "$rundir" && exec env RUST_LOG=warn $(known_env "$2" "$1-$3") "${store_env[@]}" \
    "$(realpath "$2")" --port "$port") > "$out/ab-server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  echo "== run $3: $1 ($2)" >&2
  "$bench" --url "http://127.0.0.1:$port" --server-pid "$server" --label "$1/load$load" \
    --json "$results" "${args[@]}" > "$out/ab-last.txt"
  stop
  sleep 1
}

for i in $(seq 1 "$runs"); do
  if [ $((i % 2)) = 1 ]; then run a "$a" "$i"; run b "$b" "$i"; else run b "$b" "$i"; run a "$a" "$i"; fi
done
python3 benches/ab_table.py "$results"
