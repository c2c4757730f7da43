"""The engine against the real local network (real yagna daemons on loopback).

Each test deploys a small Service through `Golem` and checks what a user relies on: instances
reach running on distinct providers and their output arrives; stop runs shutdown; failures
are handled as the lifecycle rules say; money stays within the budget; every agreement ends
terminated with its invoice accepted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import anyio
import pytest
from _engine_helpers import Recorder, _payload, assert_settled, golem_for, wait_for

from golem_deploy.engine import PaymentTerms, RestartPolicy, Service, ServiceState
from golem_deploy.engine import events as ev
from golem_deploy.engine.payload import VmPayload
from golem_deploy.localnet import LocalNetInfo

pytestmark = [pytest.mark.localnet, pytest.mark.anyio]


class HelloService(Service):
    @staticmethod
    async def get_payload() -> VmPayload:
        return await _payload()

    async def start(self) -> AsyncIterator[Any]:
        async for script in super().start():
            yield script
        script = self._ctx.new_script()
        script.run("/bin/sh", "-c", "echo started > /golem/work/started")
        yield script

    async def run(self) -> AsyncIterator[Any]:
        while True:
            script = self._ctx.new_script()
            step = script.run("/bin/echo", f"hello from {self.snapshot().index}")
            yield script
            result = await step
            assert result.stdout is not None and "hello" in result.stdout
            await anyio.sleep(1.0)

    async def shutdown(self) -> AsyncIterator[Any]:
        script = self._ctx.new_script()
        script.run("/bin/echo", f"bye from {self.snapshot().index}")
        yield script


async def test_two_instances_run_and_stop_with_shutdown(shared_localnet: LocalNetInfo) -> None:
    rec = Recorder()
    budget = Decimal("5")
    async with golem_for(shared_localnet, rec, str(budget)) as golem:
        cluster = await golem.run_service(HelloService, num_instances=2)
        await wait_for(
            lambda: all(i.state is ServiceState.running for i in cluster.instances),
            60,
            "both instances running",
        )
        providers = {i.provider_id for i in cluster.instances}
        assert len(providers) == 2, "two instances should spread over two providers"
        await wait_for(
            lambda: "hello from 0" in rec.output(0) and "hello from 1" in rec.output(1),
            30,
            "run output of both instances",
        )
        assert all(i.snapshot().last_output.startswith("hello from") for i in cluster.instances)
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
        assert all(i.state is ServiceState.terminated for i in cluster.instances)
        assert "bye from 0" in rec.output(0) and "bye from 1" in rec.output(1)
    # every instance went pending -> starting -> running -> stopping -> terminated
    for index in (0, 1):
        path = [e.new for e in rec.of(ev.InstanceStateChanged) if e.index == index]
        assert path == [
            ServiceState.starting,
            ServiceState.running,
            ServiceState.stopping,
            ServiceState.terminated,
        ]
    assert_settled(rec, budget, golem)


class FailingStartService(HelloService):
    """Its start runs a command that the faulty provider fails (fail_commands_matching)."""

    async def start(self) -> AsyncIterator[Any]:
        async for script in super().start():
            yield script
        script = self._ctx.new_script()
        script.run("/bin/echo", "check-start")
        yield script


async def test_start_failure_respawns_on_another_provider(localnet: Any) -> None:
    info = localnet(providers=2, faults={"local-provider-1": {"fail_commands_matching": "check"}})
    bad = dict(info.providers)["local-provider-1"]
    rec = Recorder()
    async with golem_for(info, rec) as golem:
        cluster = await golem.run_service(FailingStartService, num_instances=2)
        await wait_for(
            lambda: all(i.state is ServiceState.running for i in cluster.instances),
            90,
            "both instances running on the good provider",
        )
        assert {i.provider_id for i in cluster.instances} == {
            dict(info.providers)["local-provider-2"]
        }
        # at least one instance first landed on the faulty provider and was respawned
        avoided = rec.of(ev.ProviderAvoided)
        assert [a.provider_id for a in avoided] == [bad]
        assert "start failed" in avoided[0].reason
        assert golem.avoided_providers.keys() == {bad}
        starts = [e for e in rec.of(ev.InstanceStateChanged) if e.new is ServiceState.starting]
        assert len(starts) >= 3  # 2 instances + at least one respawn
        assert all(
            i.snapshot().restarts == 0 for i in cluster.instances
        )  # respawns are not restarts
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
    assert_settled(rec, Decimal("5"), golem)


async def test_no_respawn_when_disabled(localnet: Any) -> None:
    info = localnet(providers=1, faults={"local-provider-1": {"fail_commands_matching": "check"}})
    rec = Recorder()
    async with golem_for(info, rec) as golem:
        cluster = await golem.run_service(
            FailingStartService, num_instances=1, respawn_unstarted_instances=False
        )
        with anyio.fail_after(60):
            await cluster.wait_finished()
        [instance] = cluster.instances
        assert instance.state is ServiceState.terminated
        assert "start failed" in instance.snapshot().reason
        assert ServiceState.running not in {e.new for e in rec.of(ev.InstanceStateChanged)}
    assert_settled(rec, Decimal("5"), golem)


async def test_provider_dying_after_running_is_replaced(localnet: Any) -> None:
    info = localnet(providers=2, faults={"local-provider-1": {"die_after": "6s"}})
    names = {node: name for name, node in info.providers}
    rec = Recorder()
    async with golem_for(info, rec) as golem:
        cluster = await golem.run_service(
            HelloService,
            num_instances=2,
            restart=RestartPolicy("on-failure", max_restarts=2, backoff=0.5),
        )
        await wait_for(
            lambda: all(i.state is ServiceState.running for i in cluster.instances),
            60,
            "both instances running",
        )
        doomed = [i for i in cluster.instances if names[i.provider_id or ""] == "local-provider-1"]
        assert len(doomed) == 1, "the instances should spread over both providers"
        victim = doomed[0]
        await wait_for(
            lambda: victim.snapshot().restarts == 1,
            90,
            "the instance on the dead provider replaced",
        )
        await wait_for(lambda: victim.state is ServiceState.running, 60, "replacement running")
        assert names[victim.provider_id or ""] == "local-provider-2"
        lost = next(
            e
            for e in rec.of(ev.InstanceStateChanged)
            if e.index == victim.snapshot().index and e.old is ServiceState.running
        )
        # the provider vanished: no shutdown ran on it, the instance was not "stopping"
        assert lost.new in (ServiceState.unresponsive, ServiceState.terminated)
        assert rec.of(ev.InstanceRestartScheduled)[0].index == victim.snapshot().index
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
    assert golem.spent <= Decimal("5")


async def test_budget_is_never_exceeded(localnet: Any) -> None:
    """The only provider we may use charges a 0.002 start price plus 0.00004 GLM/s: a
    budget of 0.0025 lasts seconds. Spending must stop at the budget, the instance must be
    stopped, and what was refused must be reported."""
    info = localnet(providers=3)
    nodes = dict(info.providers)
    budget = Decimal("0.0025")
    rec = Recorder()
    golem = golem_for(
        info,
        rec,
        str(budget),
        blacklist=[nodes["local-provider-1"], nodes["local-provider-2"]],
        invoice_timeout=15,
        payment_terms=PaymentTerms(debit_note_interval=5),  # spend in steps of seconds
    )
    async with golem:
        cluster = await golem.run_service(HelloService, num_instances=1)
        with anyio.fail_after(90):
            await cluster.wait_finished()
        [instance] = cluster.instances
        assert instance.provider_id == nodes["local-provider-3"]
        assert "over budget" in instance.snapshot().reason
        assert golem.spent <= budget
    rejected = rec.of(ev.PaymentRejected)
    assert rejected and all("over budget" in r.reason for r in rejected)
    assert golem.spent <= budget
    assert rec.of(ev.DebitNoteAccepted), "debit notes within the budget are accepted"
    assert instance.snapshot().cost == golem.spent


@pytest.mark.parametrize(
    "fault, event, reason",
    [
        ("reject_agreements", ev.AgreementRejected, "agreement not approved"),
        ("fail_activity_create", ev.ActivityCreateFailed, "activity creation failed"),
    ],
)
async def test_providers_that_fail_us_are_avoided(
    localnet: Any, fault: str, event: type, reason: str
) -> None:
    # Two instances: the engine spreads them over providers, so whichever provider's offer
    # comes first, the failing provider 1 is tried for one of them (a single instance could
    # simply land on provider 2 when its offer arrives first).
    info = localnet(providers=2, faults={"local-provider-1": {fault: True}})
    nodes = dict(info.providers)
    rec = Recorder()
    async with golem_for(info, rec) as golem:
        cluster = await golem.run_service(HelloService, num_instances=2)
        await wait_for(
            lambda: all(i.state is ServiceState.running for i in cluster.instances),
            90,
            "both instances running",
        )
        assert {i.provider_id for i in cluster.instances} == {nodes["local-provider-2"]}
        failures = rec.of(event)
        assert failures and all(reason in f.reason for f in failures)
        assert list(golem.avoided_providers) == [nodes["local-provider-1"]]
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
    assert golem.spent <= golem.budget


async def test_waiting_for_a_missing_invoice_is_bounded(localnet: Any) -> None:
    info = localnet(providers=1, faults={"local-provider-1": {"never_invoice": True}})
    rec = Recorder()
    golem = golem_for(info, rec, invoice_timeout=3)
    async with golem:
        cluster = await golem.run_service(HelloService, num_instances=1)
        await wait_for(
            lambda: cluster.instances[0].state is ServiceState.running, 60, "instance running"
        )
        agreement = cluster.instances[0].snapshot().agreement_id
        started = anyio.current_time()
    assert anyio.current_time() - started < 30
    assert golem.unpaid_agreements == [agreement]
    assert not rec.of(ev.InvoiceAccepted)
    assert len(rec.of(ev.AllocationReleased)) == 1
