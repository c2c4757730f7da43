"""Health checks and expiration against the real local network."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest
from _engine_helpers import Recorder, _payload, assert_settled, golem_for, wait_for

from golem_deploy.engine import HealthCheck, RestartPolicy, Service, ServiceState
from golem_deploy.engine import events as ev
from golem_deploy.engine.payload import VmPayload
from golem_deploy.localnet import LocalNetInfo

pytestmark = [pytest.mark.localnet, pytest.mark.anyio]


class Idle(Service):
    """Deploys, starts, then just runs (the default run waits to be stopped)."""

    @staticmethod
    async def get_payload() -> VmPayload:
        return await _payload()


class Probed(Idle):
    restart = RestartPolicy(policy="on-failure", max_restarts=2, backoff=0.2)
    healthcheck = HealthCheck(
        argv=("/bin/echo", "healthprobe"), interval=1.0, timeout=5.0, retries=2
    )


async def test_failing_health_checks_replace_the_instance(localnet: Any) -> None:
    # provider 1 is the cheapest, so it is chosen first; its health probes fail
    info = localnet(providers=2, faults={"local-provider-1": {"fail_commands_matching": "probe"}})
    names = {node: name for name, node in info.providers}
    rec = Recorder()
    async with golem_for(info, rec) as golem:
        cluster = await golem.run_service(Probed, num_instances=1)
        [inst] = cluster.instances
        await wait_for(lambda: inst.snapshot().restarts == 1, 60, "the unhealthy instance replaced")
        await wait_for(
            lambda: (
                inst.state is ServiceState.running
                and any(e.ok for e in rec.of(ev.HealthCheckResult))
            ),
            60,
            "a healthy replacement",
        )
        assert names[inst.provider_id or ""] == "local-provider-2"
        failed = [e for e in rec.of(ev.HealthCheckResult) if not e.ok]
        assert [e.consecutive_failures for e in failed[:2]] == [1, 2]
        stopping = [e for e in rec.of(ev.InstanceStateChanged) if e.new is ServiceState.stopping]
        assert "unhealthy" in stopping[0].reason
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
    assert_settled(rec, golem.budget, golem)


async def test_expiration_stops_cleanly(shared_localnet: LocalNetInfo) -> None:
    rec = Recorder()
    async with golem_for(shared_localnet, rec) as golem:
        cluster = await golem.run_service(Idle, num_instances=1, expiration=timedelta(seconds=6))
        with anyio.fail_after(60):
            await cluster.wait_finished()
        [inst] = cluster.instances
        assert inst.state is ServiceState.terminated
        path = [e.new for e in rec.of(ev.InstanceStateChanged)]
        assert path[-2:] == [ServiceState.stopping, ServiceState.terminated]
        assert "expiration reached" in inst.snapshot().reason
        assert not rec.of(ev.InstanceRestartScheduled)
    assert_settled(rec, golem.budget, golem)


class IdleRestarting(Idle):
    restart = RestartPolicy(policy="on-failure", max_restarts=1, backoff=0.2)


async def test_an_idle_instance_notices_its_provider_vanishing(localnet: Any) -> None:
    """No script is running, so only the watcher can notice the provider is gone."""
    info = localnet(providers=2, faults={"local-provider-1": {"die_after": "3s"}})
    names = {node: name for name, node in info.providers}
    rec = Recorder()
    async with golem_for(info, rec) as golem:
        cluster = await golem.run_service(IdleRestarting, num_instances=1)
        [inst] = cluster.instances
        await wait_for(lambda: inst.snapshot().restarts == 1, 90, "the instance replaced")
        await wait_for(lambda: inst.state is ServiceState.running, 60, "replacement running")
        assert names[inst.provider_id or ""] == "local-provider-2"
        lost = next(e for e in rec.of(ev.InstanceStateChanged) if e.old is ServiceState.running)
        assert lost.new in (ServiceState.unresponsive, ServiceState.terminated)
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
