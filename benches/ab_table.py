"""Summarises benches/ab.sh's JSON lines: per binary (a, b), the median and range of each
figure over its runs, and b's median over a's."""
import json
import statistics
import sys

FIGURES = [
    ("server CPU µs per delivery", ("server_cpu_us_per_delivery",)),
    ("deliveries per second", ("deliveries_per_sec",)),
    ("all latency p99 ms", ("p99_ms",)),
    ("WS p99 ms", ("ws_stats", "p99_ms")),
    ("poll p99 ms", ("poll_stats", "p99_ms")),
    ("all latency p50 ms", ("p50_ms",)),
    ("POST round trip p50 ms", ("post_rtt_p50_ms",)),
    ("RSS per WebSocket KiB", ("rss_per_ws_kib",)),
    ("RSS per held poll KiB", ("rss_per_poll_kib",)),
    ("idle CPU µs per connection per second", ("idle_cpu_us_per_conn_per_sec",)),
]


def value(row, keys):
    for key in keys:
        if not isinstance(row, dict) or key not in row:
            return None
        row = row[key]
    return row if isinstance(row, (int, float)) else None


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    side = {"a": [], "b": []}
    for row in rows:
        side[row["label"].split("/")[0]].append(row)
    broken = [r["label"] for r in rows if any(r.get(k) for k in ("lost", "duplicated", "out_of_order"))]
    print(f"{path}: {len(side['a'])} runs of a, {len(side['b'])} of b; "
          f"lost/duplicated/out of order in any run: {broken or 'none'}")
    print("| figure | a: median (range) | b: median (range) | b / a |")
    print("| --- | --- | --- | --- |")
    for name, keys in FIGURES:
        got = {s: [v for v in (value(r, keys) for r in side[s]) if v is not None] for s in side}
        if not got["a"] or not got["b"]:
            continue
        med = {s: statistics.median(got[s]) for s in got}
        cell = lambda s: f"{med[s]:.2f} ({min(got[s]):.2f}–{max(got[s]):.2f})"
        ratio = f"{med['b'] / med['a']:.2f}" if med["a"] else "–"
        print(f"| {name} | {cell('a')} | {cell('b')} | {ratio} |")
    if broken:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1])
