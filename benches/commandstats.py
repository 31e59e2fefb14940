"""Reads `INFO commandstats` on stdin; prints one JSON line with the calls per command for
the load labelled argv[1], run on argv[2] instances (for table.py)."""
import json
import sys

calls = {}
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("cmdstat_"):
        continue
    name, _, stats = line.partition(":")
    fields = dict(item.split("=", 1) for item in stats.split(","))
    # Calls that failed (an EVALSHA before the script is loaded: NOSCRIPT) changed nothing.
    done = int(fields["calls"]) - int(fields.get("failed_calls", 0)) - int(fields.get("rejected_calls", 0))
    calls[name[len("cmdstat_"):]] = done
print(json.dumps({"label": sys.argv[1] + "/redis", "instances": int(sys.argv[2]), "calls": calls}))
