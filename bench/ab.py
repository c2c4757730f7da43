"""A/B: two golem-deploy installs, alternating `up -d` / `down` on ONE local network.

    .venv/bin/python bench/ab.py --baseline /path/to/other/.venv/bin/golem-deploy \
        [--instances 100] [--providers 4] [--rounds 3]

The way to tell whether a change made deployments faster on a shared, noisy machine (where
absolute times swing 2x between minutes): the baseline (A, e.g. a worktree of the commit
before) and this checkout (B) take turns, A B A B ..., on the same standalone local network
with `--providers` providers, so both see the same load. Each turn times `up -d` of an
N-instance hello-world until it returns (every instance running) and then its `down`.

Prints one JSON object: {"a": {"up": stats, "down": stats, "failed": turns}, "b": {...},
"b_over_a_up": median ratio, "instances", "providers", "load_before", "load_after"} (stats
as in _common.stats: median/min/max/samples). A turn whose `up` or `down` fails (on an
overloaded machine a provider may miss its heartbeats) is counted in "failed", its
deployment taken down, and the next turn goes on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    bench_home,
    cli_argv,
    emit,
    hello_manifest,
    isolate,
    load_average,
    local_network,
    stats,
)


def timed(argv: list[str], env: dict[str, str]) -> float | None:
    """Wall seconds of one CLI process; None (its output's tail shown) when it failed."""
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        print(f"  FAILED {' '.join(argv[1:3])}: {' | '.join(tail)}", file=sys.stderr, flush=True)
        return None
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="the other `golem-deploy` (A)")
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--providers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    isolated = isolate()
    clis = {"a": [args.baseline], "b": cli_argv()}
    ups: dict[str, list[float]] = {"a": [], "b": []}
    downs: dict[str, list[float]] = {"a": [], "b": []}
    failed = {"a": 0, "b": 0}
    result: dict[str, object] = {
        "isolated_netns": isolated,
        "instances": args.instances,
        "providers": args.providers,
        "load_before": load_average(),
    }
    with (
        bench_home("gd-bench-ab-") as (home, env),
        local_network(home, env, args.providers) as net_env,
    ):
        for round_ in range(args.rounds):
            for side in ("a", "b") if round_ % 2 == 0 else ("b", "a"):
                name = f"ab-{side}-{round_}"
                manifest = hello_manifest(home, name, args.instances)
                cli = clis[side]
                up = timed([*cli, "up", "-d", "--timeout", "5m", str(manifest)], net_env)
                down = timed([*cli, "down", "-n", name], net_env)
                if up is None or down is None:  # a failed turn (e.g. an overloaded provider)
                    failed[side] += 1
                    continue
                ups[side].append(up)
                downs[side].append(down)
                print(f"  {side}: up {up:.2f}s, down {down:.2f}s", file=sys.stderr, flush=True)
    for side in ("a", "b"):
        result[side] = {
            "up": stats(ups[side]) if ups[side] else None,
            "down": stats(downs[side]) if downs[side] else None,
            "failed": failed[side],
        }
    if ups["a"] and ups["b"]:
        result["b_over_a_up"] = round(stats(ups["b"])["median"] / stats(ups["a"])["median"], 3)
    result["load_after"] = load_average()
    emit(result)


if __name__ == "__main__":
    main()
