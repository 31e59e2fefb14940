"""Turns the load generator's JSON lines into the README's side-by-side table: each figure
the median of its load's runs, faults summed over them (see results.py)."""
import sys

import results

by = results.load(sys.argv[1])


def get(label, *keys, fmt="{:.1f}"):
    value = by.get(label)
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return "–"
        value = value[key]
    return fmt.format(value) if isinstance(value, (int, float)) else str(value)


def ratio(a, b, *keys):
    try:
        x, y = float(get(a, *keys, fmt="{}")), float(get(b, *keys, fmt="{}"))
        return "{:.1f}x".format(y / x) if x > 0 else "–"
    except ValueError:
        return "–"


print("| load | metric | chatdemo | Tornado 6.6.1 | Tornado / chatdemo |")
print("| --- | --- | --- | --- | --- |")
def title_of(load, row):
    shape = "{} WS + {} polls".format(row["ws"], row["polls"])
    runs = "" if row["runs"] == 1 else ", median of {} runs".format(row["runs"])
    if "messages" in row:
        return "{}: {}, {} msgs{}".format(load[4:], shape, row["messages"], runs)
    return "{}: {} held {} s{}".format(load[4:], shape, row.get("idle_secs", "?"), runs)


for load in ["loadA", "loadB", "load3"]:
    rs, py = "chatdemo/" + load, "tornado/" + load
    if rs not in by:
        continue
    title = title_of(load, by[rs])
    metrics = [
        ("lost / dup / out of order", None),
        ("deliveries per second", ("deliveries_per_sec",)),
        ("server CPU µs per delivery", ("server_cpu_us_per_delivery",)),
        ("load generator CPU s", ("loadgen_cpu_secs",)),
        ("WS latency p50 / p99 / p99.9 / max ms", "ws_stats"),
        ("poll latency p50 / p99 / p99.9 / max ms", "poll_stats"),
        ("all latency p99 ms", ("p99_ms",)),
        ("POST round trip p50 / p99 ms", "post"),
    ]
    for name, keys in metrics:
        if keys is None:
            cell = lambda l: "{} / {} / {}".format(get(l, "lost", fmt="{}"), get(l, "duplicated", fmt="{}"), get(l, "out_of_order", fmt="{}"))
            print(f"| {title} | {name} | {cell(rs)} | {cell(py)} | |")
        elif keys in ("ws_stats", "poll_stats"):
            cell = lambda l: " / ".join(get(l, keys, k) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms"))
            print(f"| {title} | {name} | {cell(rs)} | {cell(py)} | {ratio(rs, py, keys, 'p99_ms')} (p99) |")
        elif keys == "post":
            cell = lambda l: get(l, "post_rtt_p50_ms") + " / " + get(l, "post_rtt_p99_ms")
            print(f"| {title} | {name} | {cell(rs)} | {cell(py)} | |")
        else:
            flip = keys[0] == "deliveries_per_sec"
            r = ratio(py, rs, *keys) if flip else ratio(rs, py, *keys)
            print(f"| {title} | {name} | {get(rs, *keys)} | {get(py, *keys)} | {r} |")

for load in ["loadidle", "load4"]:
    rs, py = "chatdemo/" + load, "tornado/" + load
    if rs not in by:
        continue
    title = title_of(load, by[rs])
    for name, key in [
        ("server RSS per WebSocket KiB", "rss_per_ws_kib"),
        ("server RSS per held poll KiB", "rss_per_poll_kib"),
        ("server CPU µs per connection per second idle", "idle_cpu_us_per_conn_per_sec"),
        ("server RSS with all connected KiB", "rss_connected_kib"),
    ]:
        if key == "rss_per_poll_kib" and not by[rs]["polls"]:
            continue
        print(f"| {title} | {name} | {get(rs, key, fmt='{:.2f}')} | {get(py, key, fmt='{:.2f}')} | |")

# The Redis store against the in-memory room, from the same run.
store_rows = [
    ("loadA", "chatdemo", "redis", "1 instance"),
    ("loadAeven", "chatdemo", "redis", "1 instance"),
    ("loadB", "chatdemo", "redis", "1 instance"),
    ("loadA", "chatdemo", "redis-2x", "2 instances, receivers split"),
]
if any(f"{name}/{load}" in by for load, _, name, _ in store_rows):
    print()
    print("| load | store | lost / dup / out of order | server CPU µs per delivery | vs memory | redis-server CPU µs per delivery | all latency p99 ms | POST round trip p50 / p99 ms | Redis writes / messages | Redis stream reads per message |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for load, memory, name, shape in store_rows:
        label = f"{name}/{load}"
        if label not in by:
            continue
        row = by[label]
        faults = "{} / {} / {}".format(row["lost"], row["duplicated"], row["out_of_order"])
        vs = ratio(f"{memory}/{load}", label, "server_cpu_us_per_delivery")
        redis_row = by.get(label + "/redis", {})
        stats = redis_row.get("calls", {})
        redis_us = get(label, "store_cpu_us_per_delivery")
        # The load generator's warm-up post is a message too.
        messages = row["messages"] + 1
        writes = stats.get("evalsha", 0) + stats.get("eval", 0)
        reads = stats.get("xread", 0)
        print(
            f"| {title_of(load, row)} | Redis, {shape} | {faults} | {get(label, 'server_cpu_us_per_delivery')} | {vs} | {redis_us} "
            f"| {get(label, 'p99_ms')} | {get(label, 'post_rtt_p50_ms')} / {get(label, 'post_rtt_p99_ms')} "
            f"| {writes} / {messages} | {reads / messages:.2f} |"
        )

# The join storm, with notices on and off (same load, same run).
on, off = "chatdemo/loadstorm", "chatdemo/loadstorm-off"
if on in by and off in by:
    row = by[on]
    print()
    print("| join storm: {} WebSockets over {} s, {} msgs at 2/s | notices on | notices off | on / off |".format(row["ws"], row["storm_secs"], row["messages"]))
    print("| --- | --- | --- | --- |")
    faults = lambda l: "{} / {} / {}".format(get(l, "lost", fmt="{}"), get(l, "duplicated", fmt="{}"), get(l, "out_of_order", fmt="{}"))
    print(f"| lost / dup / out of order | {faults(on)} | {faults(off)} | |")
    for name, key, fmt in [
        ("message latency p50 ms (live)", "p50_ms", "{:.1f}"),
        ("message latency p99 ms (live)", "p99_ms", "{:.1f}"),
        ("notice entries", "notice_entries", "{}"),
        ("logins counted by the notices", "notices_counted", "{}"),
        ("server CPU s", "server_cpu_secs", "{:.2f}"),
        ("server peak RSS KiB", "peak_rss_kib", "{}"),
    ]:
        r = ratio(off, on, key) if key in ("server_cpu_secs", "peak_rss_kib", "p99_ms") else ""
        print(f"| {name} | {get(on, key, fmt=fmt)} | {get(off, key, fmt=fmt)} | {r} |")
