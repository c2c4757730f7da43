"""The example manifests, compiled, run by the engine on the real local network."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from _engine_helpers import Recorder, assert_settled, golem_for, wait_for

from golem_deploy.compiler import compile_manifest, price_caps
from golem_deploy.engine import ServiceState
from golem_deploy.localnet import LocalNetInfo
from golem_deploy.manifest import load_manifest

pytestmark = [pytest.mark.localnet, pytest.mark.anyio]
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


@pytest.mark.parametrize(
    "file, service, expect, after_stop",
    [
        ("hello-world.yaml", "hello", "Hello from Golem!", None),
        # the simulator (started from the mounted ./simple-service) collects observations
        # and its shutdown step stops it
        ("simple-service.yaml", "simple", 'stats: {"size"', "simulator stopped"),
    ],
)
async def test_example_reaches_running_with_two_instances(
    shared_localnet: LocalNetInfo, file: str, service: str, expect: str, after_stop: str | None
) -> None:
    manifest = load_manifest(MANIFESTS / file)
    cls = compile_manifest(manifest, local=True)[service]
    rec = Recorder()
    golem = golem_for(
        shared_localnet, rec, str(manifest.budget), max_price=price_caps(manifest.market.max_price)
    )
    async with golem:
        cluster = await golem.run_service(cls, num_instances=2)
        await wait_for(
            lambda: all(i.state is ServiceState.running for i in cluster.instances),
            60,
            "both instances running",
        )
        await wait_for(
            lambda: all(expect in rec.output(i) for i in (0, 1)),
            40,
            f"{expect!r} in the output of both instances",
        )
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
        assert all(i.state is ServiceState.terminated for i in cluster.instances)
        if after_stop is not None:
            assert all(after_stop in rec.output(i) for i in (0, 1))
    assert_settled(rec, manifest.budget, golem)
