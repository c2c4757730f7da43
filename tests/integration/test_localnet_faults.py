"""Every fault mode of the local providers, as a requestor experiences it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from _localnet_requestor import HttpError, Requestor, now_iso, with_requestor

from golem_deploy.localnet import LocalNetInfo

pytestmark = pytest.mark.localnet

DEPLOY_START = [{"deploy": {}}, {"start": {"args": []}}]


def run(info: LocalNetInfo, body: Callable[[Requestor], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        session, requestor = await with_requestor(info)
        try:
            return await body(requestor)
        finally:
            await session.close()

    return anyio.run(main)


def test_reject_agreements(localnet: Any) -> None:
    info = localnet(providers=1, faults={"local-provider-1": {"reject_agreements": True}})

    async def body(req: Requestor) -> None:
        with pytest.raises(HttpError) as failure:
            await req.one_agreement()
        assert failure.value.status == 410
        assert "Rejected" in failure.value.body

    run(info, body)


def test_fail_activity_create(localnet: Any) -> None:
    info = localnet(providers=1, faults={"local-provider-1": {"fail_activity_create": True}})

    async def body(req: Requestor) -> None:
        agreement_id = await req.one_agreement()
        with pytest.raises(HttpError) as failure:
            await req.create_activity(agreement_id)
        assert failure.value.status == 500
        assert "creation failed" in failure.value.body
        await req.terminate(agreement_id)

    run(info, body)


def test_fail_commands_matching_and_slow_start(localnet: Any) -> None:
    info = localnet(
        providers=1,
        faults={"local-provider-1": {"fail_commands_matching": "boom", "slow_start": "1.5s"}},
    )

    async def body(req: Requestor) -> None:
        agreement_id = await req.one_agreement()
        activity_id = await req.create_activity(agreement_id)
        began = time.monotonic()
        await req.results(activity_id, await req.exec(activity_id, DEPLOY_START))
        assert time.monotonic() - began >= 1.5  # deploy and start were slowed down

        ok = await req.exec(activity_id, [{"run": {"entry_point": "/bin/echo", "args": ["fine"]}}])
        assert (await req.results(activity_id, ok))[0]["result"] == "Ok"
        bad = await req.exec(activity_id, [{"run": {"entry_point": "/bin/echo", "args": ["boom"]}}])
        failed = (await req.results(activity_id, bad))[0]
        assert failed["result"] == "Error"
        await req.destroy_activity(activity_id)
        await req.terminate(agreement_id)

    run(info, body)


def test_die_after_makes_the_provider_vanish(localnet: Any) -> None:
    info = localnet(providers=1, faults={"local-provider-1": {"die_after": "2s"}})

    async def body(req: Requestor) -> None:
        agreement_id = await req.one_agreement()
        activity_id = await req.create_activity(agreement_id)
        await req.results(activity_id, await req.exec(activity_id, DEPLOY_START))
        # Heartbeats stop: yagna marks the activity Unresponsive, then destroys it.
        states = []
        with anyio.fail_after(20):
            while not states or states[-1] not in ("Unresponsive", "Terminated"):
                states.append((await req.state(activity_id))["state"][0])
                await anyio.sleep(0.5)
        # Its offer is gone: a new demand gets no proposal from it.
        sub, drafts, _ = await req.negotiate(req.demand(), deadline=4)
        await req.unsubscribe(sub)
        assert drafts == {}

    run(info, body)


def test_never_invoice_sends_debit_notes_but_no_invoice(localnet: Any) -> None:
    info = localnet(providers=2, faults={"local-provider-1": {"never_invoice": True}})

    async def body(req: Requestor) -> None:
        after = now_iso()
        agreements = {}
        for name in ("local-provider-1", "local-provider-2"):
            agreement_id = await req.one_agreement(provider=name)
            activity_id = await req.create_activity(agreement_id)
            agreements[agreement_id] = (name, activity_id)
        noted: set[str] = set()
        with anyio.fail_after(20):
            while len(noted) < 2:
                for event in await req.payment_events("debitNote", after):
                    note = await req.call(
                        "GET", f"/payment-api/v1/debitNotes/{event['debitNoteId']}"
                    )
                    noted.add(agreements[note["agreementId"]][0])
        for agreement_id, (_, activity_id) in agreements.items():
            await req.destroy_activity(activity_id)
            await req.terminate(agreement_id)
        invoiced: set[str] = set()
        with anyio.fail_after(20):  # wait for the well-behaved provider's invoice ...
            while "local-provider-2" not in invoiced:
                for event in await req.payment_events("invoice", after):
                    invoice = await req.call(
                        "GET", f"/payment-api/v1/invoices/{event['invoiceId']}"
                    )
                    invoiced.add(agreements[invoice["agreementId"]][0])
        await anyio.sleep(2)  # ... and give the other one more time than it needed
        for event in await req.payment_events("invoice", after):
            invoice = await req.call("GET", f"/payment-api/v1/invoices/{event['invoiceId']}")
            invoiced.add(agreements[invoice["agreementId"]][0])
        assert invoiced == {"local-provider-2"}

    run(info, body)
