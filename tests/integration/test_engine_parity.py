"""yapapi-shaped programs against the real local network: what a port from yapapi relies
on beyond the hello world (script timeouts, reset/is_activity_responsive hooks, the user's
own attributes, WorkContext usage and cost, a cluster that outlives its instances)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest
from _engine_helpers import Recorder, _payload, assert_settled, golem_for, wait_for

from golem_deploy.engine import (
    BatchTimeoutError,
    Cluster,
    HealthCheck,
    RestartPolicy,
    Service,
    ServiceState,
)
from golem_deploy.engine import events as ev
from golem_deploy.engine.payload import VmPayload
from golem_deploy.errors import GolemDeployError
from golem_deploy.localnet import LocalNetInfo

pytestmark = [pytest.mark.localnet, pytest.mark.anyio]


class Base(Service):
    @staticmethod
    async def get_payload() -> VmPayload:
        return await _payload()


class SlowStart(Base):
    """yapapi's idiom: a step with a timedelta timeout, the timeout caught in the handler,
    then a script that does not wait for its results."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.timed_out = ""
        self.after = ""

    async def start(self) -> AsyncIterator[Any]:
        async for script in super().start():
            yield script
        script = self._ctx.new_script(timeout=timedelta(seconds=1))
        script.run("/bin/sleep", "30")
        try:
            yield script
        except BatchTimeoutError as e:
            self.timed_out = str(e)
        script = self._ctx.new_script(wait_for_results=False)
        script.run("/bin/echo", "after the timeout")
        pending = yield script
        results = await pending
        self.after = results[0].stdout or ""


async def test_a_script_timeout_is_thrown_into_the_handler_not_a_burnt_provider(
    shared_localnet: LocalNetInfo,
) -> None:
    rec = Recorder()
    async with golem_for(shared_localnet, rec) as golem:
        cluster = await golem.run_service(SlowStart, num_instances=1)
        [inst] = cluster.instances
        await wait_for(lambda: inst.state is ServiceState.running, 60, "running")
        assert "did not finish within 1 s" in inst.timed_out
        assert inst.after.strip() == "after the timeout"
        assert not rec.of(ev.ProviderAvoided)  # the first provider kept the instance
        assert len(rec.of(ev.ActivityCreated)) == 1
        await cluster.terminate()
        assert inst.state is ServiceState.terminated
    assert_settled(rec, golem.budget, golem)


class Picky(Base):
    """Finds the first provider unresponsive (yapapi's hook), and counts its resets."""

    restart = RestartPolicy(policy="on-failure", max_restarts=1, backoff=0.2)
    healthcheck = HealthCheck(interval=0.5, timeout=5.0, retries=2)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.resets = 0
        self.first_provider: str | None = None

    async def reset(self) -> None:
        self.resets += 1

    async def is_activity_responsive(self) -> bool:
        if self.first_provider is None:
            self.first_provider = self.provider_id
        return self.provider_id != self.first_provider


async def test_is_activity_responsive_is_the_health_check_and_reset_precedes_the_restart(
    shared_localnet: LocalNetInfo,
) -> None:
    rec = Recorder()
    async with golem_for(shared_localnet, rec) as golem:
        cluster = await golem.run_service(Picky, num_instances=1)
        [inst] = cluster.instances
        await wait_for(lambda: inst.snapshot().restarts == 1, 60, "the instance replaced")
        await wait_for(lambda: inst.state is ServiceState.running, 60, "replacement running")
        assert inst.resets == 1
        assert inst.provider_id != inst.first_provider
        failed = [e.message for e in rec.of(ev.HealthCheckResult) if not e.ok]
        assert failed[:2] == ["is_activity_responsive() returned False"] * 2
        await cluster.terminate()
    assert_settled(rec, golem.budget, golem)


class Accounted(Base):
    """Has attributes and a method under names the engine once used for itself, and reads
    its WorkContext's usage and cost as yapapi programs do."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.index = "the user's"
        self.cost: float | None = None
        self.seen: dict[str, Any] = {}

    def healthcheck(self) -> str:
        return "the user's"

    async def run(self) -> AsyncIterator[Any]:
        script = self._ctx.new_script()
        script.run("/bin/echo", "working")
        yield script
        self.seen["id"] = self._ctx.id
        self.seen["state"] = (await self._ctx.get_raw_state()).state
        while self.cost is None:
            self.cost = await self._ctx.get_cost()
            await anyio.sleep(0.2)
        self.seen["usage"] = (await self._ctx.get_usage()).current_usage
        self._ctx.emit(ev.CommandOutput, service="mine", index=0, stream="note", text="hi")
        await anyio.sleep_forever()


async def test_user_attributes_survive_and_the_work_context_reports_usage(
    shared_localnet: LocalNetInfo,
) -> None:
    rec = Recorder()
    async with golem_for(shared_localnet, rec) as golem:
        cluster = await golem.run_service(Accounted, num_instances=1)
        [inst] = cluster.instances
        await wait_for(lambda: "usage" in inst.seen, 60, "usage read in run")
        assert inst.index == "the user's" and inst.healthcheck() == "the user's"
        assert inst.seen["id"] == inst.snapshot().activity_id
        assert inst.seen["state"] == "Ready"
        assert inst.cost is not None and inst.cost >= 0
        assert set(inst.seen["usage"]) >= {"golem.usage.duration_sec"}
        assert any(e.stream == "note" for e in rec.of(ev.CommandOutput))
        assert uuid.UUID(inst.id) and inst.exc_info == (None, None, None)
        await cluster.terminate()
    assert_settled(rec, golem.budget, golem)


class Idle(Base):
    pass


async def test_a_cluster_spawns_when_empty_and_when_finished_until_terminated(
    shared_localnet: LocalNetInfo,
) -> None:
    rec = Recorder()
    golem = golem_for(shared_localnet, rec)
    await golem.start()
    try:
        cluster: Cluster[Idle] = await golem.run_service(Idle, num_instances=0)
        assert cluster.finished and not cluster.instances and uuid.UUID(cluster.id)
        [first] = cluster.spawn_instances(1)
        await wait_for(lambda: first.state is ServiceState.running, 60, "first running")
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
        [second] = cluster.spawn_instances(1)  # into the finished cluster
        assert not cluster.finished
        await wait_for(lambda: second.state is ServiceState.running, 60, "second running")
        assert second.snapshot().index == 1
        await cluster.terminate()
        assert cluster.finished and second.state is ServiceState.terminated
        with pytest.raises(GolemDeployError, match="not running"):
            cluster.spawn_instances(1)
    finally:
        await golem.stop(wait_for_payments=False)
    terminated = {e.agreement_id for e in rec.of(ev.AgreementTerminated)}
    assert len(terminated) == 2 and len(rec.of(ev.AllocationReleased)) == 1
    # the finished cluster had unsubscribed its demand, and negotiated anew for the second
    events = rec.events
    first_ended = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, ev.InstanceStateChanged) and e.index == 0 and e.new.value == "terminated"
    )
    later = [e for e in events[first_ended:] if isinstance(e, ev.DemandSubscribed)]
    assert later, "the finished cluster negotiated anew for its new instance"
    unsubscribed = {e.subscription_id for e in rec.of(ev.DemandUnsubscribed)}
    assert {e.subscription_id for e in rec.of(ev.DemandSubscribed)} <= unsubscribed


async def test_spawned_instances_take_the_addresses_given_to_spawn_instances(
    shared_localnet: LocalNetInfo,
) -> None:
    rec = Recorder()
    async with golem_for(shared_localnet, rec) as golem:
        network = await golem.create_network("192.168.31.0/24")
        cluster = await golem.run_service(Idle, num_instances=0, network=network)
        [inst] = cluster.spawn_instances(1, network_addresses=["192.168.31.77", "192.168.31.78"])
        await wait_for(lambda: inst.state is ServiceState.running, 60, "running")
        node = inst.network_node
        assert node is not None and node.ip == "192.168.31.77"
        assert inst.snapshot().ip == "192.168.31.77"
        assert network.reserve("192.168.31.78") == "192.168.31.78"  # extras are not held
        with pytest.raises(GolemDeployError, match=r"192\.168\.31\.77"):
            cluster.spawn_instances(1, network_addresses=["192.168.31.77"])  # taken
        await cluster.terminate()
    assert_settled(rec, golem.budget, golem)


class Background(Base):
    """Starts a long command without waiting for it (yapapi's wait_for_results=False)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.pending: Any = None
        self.said_bye_while_sleeping = False

    async def start(self) -> AsyncIterator[Any]:
        async for script in super().start():
            yield script
        script = self._ctx.new_script(wait_for_results=False)
        script.run("/bin/sleep", "120")
        self.pending = yield script

    async def shutdown(self) -> AsyncIterator[Any]:
        script = self._ctx.new_script()
        script.run("/bin/echo", "bye")
        yield script  # runs beside the sleeping script, not after it
        self.said_bye_while_sleeping = not self.pending.done()
        async for script in super().shutdown():
            yield script


async def test_a_handler_returns_without_waiting_for_its_background_script(
    shared_localnet: LocalNetInfo,
) -> None:
    rec = Recorder()
    async with golem_for(shared_localnet, rec) as golem:
        cluster = await golem.run_service(Background, num_instances=1)
        [inst] = cluster.instances
        await wait_for(lambda: inst.state is ServiceState.running, 60, "running")
        assert inst.pending is not None and not inst.pending.done()  # still sleeping
        await cluster.terminate()
        assert inst.said_bye_while_sleeping
        assert inst.snapshot().reason == "stop requested"  # shut down, not cancelled
    assert_settled(rec, golem.budget, golem)
