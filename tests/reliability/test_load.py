"""Load: many instances on five local providers, one of which dies; several deployments at
once. Marked `load` (minutes each, heavy on a 2-core machine); bench/reliability.py --load
runs them, and so does `pytest -m load`.

Size: issue 6's 100 instances on 5 providers. Each local provider offers 32 threads and every
instance reserves one, so the 4 survivors of a death can host all 100 again.
RELIABILITY_LOAD_INSTANCES and RELIABILITY_LOAD_PROVIDERS override the size.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import Cli
from _harness import Scenario, service

pytestmark = [pytest.mark.localnet, pytest.mark.load, pytest.mark.slow, pytest.mark.timeout(1200)]

INSTANCES = int(os.environ.get("RELIABILITY_LOAD_INSTANCES", "100"))
PROVIDERS = int(os.environ.get("RELIABILITY_LOAD_PROVIDERS", "5"))
DYING = f"local-provider-{PROVIDERS}"


def test_load_many_instances_survive_a_provider_dying(cli: Cli, tmp_path: Path) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "load",
        {
            "app": service(
                instances=INSTANCES,
                run={"every": "10s", "steps": [["/bin/echo", "alive"]]},
                restart={"policy": "on-failure", "max_restarts": 2, "backoff": "1s"},
            )
        },
        providers=PROVIDERS,
        budget="5.0",
        faults={DYING: {"die_after": "60s"}},
    )
    started = time.monotonic()
    up = scenario.up(timeout="8m")
    assert up.returncode == 0, up.stdout + up.stderr
    up_seconds = time.monotonic() - started
    status = scenario.status()
    on_dying = [i for i in status["services"][0]["instances"] if i["provider_name"] == DYING]
    assert on_dying, "no instance on the provider that dies"
    scenario.wait_for_status(
        "every instance running on the survivors",
        lambda s: all(
            i["state"] == "running" and i["provider_name"] != DYING
            for i in s["services"][0]["instances"]
        ),
        timeout=400,
    )
    down = scenario.down(timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit(vanished=(DYING,))
    print(f"load: {INSTANCES} instances running after {up_seconds:.0f}s")


def test_load_parallel_deployments(cli: Cli, tmp_path: Path) -> None:
    scenarios = [
        Scenario.create(cli, tmp_path, f"par{k}", {"app": service(instances=2)}) for k in range(5)
    ]
    ups: list[subprocess.Popen[str]] = [s.popen_up("-d", "--timeout", "8m") for s in scenarios]
    outputs: list[Any] = []
    try:
        for up in ups:
            outputs.append(up.communicate(timeout=600))
    finally:
        for up in ups:
            if up.poll() is None:
                up.kill()
                up.wait()
    for up, (out, err) in zip(ups, outputs, strict=True):
        assert up.returncode == 0, out + err
    urls = {s.status()["network"]["api_url"] for s in scenarios}
    assert len(urls) == 5  # five private networks, side by side
    downs = [
        cli.popen("down", "-n", s.name, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for s in scenarios
    ]
    for down in downs:
        out, err = down.communicate(timeout=300)
        assert down.returncode == 0, out + err
    for scenario in scenarios:
        scenario.audit()
