"""Time to running and time to down: `golem-deploy up -d` / `down` of hello-world.

    .venv/bin/python bench/up_down.py [--instances 1 10 100] [--rounds 3] [--cold-rounds 3]

Warm (the goal's case, "after the local network is up"): a standalone local network is
started first (`golem-deploy localnet start`, exported YAGNA_* variables) with enough
providers for N one-thread instances (32 per provider, at least 3); then each round times

- up_N:   `golem-deploy up -d hello-N.yaml` until it returns, i.e. every instance running;
- down_N: `golem-deploy down -n hello-N` until it returns, i.e. everything released.

Each of them right after one sample of the yardstick (_yardstick.YagnaRoundTrip on the same
network: a raw REST activity create + one exec batch), so a round is yardstick, up,
yardstick, down; "ratio" = median / median of that network's yardstick samples.

Cold (up_1_cold): no yagna configured, so `up -d` also starts the deployment's private
local network before the instance can run (a new deployment each round, so its network's
data dirs are new too); down stops it again.

Prints one JSON object: {"up": {N: stats + ratio}, "down": {N: stats + ratio},
"yardstick": {N: stats}, "up_cold": {1: stats}, "down_cold": {1: stats},
"up_wide"/"down_wide": {N: stats + providers}, "providers": {N: count}, "cores": ...}.
The cold figures have no ratio: there is no network to measure a yardstick on before `up`
starts one.

Wide (up_wide / down_wide, `--wide-providers 13`): the largest N (when >= 100) again on 13
providers, so the few providers' share of up_100 is known (issue 15: within 1.5x).
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
from _image import served_image
from _yardstick import YagnaRoundTrip, ratio


def up_down_rounds(
    home: Path,
    env: dict[str, str],
    instances: int,
    rounds: int,
    extra: list[str],
    *,
    fresh: bool = False,
    yardstick: YagnaRoundTrip | None = None,
) -> tuple[list[float], list[float], list[float]]:
    """`rounds` times up -d then down, each preceded by a yardstick sample if one is given;
    fresh: a new deployment (folder) every round. (ups, downs, yardstick samples)"""
    ups, downs, ys = [], [], []
    for round_ in range(rounds):
        name = f"hello-{instances}" + (f"-cold{round_}" if fresh else "")
        manifest = hello_manifest(home, name, instances)
        if yardstick:
            ys.append(yardstick.sample())
        up, _done = run_cli("up", "-d", "--timeout", "5m", *extra, str(manifest), env=env)
        if yardstick:
            ys.append(yardstick.sample())
        down, _done = run_cli("down", "-n", name, env=env)
        ups.append(up)
        downs.append(down)
        print(f"  {name}: up {up:.2f}s, down {down:.2f}s", file=sys.stderr, flush=True)
    if ys:
        print(f"  yardstick: {', '.join(f'{y:.2f}s' for y in ys)}", file=sys.stderr, flush=True)
    return ups, downs, ys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-rounds", type=int, default=3)
    parser.add_argument(
        "--wide-providers",
        type=int,
        default=13,
        help="also bring the largest N up on this many providers (0: don't), to tell how "
        "much of its time is the few providers' (issue 15: within 1.5x)",
    )
    args = parser.parse_args()
    isolated = isolate()
    result: dict[str, object] = {"isolated_netns": isolated, "load_before": load_average()}
    up: dict[str, object] = {}
    down: dict[str, object] = {}
    yardsticks: dict[str, object] = {}
    providers: dict[str, int] = {}
    with bench_home("gd-bench-updown-") as (home, env), served_image() as image:
        for n in args.instances:
            count = providers_for(n)
            providers[str(n)] = count
            print(f"warm local network, {count} providers", file=sys.stderr, flush=True)
            with (
                local_network(home, env, count) as net_env,
                YagnaRoundTrip(net_env, image) as yardstick,
            ):
                yardstick.sample()  # warm-up: the provider's first activity, untimed
                ups, downs, ys = up_down_rounds(
                    home, net_env, n, args.rounds, [], yardstick=yardstick
                )
            up[str(n)] = {**stats(ups), "ratio": ratio(ups, ys)}
            down[str(n)] = {**stats(downs), "ratio": ratio(downs, ys)}
            yardsticks[str(n)] = stats(ys)
        largest = max(args.instances)
        if args.wide_providers and largest >= 100:
            count = args.wide_providers
            print(f"{largest} instances on {count} providers", file=sys.stderr, flush=True)
            with local_network(home, env, count) as net_env:
                ups, downs, _ = up_down_rounds(home, net_env, largest, args.rounds, [])
            result["up_wide"] = {str(largest): {**stats(ups), "providers": count}}
            result["down_wide"] = {str(largest): {**stats(downs), "providers": count}}
        if args.cold_rounds:
            print("cold: up -d starts its own local network", file=sys.stderr, flush=True)
            ups, downs, _ = up_down_rounds(
                home, env, 1, args.cold_rounds, ["--providers", "3"], fresh=True
            )
            result["up_cold"] = {"1": stats(ups)}
            result["down_cold"] = {"1": stats(downs)}
    result.update(
        up=up, down=down, yardstick=yardsticks, providers=providers, load_after=load_average()
    )
    emit(result)


if __name__ == "__main__":
    main()
