"""Mid-agreement payments against real yagna on loopback (issue 16): the engine negotiates the
GAP-3 payment terms, the local providers send payable debit notes, the engine accepts them
at once and the requestor's yagna records them accepted with their due dates; a provider
that sends notes too often has its agreement ended and the instance is replaced."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import anyio
import pytest
from _engine_helpers import Recorder, _payload, golem_for, wait_for

from golem_deploy import protocol as p
from golem_deploy.engine import PaymentTerms, RestartPolicy, Service
from golem_deploy.engine import events as ev
from golem_deploy.engine.payload import VmPayload
from golem_deploy.localnet import LocalNetInfo

pytestmark = [pytest.mark.localnet, pytest.mark.anyio, pytest.mark.timeout(240)]


class Idle(Service):
    @staticmethod
    async def get_payload() -> VmPayload:
        return await _payload()

    async def run(self) -> AsyncIterator[Any]:
        await anyio.sleep(3600)
        yield self._ctx.new_script()  # pragma: no cover


def _yagna(info: LocalNetInfo, path: str) -> Any:
    """Ask the requestor's yagna directly (loopback only)."""
    request = urllib.request.Request(
        info.api_url + path, headers={"Authorization": f"Bearer {info.app_key}"}
    )
    with urllib.request.urlopen(request, timeout=20) as answer:
        return json.loads(answer.read())


async def test_payable_debit_notes_are_negotiated_accepted_and_recorded(
    shared_localnet: LocalNetInfo,
) -> None:
    info = shared_localnet
    rec = Recorder()
    terms = PaymentTerms(debit_note_interval=2, payment_timeout=4)
    async with golem_for(info, rec, payment_terms=terms) as golem:
        cluster = await golem.run_service(Idle, num_instances=1)
        [instance] = cluster.instances
        await wait_for(lambda: instance.snapshot().agreement_id is not None, 60, "an agreement")
        agreement_id = instance.snapshot().agreement_id
        assert agreement_id is not None
        agreement = _yagna(info, f"/market-api/v1/agreements/{agreement_id}")
        demand = agreement["demand"]["properties"]
        assert demand[p.DEBIT_NOTE_INTERVAL] == 2 and demand[p.PAYMENT_TIMEOUT] == 4, demand

        def payable_accepted() -> list[dict[str, Any]]:
            notes = _yagna(info, "/payment-api/v1/debitNotes")
            return [
                n
                for n in notes
                if n["agreementId"] == agreement_id
                and n.get("paymentDueDate")
                and n["status"] in ("ACCEPTED", "SETTLED")
            ]

        await wait_for(lambda: len(payable_accepted()) >= 2, 60, "two payable notes accepted")
        rate = golem.burn_rate()
        assert rate is not None and rate > 0
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()

        def allocation_spent() -> Decimal:
            [allocation] = [
                a
                for a in _yagna(info, "/payment-api/v1/allocations")
                if a["allocationId"] == rec.of(ev.AllocationCreated)[0].allocation_id
            ]
            return Decimal(allocation["spentAmount"])

        # yagna books what was accepted against the allocation (it pays payable notes in its
        # batch cycle; the offline network has no chain to settle on, see docs/localnet.md)
        await wait_for(lambda: allocation_spent() == golem.spent, 20, "yagna's books to agree")
        assert golem.spent > 0
    assert not rec.of(ev.PaymentRejected)
    paid = {n["debitNoteId"] for n in payable_accepted()}
    accepted = {e.debit_note_id for e in rec.of(ev.DebitNoteAccepted)}
    assert paid <= accepted  # every payable note yagna holds accepted is one the engine accepted


async def test_a_provider_sending_notes_too_often_is_ended_and_the_instance_replaced(
    localnet: Any,
) -> None:
    info = localnet(providers=2, faults={"local-provider-1": {"debit_notes_every": "1s"}})
    nodes = dict(info.providers)
    rec = Recorder()
    golem = golem_for(info, rec, payment_terms=PaymentTerms(debit_note_interval=5))
    async with golem:
        cluster = await golem.run_service(
            Idle, num_instances=1, restart=RestartPolicy("on-failure", backoff=0.5)
        )
        [instance] = cluster.instances
        # the cheaper provider, local-provider-1, is chosen first; it notes every second
        await wait_for(lambda: instance.snapshot().restarts == 1, 90, "a replacement")
        await wait_for(
            lambda: (
                instance.snapshot().provider_id == nodes["local-provider-2"]
                and instance.snapshot().state.value == "running"
            ),
            60,
            "the replacement running on the other provider",
        )
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
    [rejected] = rec.of(ev.PaymentRejected)
    assert "too many debit notes" in rejected.reason, rejected
    first = rejected.agreement_id
    assert rec.of(ev.AgreementCreated)[0].provider_id == nodes["local-provider-1"]
    [ended] = [e for e in rec.of(ev.AgreementTerminated) if e.agreement_id == first]
    assert ended.by == "requestor" and "too many debit notes" in ended.reason
    avoided = rec.of(ev.ProviderAvoided)
    assert [a.provider_id for a in avoided] == [nodes["local-provider-1"]]
