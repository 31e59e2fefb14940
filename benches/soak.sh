#!/usr/bin/env bash
# Soak test: the release server (in-memory room, shipped settings except the rate limits)
# with 1,000 WebSocket and 1,000 long-poll clients, 10 messages a second, and 10% of the
# clients reconnecting every minute, for 30 minutes. Prints the server's memory,
# descriptors, held polls and sockets each minute, and fails unless, after a warm-up of a
# sixth of the run (at least a minute), they stay within 5% of their values then, and
# every client got every message once, in order.
#
#   benches/soak.sh               30 minutes
#   benches/soak.sh --minutes 2   a short run (what CI does)
#
# The server listens on 127.0.0.1 (a free port) and is stopped by its PID; the run stops by
# itself.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=30
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    *) echo "usage: $0 [--minutes N]" >&2; exit 2 ;;
  esac
done

out=target/bench
mkdir -p "$out"
cargo build --locked --release --bin chatdemo
cargo bench --locked --bench soak --no-run
soak=$(cargo bench --locked --bench soak --no-run 2>&1 | grep -o 'target/release/deps/soak-[0-9a-f]*' | head -n 1)

# 2,000 clients need more descriptors than a default shell allows, on both sides.
ulimit -n "$(ulimit -Hn)"
# Every client is 127.0.0.1: the limits per address and per login would stop the load.
# Port 0: the server picks a free port and logs it.
# MALLOC_PERTURB_: glibc's malloc hands out memory without writing it, and actix-http gives
# each connection two 8 KiB buffers of which a request writes a page each. Under reconnects
# later owners write those pages, so the resident size climbs for about 20 minutes towards
# the heap's size while the heap itself stays flat (README, "Under attack, and under
# faults"). With this setting malloc writes every block it hands out: the resident size is
# the heap's whole footprint from the start, and a climb means something really grew. The
# allocator's own counts, from /metrics, are checked as well.
log="$out/soak-server.log"
MALLOC_PERTURB_=165 CHATDEMO_ROOM__RATE_BURST=1000000 CHATDEMO_ROOM__RATE_PER_SEC=1000000 \
  CHATDEMO_ROOM__ADDRESS_BURST=1000000 CHATDEMO_ROOM__ADDRESS_PER_SEC=1000000 \
  CHATDEMO_SECURITY__LOGIN_BURST=1000000 CHATDEMO_SECURITY__LOGIN_PER_SEC=1000000 \
  CHATDEMO_SERVER__MAX_CONNECTIONS_PER_ADDRESS=1000000000 \
  CHATDEMO_PRESENCE__NOTICES=false RUST_LOG=warn,chatdemo::startup=info NO_COLOR=1 \
  target/release/chatdemo --port 0 > "$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 200); do
  port=$(grep -o 'port=[0-9]*' "$log" | head -n 1 | cut -d= -f2 || true)
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { echo "the server did not start: $(cat "$log")" >&2; exit 1; }

"$soak" --url "http://127.0.0.1:$port" --server-pid "$server" --minutes "$minutes" \
  | tee "$out/soak.txt"
