"""golem-deploy against yapapi 0.13.1: the same service, the same local network, in turns.

    .venv/bin/python bench/vs_yapapi.py [--instances 1 10] [--rounds 3]

hello-world is deployed by a yapapi program (bench/yapapi/hello.py, the Services API as a
yapapi user writes it) and by `golem-deploy up -d` (manifests/hello-world.yaml with the same
image), on ONE local network with one provider per instance (as on the real network, where
a provider rarely takes more than one of your instances). Whole processes are timed from
the outside:

- up:   from starting the process until every instance runs (yapapi: the program prints
        UP; ours: `up -d` returns);
- down: from asking to stop until the process ends, which on both sides includes
        terminating the agreements and accepting the providers' invoices (yapapi: a line on
        the program's stdin, then `async with Golem` exits; ours: `golem-deploy down`).

golem-deploy runs twice per round: "ours" as a user's commands run from their second on,
handed to the warm process the first one started (cli/warm.py), and "ours_cold" with
GOLEM_DEPLOY_WARM=0, every command its own Python process. Rounds alternate yapapi / ours /
ours_cold, then the reverse (so a load trend hurts no side); medians of `rounds`.
"ratio_up"/"ratio_down" = yapapi median / ours, "ratio_up_cold"/"ratio_down_cold" the same
against ours_cold (our figure is the yardstick here): above 1, golem-deploy is faster.
"ours_phases"/"ours_cold_phases" split our up and down by the deployment's journal
(`phases` below says which span is which), so a slow figure says where the time went.

yapapi is not a dependency of golem-deploy: it comes from $GOLEM_DEPLOY_BENCH_YAPAPI_PYTHON
(a Python that has yapapi 0.13.1), else bench/.venv-yapapi, created with pip on first use --
before this process moves into its network namespace, where no index is reachable. yapapi
gets exactly what `golem-deploy localnet start` prints (YAGNA_* and a PATH with the local
network's `gftp` first). The image is bench/_image.py's, served from loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    bench_home,
    emit,
    hello_manifest,
    isolate,
    load_average,
    local_network,
    run_cli,
    stats,
    warm_up,
)
from _image import Image, served_image
from _yardstick import ratio

HERE = Path(__file__).resolve().parent
YAPAPI_VERSION = "0.13.1"
YAPAPI_PROGRAM = HERE / "yapapi" / "hello.py"
TIMEOUT_S = 300.0


def yapapi_python() -> Path:
    """A Python with yapapi 0.13.1 (see the module docstring); installs it if needed."""
    given = os.environ.get("GOLEM_DEPLOY_BENCH_YAPAPI_PYTHON")
    if given:
        return Path(given)
    venv = HERE / ".venv-yapapi"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import yapapi, sys; sys.exit(yapapi.__version__ != sys.argv[1])"]
    if python.exists() and subprocess.run([*probe, YAPAPI_VERSION], check=False).returncode == 0:
        return python
    print(f"installing yapapi {YAPAPI_VERSION} into {venv}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", f"yapapi=={YAPAPI_VERSION}"]
    subprocess.run(pip, check=True, timeout=600)
    return python


def manifest(folder: Path, name: str, instances: int, image: Image) -> Path:
    """hello-world with `instances` instances, asking for the benchmark image."""
    path = hello_manifest(folder, name, instances)
    lines = []
    for line in path.read_text().splitlines():
        if line.strip().startswith("image_hash:"):
            indent = line.split("image_hash:")[0]
            lines += [f'{indent}image_url: "{image.url}"', f'{indent}image_hash: "{image.sha3}"']
        else:
            lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


def yapapi_run(python: Path, env: dict[str, str], instances: int, log: Path) -> tuple[float, float]:
    """(up, down) seconds of one run of the yapapi program."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [str(python), str(YAPAPI_PROGRAM), str(instances)],
        env={**env, "YAPAPI_LOG": str(log), "HOME": str(log.parent)},
        cwd=log.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        output: list[str] = []
        while not output or output[-1] != "UP":
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"yapapi exited before UP:\n{chr(10).join(output)[-3000:]}")
            output.append(line.strip())
            if time.perf_counter() - began > TIMEOUT_S:
                raise RuntimeError("yapapi: the service did not come up in time")
        up = time.perf_counter() - began
        stopping = time.perf_counter()
        process.stdin.write("down\n")
        process.stdin.flush()
        rest, _ = process.communicate(timeout=TIMEOUT_S)
        down = time.perf_counter() - stopping
        if process.returncode != 0 or "DOWN" not in rest.split():
            raise RuntimeError(f"yapapi failed (exit {process.returncode}):\n{rest[-3000:]}")
        # Its down must have settled every invoice, as ours does, or the race is unfair.
        accepted = log.read_text().count("Accepted invoice from")
        if accepted < instances:
            tail = log.read_text()[-2000:]
            raise RuntimeError(f"yapapi accepted {accepted} of {instances} invoices:\n{tail}")
        return up, down
    finally:
        if process.poll() is None:
            process.kill()  # only on failure: the process this function started
            process.wait()


def ours_run(
    home: Path, env: dict[str, str], instances: int, image: Image
) -> tuple[float, float, dict[str, float]]:
    """(up, down) seconds of `golem-deploy up -d` and `down` of the same service, and where
    they went (`phases`)."""
    name = f"vs-{instances}"
    path = manifest(home, name, instances, image)
    began = time.time()
    up, _ = run_cli("up", "-d", "--timeout", "5m", str(path), env=env)
    up_end = time.time()
    down, _ = run_cli("down", "-n", name, env=env)
    down_end = time.time()
    journal = home / "deployments" / name / "journal.jsonl"
    return up, down, phases(journal, began, up_end, down_end)


def phases(journal: Path, began: float, up_end: float, down_end: float) -> dict[str, float]:
    """Where our `up -d` and `down` spent their time, from the deployment's journal (its
    records carry wall-clock `ts`) and the commands' own start/end (seconds):

    - up_cli_to_supervisor: the command started -> the supervisor journaled
      DeploymentStarted (CLI start-up and imports, its checks of your yagna, spawning the
      supervisor and its imports);
    - up_negotiate: DeploymentStarted -> the last AgreementCreated;
    - up_engine: DeploymentStarted -> DeploymentRunning (allocation, demand, agreements,
      activities, deploy and start);
    - up_cli_notice: DeploymentRunning -> `up -d` returned (its wait loop, process exit);
    - down_cli_to_request: `down` started -> DownRequested;
    - down_engine: DownRequested -> DeploymentStopped (shutdown scripts, destroys,
      terminations, invoices);
    - down_release: DownRequested -> the last AgreementTerminated;
    - down_invoices: the last AgreementTerminated -> the last InvoiceAccepted;
    - down_cli_exit: DeploymentStopped -> `down` returned."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for line in journal.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line
        kind, ts = record.get("kind"), record.get("ts")
        if isinstance(kind, str) and isinstance(ts, (int, float)):
            first.setdefault(kind, ts)
            last[kind] = ts
    spans = {
        "up_cli_to_supervisor": (began, first.get("DeploymentStarted")),
        "up_negotiate": (first.get("DeploymentStarted"), last.get("AgreementCreated")),
        "up_engine": (first.get("DeploymentStarted"), first.get("DeploymentRunning")),
        "up_cli_notice": (first.get("DeploymentRunning"), up_end),
        "down_cli_to_request": (up_end, first.get("DownRequested")),
        "down_engine": (first.get("DownRequested"), last.get("DeploymentStopped")),
        "down_release": (first.get("DownRequested"), last.get("AgreementTerminated")),
        "down_invoices": (last.get("AgreementTerminated"), last.get("InvoiceAccepted")),
        "down_cli_exit": (last.get("DeploymentStopped"), down_end),
    }
    return {k: round(b - a, 3) for k, (a, b) in spans.items() if a is not None and b is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    python = yapapi_python()  # before isolate(): pip may need the package index
    isolated = isolate()
    providers = max(args.instances)
    result: dict[str, object] = {
        "isolated_netns": isolated,
        "load_before": load_average(),
        "providers": providers,
        "yapapi": YAPAPI_VERSION,
    }
    logs = Path(tempfile.mkdtemp(prefix="gd-bench-yapapi-"))
    try:
        with (
            bench_home("gd-bench-vs-") as (home, env),
            served_image() as image,
            local_network(home, env, providers) as net_env,
        ):
            yapapi_env = {
                **net_env,  # YAGNA_* and PATH with the network's gftp, as `localnet start`
                "IMAGE_URL": image.url,
                "IMAGE_HASH": image.sha3,
            }
            # ours: golem-deploy as it runs from a user's second command on (the warm
            # process, cli/warm.py); ours_cold: every command its own process.
            envs = {
                "ours": warm_up(net_env, manifest(home, "vs-warm-up", 1, image)),
                "ours_cold": net_env,
            }
            for n in args.instances:
                samples: dict[str, list[float]] = {}
                spent: dict[str, dict[str, list[float]]] = {}
                for round_ in range(args.rounds):
                    order = ["yapapi", "ours", "ours_cold"]
                    if round_ % 2:
                        order.reverse()
                    for side in order:
                        if side == "yapapi":
                            log = logs / f"yapapi-{n}-{round_}.log"
                            up, down = yapapi_run(python, yapapi_env, n, log)
                        else:
                            up, down, where = ours_run(home, envs[side], n, image)
                            for phase, seconds in where.items():
                                spent.setdefault(side, {}).setdefault(phase, []).append(seconds)
                        samples.setdefault(f"{side}_up", []).append(up)
                        samples.setdefault(f"{side}_down", []).append(down)
                        print(
                            f"  {n} instances, {side}: up {up:.2f}s, down {down:.2f}s",
                            file=sys.stderr,
                            flush=True,
                        )
                figures: dict[str, object] = {k: stats(v) for k, v in samples.items()}
                for what in ("up", "down"):
                    for side, suffix in (("ours", ""), ("ours_cold", "_cold")):
                        figures[f"ratio_{what}{suffix}"] = ratio(
                            samples[f"yapapi_{what}"], samples[f"{side}_{what}"]
                        )
                for side, phases_ in spent.items():
                    figures[f"{side}_phases"] = {k: stats(v) for k, v in phases_.items()}
                result[str(n)] = figures
    finally:
        if os.environ.get("GOLEM_DEPLOY_BENCH_KEEP_LOGS"):
            print(f"yapapi logs kept in {logs}", file=sys.stderr)
        else:
            shutil.rmtree(logs, ignore_errors=True)
    result["load_after"] = load_average()
    emit(result)


if __name__ == "__main__":
    main()
