"""Draws SVG bar charts from the load generator's JSON lines (benches/compare.sh writes
them to target/bench/results.jsonl). No plotting library: each chart is a few rectangles
and labels, so the picture is exactly the numbers in the file.

    python3 benches/charts.py RESULTS.jsonl OUT_DIR

Writes OUT_DIR/cpu-per-delivery.svg, p99-latency.svg, memory.svg, connections.svg,
storm.svg and socketio.svg, each from the rows it finds (a missing server or load is left
out). Every figure is the median of its load's runs (results.py).
"""
import math
import os
import sys
from html import escape

import results

SERIES = [  # label prefix, name in the legend, colour
    ("chatdemo", "chatdemo (memory)", "#2b6cb0"),
    ("redis", "chatdemo (Redis, 1 instance)", "#38a169"),
    ("redis-2x", "chatdemo (Redis, 2 instances)", "#68d391"),
    ("tornado", "Tornado 6.6.1", "#c05621"),
]
LOADS = [
    ("loadA", "load A: 100 WS + 100 polls, flat out"),
    ("loadB", "load B: 1,000 WS + 1,000 polls, 20 msg/s"),
    ("load3", "load 3: 10,000 WS + 5,000 polls, 1 msg/s"),
]


def value(row, *keys):
    for key in keys:
        if not isinstance(row, dict) or key not in row:
            return None
        row = row[key]
    return row if isinstance(row, (int, float)) else None


def mib(kib):
    return None if kib is None else kib / 1024


def scaled(v, factor):
    return None if v is None else v * factor


def bar_chart(title, unit, groups, log=False):
    """groups: [(group title, [(series name, colour, value)])] -> SVG text. A group title
    may carry its own unit as (title, unit)."""
    bar_h, gap, left, width = 18, 14, 250, 420
    groups = [((g, unit) if isinstance(g, str) else g, bars) for g, bars in groups]
    if not groups:
        return None
    values = [v for _, bars in groups for _, _, v in bars if v is not None and v > 0]
    if not values:
        return None
    top = max(values)
    low = min(values)
    scale_min = 10 ** math.floor(math.log10(low)) if log else 0.0

    # Groups in units of their own are each drawn to their own scale.
    own_scales = len({u for (_, u), _ in groups}) > 1

    def x(v, group_top=None):
        if own_scales and group_top:
            return width * v / (group_top * 1.15)
        if log:
            span = math.log10(top * 1.2) - math.log10(scale_min)
            return width * (math.log10(max(v, scale_min)) - math.log10(scale_min)) / span
        return width * v / (top * 1.15)

    rows = []
    y = 40
    for (group, group_unit), bars in groups:
        group_top = max((v for _, _, v in bars if v is not None), default=None)
        rows.append(f'<text x="10" y="{y + 12}" font-weight="bold">{escape(group)}</text>')
        y += 20
        for name, colour, v in bars:
            if v is None:
                continue
            w = max(1.0, x(v, group_top))
            rows.append(f'<text x="20" y="{y + 13}">{escape(name)}</text>')
            rows.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>')
            shown = f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"
            rows.append(f'<text x="{left + w + 6:.1f}" y="{y + 13}">{shown} {escape(group_unit)}</text>')
            y += bar_h + 4
        y += gap
    scale = " (log scale)" if log else ""
    height = y + 10
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 150}" height="{height}" '
        f'font-family="sans-serif" font-size="12">'
        f'<rect width="100%" height="100%" fill="white"/>'
        f'<text x="10" y="20" font-size="15" font-weight="bold">{escape(title)}{scale}</text>'
        + "".join(rows)
        + "</svg>\n"
    )


def main(path, out_dir):
    by = results.load(path)
    os.makedirs(out_dir, exist_ok=True)

    def groups(*keys, loads=LOADS):
        result = []
        for load, title in loads:
            bars = [(name, colour, value(by.get(f"{prefix}/{load}"), *keys))
                    for prefix, name, colour in SERIES]
            if any(v is not None for _, _, v in bars):
                result.append((title, bars))
        return result

    charts = {
        "cpu-per-delivery.svg": bar_chart(
            "Server CPU per delivery (lower is better)", "µs",
            groups("server_cpu_us_per_delivery")),
        "p99-latency.svg": bar_chart(
            "Delivery latency p99, all receivers (lower is better)", "ms",
            groups("p99_ms"), log=True),
    }
    memory = []
    for prefix, name, colour in SERIES:
        row = by.get(f"{prefix}/loadidle")
        if row:
            memory.append((f"{name}: 3,000 idle WebSockets", [
                ("per WebSocket", colour, value(row, "rss_per_ws_kib"))]))
    for prefix, name, colour in SERIES:
        row = by.get(f"{prefix}/load4")
        if row:
            memory.append((f"{name}: 10,000 WS + 5,000 polls, idle", [
                ("per WebSocket", colour, value(row, "rss_per_ws_kib")),
                ("per held long poll", colour, value(row, "rss_per_poll_kib")),
            ]))
    charts["memory.svg"] = bar_chart("Server memory (RSS) per idle connection", "KiB", memory)

    # How the resident size grows with the connections held (all connected, before posting).
    shapes = [("loadidle", "3,000 WebSockets"), ("loadB", "1,000 WS + 1,000 polls"),
              ("load3", "10,000 WS + 5,000 polls")]
    connections = []
    for load, title in shapes:
        bars = [(name, colour, mib(value(by.get(f"{prefix}/{load}"), "rss_connected_kib")))
                for prefix, name, colour in SERIES]
        if any(v is not None for _, _, v in bars):
            connections.append((title, bars))
    charts["connections.svg"] = bar_chart(
        "Server RSS with every connection open (lower is better)", "MiB", connections)

    on, off = by.get("chatdemo/loadstorm"), by.get("chatdemo/loadstorm-off")
    if on and off:
        pair = lambda key, scale=1: [("notices on", "#2b6cb0", scaled(value(on, key), scale)),
                                     ("notices off", "#a0aec0", scaled(value(off, key), scale))]
        charts["storm.svg"] = bar_chart(
            f"Join storm: {on['ws']:,} WebSockets in {on.get('storm_secs', '?')} s", "", [
                (("message latency p99", "ms"), pair("p99_ms")),
                (("server CPU over the storm", "s"), pair("server_cpu_secs")),
                (("server peak RSS", "MiB"), pair("peak_rss_kib", 1 / 1024)),
            ])

    ours, io = by.get("trickle/chatdemo"), by.get("trickle/socketio")
    if ours and io:
        pair = lambda key: [("chatdemo", "#2b6cb0", value(ours, key)),
                            ("Socket.IO 4.8", "#805ad5", value(io, key))]
        charts["socketio.svg"] = bar_chart(
            f"Trickle: {ours['sockets']:,} WebSockets, {ours['rate']} msg/s, one Node client", "", [
                (("delivery latency p50", "ms"), pair("p50_ms")),
                (("delivery latency p99", "ms"), pair("p99_ms")),
                (("server CPU per delivery", "µs"), pair("cpu_per_delivery_us")),
            ])
    for name, svg in charts.items():
        if svg:
            with open(os.path.join(out_dir, name), "w") as f:
                f.write(svg)
            print(f"wrote {os.path.join(out_dir, name)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
