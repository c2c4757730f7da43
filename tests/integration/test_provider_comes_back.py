"""A local provider that dies and comes back (faults `die_when` + `come_back_after`).

The only provider of the network vanishes under a running instance. The engine loses the
instance and avoids the provider; the provider comes back as the same node (the local
network's journal says so), and once the engine's avoidance is over (Timings.avoid_for,
shortened here from 600 s) the instance is placed on it again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _engine_helpers import Recorder, _payload, golem_for, wait_for

from golem_deploy.engine import RestartPolicy, Service, ServiceState
from golem_deploy.engine import events as ev
from golem_deploy.engine.payload import VmPayload
from golem_deploy.engine.timing import Timings

pytestmark = [pytest.mark.localnet, pytest.mark.anyio]


class Idle(Service):
    @staticmethod
    async def get_payload() -> VmPayload:
        return await _payload()

    async def start(self) -> AsyncIterator[Any]:
        async for script in super().start():
            yield script
        script = self._ctx.new_script()
        script.run("/bin/sh", "-c", "echo started > /golem/work/started")
        yield script


def lives_of(state_dir: Path) -> list[tuple[str, int]]:
    """(event, life) of local-provider-1 in the local network's journal."""
    lines = (state_dir / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    return [
        (r["event"], r["life"])
        for r in records
        if r.get("event") in ("provider-died", "provider-back")
        and r.get("provider") == "local-provider-1"
    ]


async def test_a_provider_that_came_back_gets_work_again(localnet: Any, tmp_path: Path) -> None:
    trigger = tmp_path / "kill-1"
    info = localnet(
        providers=1,
        faults={"local-provider-1": {"die_when": str(trigger), "come_back_after": "2s"}},
    )
    node_id = dict(info.providers)["local-provider-1"]
    rec = Recorder()
    async with golem_for(info, rec, timings=Timings(avoid_for=8.0)) as golem:
        cluster = await golem.run_service(
            Idle, num_instances=1, restart=RestartPolicy("on-failure", max_restarts=3, backoff=0.5)
        )
        instance = cluster.instances[0]
        await wait_for(lambda: instance.state is ServiceState.running, 60, "the instance running")
        assert instance.provider_id == node_id
        first_agreement = instance.snapshot().agreement_id

        trigger.touch()
        await wait_for(lambda: not trigger.exists(), 10, "the provider to die")
        await wait_for(lambda: instance.snapshot().restarts == 1, 90, "the instance lost")
        await wait_for(
            lambda: ("provider-back", 2) in lives_of(info.state_dir), 30, "the provider back"
        )
        avoided = [e for e in rec.of(ev.ProviderAvoided) if e.provider_id == node_id]
        assert avoided, "the engine should avoid the provider that lost its instance"

        await wait_for(
            lambda: (
                instance.state is ServiceState.running
                and instance.snapshot().agreement_id != first_agreement
            ),
            120,
            "the instance placed on the provider again",
        )
        assert instance.provider_id == node_id  # the same node, in its second life
        assert lives_of(info.state_dir) == [("provider-died", 1), ("provider-back", 2)]
        cluster.stop()
