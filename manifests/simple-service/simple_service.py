#!/usr/bin/env python3
"""The service's command-line face: statistics of the observations collected so far.

--stats prints one JSON object (size, min, max, mean, median, stdev) of the values in
/golem/work/observations.txt; --health exits 0 while the simulator's process is alive.
"""

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

WORK = Path(os.environ.get("GOLEM_WORK", "/golem/work"))
DATA = WORK / "observations.txt"
PIDFILE = WORK / "simulator.pid"


def values() -> list[float]:
    if not DATA.exists():
        return []
    out = []
    for line in DATA.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out.append(float(parts[1]))
    return out


def stats() -> int:
    data = values()
    summary = {
        "size": len(data),
        "min": round(min(data), 4) if data else None,
        "max": round(max(data), 4) if data else None,
        "mean": round(statistics.fmean(data), 4) if data else None,
        "median": round(statistics.median(data), 4) if data else None,
        "stdev": round(statistics.stdev(data), 4) if len(data) > 1 else None,
    }
    print("stats: " + json.dumps(summary))
    return 0


def health() -> int:
    try:
        os.kill(int(PIDFILE.read_text()), 0)
    except (OSError, ValueError):
        print("unhealthy: simulator not running")
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="simple service")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--stats", action="store_true")
    group.add_argument("--health", action="store_true")
    args = parser.parse_args()
    sys.exit(stats() if args.stats else health())
