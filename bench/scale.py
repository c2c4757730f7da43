"""Scale: how many idle instances one deployment brings up, and what they cost.

    .venv/bin/python bench/scale.py [--instances 250 500] [--seconds 30] [--limit 300]

One standalone local network with enough providers for the largest N (32 one-thread
instances each) is started; then for each N, one deployment of N instances of an idle
service (deployed and started, no start steps, no periodic step: the smallest steady state
an instance can have) is brought up with `golem-deploy up -d` (timed until it returns,
i.e. every instance running, at most `--limit` seconds), left running for `--seconds`
while the supervisor's CPU and RSS are sampled once a second and the requests the
requestor's yagna daemon serves are counted (from its access log: the supervisor is its
only client), then taken down with `golem-deploy down` (timed).

Prints one JSON object: {"runs": {N: {"up_s", "down_s", "came_up", "supervisor":
{cpu_pct, rss_mb, rss_mb_max}, "yagna_requests_per_s", "localnet": {...}}},
"largest_n_up_within_limit", "providers", "load_before", "load_after", "limit_s"}.
An `up` that fails or does not finish within the limit is recorded (`came_up: false` with
the CLI's last lines) and its deployment taken down; the next N is still tried.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    bench_home,
    cli_argv,
    emit,
    isolate,
    load_average,
    local_network,
    providers_for,
    run_cli,
)
from supervisor_cost import ACCESS_LOG, network_pids, requests_in_logs, sample

IDLE_MANIFEST = """\
version: "1"
name: {name}
budget: 10000.0
network: false
services:
  idle:
    payload:
      image_hash: d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376
      min_cpu_threads: 1
    instances: {instances}
    expiration: 30m
"""


def up_within(manifest: Path, env: dict[str, str], limit: float) -> tuple[float, bool, str]:
    """(seconds, came up, the CLI's last lines) of `up -d` bounded by `limit`."""
    argv = cli_argv("up", "-d", "--timeout", f"{int(limit)}s", str(manifest))
    began = time.perf_counter()
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=limit + 60, check=False
        )
        lines = (done.stdout + done.stderr).strip().splitlines()
        errors = [line for line in lines if line.startswith("error:")]  # the reason
        tail = "\n".join(errors or lines[-3:])
        ok = done.returncode == 0
    except subprocess.TimeoutExpired:
        tail, ok = "up -d did not return in time", False
    elapsed = time.perf_counter() - began
    return elapsed, ok and elapsed <= limit, tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[250, 500])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--limit", type=float, default=300.0, help="seconds `up` may take")
    args = parser.parse_args()
    isolated = isolate()
    os.environ.setdefault("GOLEM_DEPLOY_LOCALNET_RUST_LOG", ACCESS_LOG)  # requests counted
    count = providers_for(max(args.instances))
    result: dict[str, object] = {
        "isolated_netns": isolated,
        "providers": count,
        "limit_s": args.limit,
        "load_before": load_average(),
    }
    runs: dict[str, object] = {}
    with bench_home("gd-bench-scale-") as (home, env), local_network(home, env, count) as net:
        state = home / "localnet" / f"p{count}"
        network = network_pids(state)
        for n in args.instances:
            name = f"idle-{n}"
            manifest = home / f"{name}.yaml"
            manifest.write_text(IDLE_MANIFEST.format(name=name, instances=n))
            print(f"up {n} idle instances on {count} providers", file=sys.stderr, flush=True)
            up, came_up, tail = up_within(manifest, net, args.limit)
            run: dict[str, object] = {"up_s": round(up, 2), "came_up": came_up}
            print(f"  up {up:.1f}s, came up: {came_up}", file=sys.stderr, flush=True)
            try:
                if came_up:
                    pid = int((home / "deployments" / name / "supervisor.pid").read_text())
                    began = datetime.now().astimezone()
                    measured = sample({"supervisor": pid, **network}, args.seconds)
                    ended = datetime.now().astimezone()
                    served = requests_in_logs(state / "logs", "requestor", began, ended)
                    wall = (ended - began).total_seconds()
                    run["supervisor"] = measured.pop("supervisor")
                    run["localnet"] = measured
                    run["yagna_requests_per_s"] = round(served.total() / wall, 1)
                else:
                    run["error"] = tail
            finally:
                down, _ = run_cli("down", "-n", name, env=net, check=False)
                run["down_s"] = round(down, 2)
                print(f"  down {down:.1f}s", file=sys.stderr, flush=True)
            runs[str(n)] = run
    result["runs"] = runs
    up_ns = [n for n in args.instances if runs[str(n)]["came_up"]]  # type: ignore[index]
    result["largest_n_up_within_limit"] = max(up_ns) if up_ns else 0
    result["load_after"] = load_average()
    emit(result)


if __name__ == "__main__":
    main()
