"""CLI latency: whole-process wall time of the commands users type most.

    .venv/bin/python bench/cli_latency.py [--rounds 10] [--status-instances 1]

- help_ms:          `golem-deploy --help`
- validate_one_ms:  `golem-deploy validate manifests/simple-service.yaml`, every run its
                    own Python process (GOLEM_DEPLOY_WARM=0)
- validate_one_warm_ms: the same handed to the warm process (cli/warm.py), as a user's
                    commands run from their second on
- status_json_ms:   `golem-deploy status --json` against a running deployment
                    (hello-world with --status-instances instances on a local network)

Each command runs once untimed first (warm OS caches, .pyc files written), then `rounds`
timed runs, each right after a `python -c pass` (the yardstick, see _yardstick.py): every
figure has its own yardstick samples ("yardstick_ms") and "ratio" = median / yardstick
median. Prints one JSON object with stats in milliseconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    MANIFESTS,
    bench_home,
    emit,
    hello_manifest,
    isolate,
    load_average,
    local_network,
    providers_for,
    run_cli,
    stats,
    warm_up,
)
from _yardstick import alternate, python_pass_s, ratio


def timed_ms(args: list[str], env: dict[str, str], rounds: int) -> dict[str, object]:
    """Stats of `golem-deploy *args` in ms, alternating with `python -c pass`, and their ratio."""
    run_cli(*args, env=env)  # warm-up, untimed
    python_pass_s()
    ys, ms = alternate(python_pass_s, lambda: run_cli(*args, env=env)[0], rounds)
    return {
        **stats([m * 1000 for m in ms], digits=1),
        "yardstick_ms": stats([y * 1000 for y in ys], digits=1),
        "ratio": ratio(ms, ys),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--status-instances", type=int, default=1)
    args = parser.parse_args()
    isolated = isolate()
    result: dict[str, object] = {"isolated_netns": isolated, "load_before": load_average()}
    with bench_home("gd-bench-cli-") as (home, env):
        result["help_ms"] = timed_ms(["--help"], env, args.rounds)
        simple = str(MANIFESTS / "simple-service.yaml")
        result["validate_one_ms"] = timed_ms(["validate", simple], env, args.rounds)
        warm_env = warm_up(env, MANIFESTS / "simple-service.yaml")
        result["validate_one_warm_ms"] = timed_ms(["validate", simple], warm_env, args.rounds)
        n = args.status_instances
        with local_network(home, env, providers_for(n)) as net_env:
            manifest = hello_manifest(home, "hello-status", n)
            run_cli("up", "-d", "--timeout", "5m", str(manifest), env=net_env)
            try:
                result["status_json_ms"] = timed_ms(
                    ["status", "-n", "hello-status", "--json"], net_env, args.rounds
                )
            finally:
                run_cli("down", "-n", "hello-status", env=net_env, check=False)
        result["status_instances"] = n
    result["load_after"] = load_average()
    emit(result)


if __name__ == "__main__":
    main()
