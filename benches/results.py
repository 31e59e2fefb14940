"""The benchmark's JSON lines, one row per label: every number the median of that label's
runs (compare.sh runs each load several times, alternating servers), except the counts
of lost, duplicated and out-of-order deliveries, which are summed, so one bad run shows.
Used by table.py, charts.py and targets.py."""
import json
import statistics

FAULTS = ("lost", "duplicated", "out_of_order")


def merge(rows):
    """The median of each number over `rows` (dicts alike in shape), recursively."""
    first = rows[0]
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(r, dict) and k in r for r in rows)]
        merged = {}
        for key in keys:
            values = [r[key] for r in rows]
            if key in FAULTS and all(isinstance(v, int) for v in values):
                merged[key] = sum(values)
            else:
                merged[key] = merge(values)
        return merged
    if all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rows):
        return statistics.median(rows)
    return first


def load(path):
    """{label: merged row}; each merged row also says how many runs it has (`runs`) and
    the range of its main figures (`range`: key -> [min, max])."""
    by = {}
    for line in open(path):
        if line.strip():
            row = json.loads(line)
            by.setdefault(row["label"], []).append(row)
    merged = {}
    for label, rows in by.items():
        row = merge(rows)
        row["runs"] = len(rows)
        row["range"] = {
            key: [min(r[key] for r in rows), max(r[key] for r in rows)]
            for key in ("server_cpu_us_per_delivery", "p99_ms", "rss_per_ws_kib", "cpu_per_delivery_us")
            if all(isinstance(r.get(key), (int, float)) for r in rows)
        }
        merged[label] = row
    return merged
