"""Draws SVG bar charts from the load generator's JSON lines (benches/compare.sh writes
them to target/bench/results.jsonl). No plotting library: each chart is a few rectangles
and labels, so the picture is exactly the numbers in the file.

    python3 benches/charts.py RESULTS.jsonl OUT_DIR

Writes OUT_DIR/cpu-per-delivery.svg, OUT_DIR/p99-latency.svg and OUT_DIR/memory.svg,
each from the rows it finds (a missing server or load is left out).
"""
import json
import math
import os
import sys
from html import escape

SERIES = [  # label prefix, name in the legend, colour
    ("chatdemo", "chatdemo (memory)", "#2b6cb0"),
    ("redis", "chatdemo (Redis, 1 instance)", "#38a169"),
    ("redis-2x", "chatdemo (Redis, 2 instances)", "#68d391"),
    ("tornado", "Tornado 6.6.1", "#c05621"),
]
LOADS = [
    ("load1", "load 1: 100 WS + 100 polls, flat out"),
    ("load2", "load 2: 2,000 WS + 2,000 polls, 20 msg/s"),
    ("load3", "load 3: 10,000 WS + 5,000 polls, 1 msg/s"),
]


def value(row, *keys):
    for key in keys:
        if not isinstance(row, dict) or key not in row:
            return None
        row = row[key]
    return row if isinstance(row, (int, float)) else None


def bar_chart(title, unit, groups, log=False):
    """groups: [(group title, [(series name, colour, value)])] -> SVG text."""
    bar_h, gap, left, width = 18, 14, 250, 420
    values = [v for _, bars in groups for _, _, v in bars if v is not None and v > 0]
    if not values:
        return None
    top = max(values)
    low = min(values)
    scale_min = 10 ** math.floor(math.log10(low)) if log else 0.0

    def x(v):
        if log:
            span = math.log10(top * 1.2) - math.log10(scale_min)
            return width * (math.log10(max(v, scale_min)) - math.log10(scale_min)) / span
        return width * v / (top * 1.15)

    rows = []
    y = 40
    for group, bars in groups:
        rows.append(f'<text x="10" y="{y + 12}" font-weight="bold">{escape(group)}</text>')
        y += 20
        for name, colour, v in bars:
            if v is None:
                continue
            w = max(1.0, x(v))
            rows.append(f'<text x="20" y="{y + 13}">{escape(name)}</text>')
            rows.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>')
            shown = f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"
            rows.append(f'<text x="{left + w + 6:.1f}" y="{y + 13}">{shown} {escape(unit)}</text>')
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
    rows = [json.loads(line) for line in open(path) if line.strip()]
    by = {r["label"]: r for r in rows}
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
        row = by.get(f"{prefix}/load4")
        if row:
            memory.append((f"{name}: idle, per connection", [
                ("per WebSocket", colour, value(row, "rss_per_ws_kib")),
                ("per held long poll", colour, value(row, "rss_per_poll_kib")),
            ]))
    charts["memory.svg"] = bar_chart("Server memory (RSS) per idle connection", "KiB", memory)
    for name, svg in charts.items():
        if svg:
            with open(os.path.join(out_dir, name), "w") as f:
                f.write(svg)
            print(f"wrote {os.path.join(out_dir, name)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
