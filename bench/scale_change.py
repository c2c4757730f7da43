"""Scaling a running deployment: `golem-deploy scale hello=100` on a 10-instance one.

    .venv/bin/python bench/scale_change.py [--from 10] [--to 100] [--rounds 3]

Warm, as up_down.py: a standalone local network (`golem-deploy localnet start`, exported
YAGNA_* variables) with enough providers for the larger count; each round

- `up -d` a hello-world deployment of `--from` instances (untimed),
- scale_10_to_100_s: `golem-deploy scale hello=<to>` until it returns, i.e. the change is
  applied and every new instance runs (the first ones untouched),
- `down` (untimed).

Prints one JSON object: {"scale_10_to_100_s": stats, "from": N, "to": M, "providers": P,
"cores": ..., "load_before"/"load_after": ...}; the key names the default counts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    bench_home,
    emit,
    hello_manifest,
    isolate,
    load_average,
    local_network,
    providers_for,
    run_cli,
    stats,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="start", type=int, default=10)
    parser.add_argument("--to", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    isolated = isolate()
    result: dict[str, object] = {"isolated_netns": isolated, "load_before": load_average()}
    samples: list[float] = []
    providers = providers_for(args.to)
    with bench_home("gd-bench-scale-") as (home, env), local_network(home, env, providers) as net:
        for round_ in range(args.rounds):
            name = f"scale-{round_}"
            manifest = hello_manifest(home, name, args.start)
            run_cli("up", "-d", "--timeout", "5m", str(manifest), env=net)
            took, _ = run_cli("scale", "-n", name, f"hello={args.to}", "--timeout", "10m", env=net)
            run_cli("down", "-n", name, env=net)
            samples.append(took)
            print(f"  {name}: {args.start} -> {args.to} in {took:.2f}s", file=sys.stderr)
    key = f"scale_{args.start}_to_{args.to}_s"
    result.update(
        {key: stats(samples), "from": args.start, "to": args.to, "providers": providers},
        load_after=load_average(),
    )
    emit(result)


if __name__ == "__main__":
    main()
