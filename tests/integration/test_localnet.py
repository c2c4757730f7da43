"""The local network, used the way any Golem requestor uses yagna (plain aiohttp, real daemons).

Each test drives the requestor node's REST API and checks what a requestor relies on:
offers that look like real VM providers, negotiation to an approved agreement, activities
that run commands and stream output, debit notes and an invoice that can be accepted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from _localnet_requestor import Requestor, now_iso, with_requestor

from golem_deploy.localnet import LocalNetInfo

pytestmark = pytest.mark.localnet


def run(info: LocalNetInfo, body: Callable[[Requestor], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        session, requestor = await with_requestor(info)
        try:
            return await body(requestor)
        finally:
            await session.close()

    return anyio.run(main)


def test_every_provider_offers_a_priced_vm_and_negotiates_to_an_approved_agreement(
    shared_localnet: LocalNetInfo,
) -> None:
    async def body(req: Requestor) -> None:
        sub, drafts, rejections = await req.negotiate(req.demand(), want=3)
        await req.unsubscribe(sub)
        assert not rejections
        assert sorted(drafts) == ["local-provider-1", "local-provider-2", "local-provider-3"]
        ids = {name: node_id for name, node_id in shared_localnet.providers}
        prices = set()
        for name, draft in drafts.items():
            props = draft["properties"]
            assert draft["issuerId"] == ids[name]
            assert props["golem.runtime.name"] == "vm"
            assert props["golem.node.debug.subnet"] == "local-dev"
            assert props["golem.com.scheme"] == "payu"
            coeffs = props["golem.com.pricing.model.linear.coeffs"]
            assert len(coeffs) == len(props["golem.com.usage.vector"]) + 1
            assert all(isinstance(c, float) for c in coeffs)  # yapapi rejects ints
            assert props["golem.com.payment.platform.erc20-holesky-tglm.address"] == ids[name]
            prices.add(tuple(coeffs))
        assert len(prices) == 3  # each provider has its own price

        agreement_id = await req.agree(drafts["local-provider-2"])
        agreement = await req.agreement(agreement_id)
        assert agreement["state"] == "Approved"
        assert agreement["offer"]["providerId"] == ids["local-provider-2"]
        await req.terminate(agreement_id)
        assert (await req.agreement(agreement_id))["state"] == "Terminated"

    run(shared_localnet, body)


def test_provider_rejects_a_demand_it_cannot_serve_with_a_reason(
    shared_localnet: LocalNetInfo,
) -> None:
    async def body(req: Requestor) -> None:
        demand = req.demand()
        # A counter without a payment platform the provider is paid on.
        sub = await req.subscribe(demand)
        reasons: list[str] = []
        with anyio.fail_after(15):
            while not reasons:
                for event in await req.events(sub):
                    if (
                        event["eventType"] == "ProposalEvent"
                        and event["proposal"]["state"] == "Initial"
                    ):
                        bad = {
                            "properties": {
                                **demand["properties"],
                                "golem.com.payment.chosen-platform": "erc20-mainnet-glm",
                            },
                            "constraints": demand["constraints"],
                        }
                        await req.call(
                            "POST",
                            f"/market-api/v1/demands/{sub}/proposals/"
                            f"{event['proposal']['proposalId']}",
                            body=bad,
                        )
                    elif event["eventType"] == "ProposalRejectedEvent":
                        reasons.append(event["reason"]["message"])
        await req.unsubscribe(sub)
        assert "payment platform" in reasons[0]

    run(shared_localnet, body)


def test_provider_rejects_agreements_beyond_its_capacity(localnet: Any) -> None:
    info = localnet(providers=1)

    async def body(req: Requestor) -> None:
        # Each agreement reserves 17 of the provider's 32 threads: the second cannot fit.
        first = await req.one_agreement(min_threads=17)
        sub, drafts, rejections = await req.negotiate(req.demand(min_threads=17), deadline=8)
        await req.unsubscribe(sub)
        assert not drafts
        assert "over capacity" in rejections["local-provider-1"]["reason"]["message"]
        await req.terminate(first)

    run(info, body)


def test_activity_runs_commands_streams_output_and_is_destroyed(
    shared_localnet: LocalNetInfo,
) -> None:
    async def body(req: Requestor) -> None:
        agreement_id = await req.one_agreement()
        activity_id = await req.create_activity(agreement_id)
        assert (await req.state(activity_id))["state"][0] == "Initialized"
        script = [
            {"deploy": {}},
            {"start": {"args": []}},
            {
                "run": {
                    "entry_point": "/bin/echo",
                    "args": ["hello", "golem"],
                    "capture": {"stdout": {"stream": {}}, "stderr": {"stream": {}}},
                }
            },
        ]
        batch = await req.exec(activity_id, script)
        events = await req.stream(activity_id, batch, last_index=2)
        assert any(e["kind"].get("stdout") == "hello golem\n" for e in events)
        results = await req.results(activity_id, batch)
        assert [r["result"] for r in results] == ["Ok", "Ok", "Ok"]
        assert results[2]["stdout"] == "hello golem\n"
        assert (await req.state(activity_id))["state"][0] == "Ready"

        await req.destroy_activity(activity_id)
        assert (await req.state(activity_id))["state"][0] == "Terminated"
        await req.terminate(agreement_id)

    run(shared_localnet, body)


def test_a_failing_command_is_an_error_result_and_stops_the_batch(
    shared_localnet: LocalNetInfo,
) -> None:
    async def body(req: Requestor) -> None:
        agreement_id = await req.one_agreement()
        activity_id = await req.create_activity(agreement_id)
        batch = await req.exec(
            activity_id,
            [
                {"deploy": {}},
                {"start": {"args": []}},
                {"run": {"entry_point": "/bin/sh", "args": ["-c", "exit 3"]}},
                {"run": {"entry_point": "/bin/echo", "args": ["never"]}},
            ],
        )
        results = await req.results(activity_id, batch)
        assert [r["result"] for r in results] == ["Ok", "Ok", "Error"]
        assert results[-1]["isBatchFinished"] is True
        assert "3" in (results[-1]["message"] or "")
        await req.destroy_activity(activity_id)
        await req.terminate(agreement_id)

    run(shared_localnet, body)


def test_debit_notes_and_the_invoice_arrive_and_are_accepted(
    shared_localnet: LocalNetInfo,
) -> None:
    async def body(req: Requestor) -> None:
        after = now_iso()
        agreement_id = await req.one_agreement(provider="local-provider-3")
        activity_id = await req.create_activity(agreement_id)
        batch = await req.exec(
            activity_id,
            [{"deploy": {}}, {"start": {"args": []}}, {"run": {"entry_point": "/bin/true"}}],
        )
        await req.results(activity_id, batch)
        accepted: list[dict[str, Any]] = []
        with anyio.fail_after(20):  # this requestor asks for a note every 5 s
            while not accepted:
                for event in await req.payment_events("debitNote", after):
                    if event["eventType"] == "DebitNoteReceivedEvent":
                        note = await req.call(
                            "GET", f"/payment-api/v1/debitNotes/{event['debitNoteId']}"
                        )
                        if note["activityId"] == activity_id:  # the network is shared
                            accepted.append(await req.accept_debit_note(note["debitNoteId"]))
        note = accepted[0]
        assert note["activityId"] == activity_id and note["agreementId"] == agreement_id
        assert Decimal(note["totalAmountDue"]) > 0

        await req.destroy_activity(activity_id)
        await req.terminate(agreement_id)
        invoice = None
        with anyio.fail_after(20):
            while invoice is None:
                for event in await req.payment_events("invoice", after):
                    if event["eventType"] == "InvoiceReceivedEvent":
                        found = await req.call(
                            "GET", f"/payment-api/v1/invoices/{event['invoiceId']}"
                        )
                        if found["agreementId"] == agreement_id:
                            invoice = await req.accept_invoice(found["invoiceId"])
        assert invoice["agreementId"] == agreement_id
        assert invoice["activityIds"] == [activity_id]
        assert Decimal(invoice["amount"]) >= Decimal(note["totalAmountDue"])
        accepted_invoice = await req.call("GET", f"/payment-api/v1/invoices/{invoice['invoiceId']}")
        assert accepted_invoice["status"] == "ACCEPTED"

    run(shared_localnet, body)


def test_a_requestor_arriving_later_still_sees_every_offer(localnet: Any) -> None:
    """yagna binds offer broadcasts lazily (first demand); offers published before that
    must still reach a requestor that subscribes later."""
    info = localnet(providers=2)
    time.sleep(3)  # the scenario: nobody asks for offers until well after they were sent

    async def body(req: Requestor) -> None:
        sub, drafts, _ = await req.negotiate(req.demand(), want=2, deadline=10)
        await req.unsubscribe(sub)
        assert sorted(drafts) == ["local-provider-1", "local-provider-2"]

    run(info, body)


def test_the_provider_ends_an_agreement_when_it_expires(shared_localnet: LocalNetInfo) -> None:
    async def body(req: Requestor) -> None:
        sub, drafts, _ = await req.negotiate(req.demand())
        await req.unsubscribe(sub)
        agreement_id = await req.agree(next(iter(drafts.values())), valid_for=3)
        state = "Approved"
        with anyio.fail_after(15):
            while state == "Approved":
                await anyio.sleep(0.3)
                state = (await req.agreement(agreement_id))["state"]
        assert state == "Terminated"
        reason = await req.call("GET", f"/market-api/v1/agreements/{agreement_id}/terminate/reason")
        assert reason["terminator"] == "Provider"
        assert reason["reason"]["message"] == "agreement expired"

    run(shared_localnet, body)


def test_local_mounts_from_the_demand_are_visible_read_only(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    (tmp_path / "config.txt").write_text("from the host\n")
    mounts = json.dumps({"/golem/config": str(tmp_path)})

    async def body(req: Requestor) -> None:
        agreement_id = await req.one_agreement(extra={"golem_deploy.local.mounts": mounts})
        activity_id = await req.create_activity(agreement_id)
        capture = {"stdout": {"atEnd": {}}, "stderr": {"atEnd": {}}}
        batch = await req.exec(
            activity_id,
            [
                {"deploy": {}},
                {"start": {"args": []}},
                {
                    "run": {
                        "entry_point": "/bin/cat",
                        "args": ["/golem/config/config.txt"],
                        "capture": capture,
                    }
                },
            ],
        )
        results = await req.results(activity_id, batch)
        assert results[-1]["stdout"] == "from the host\n"
        write = await req.exec(
            activity_id,
            [
                {
                    "run": {
                        "entry_point": "/bin/sh",
                        "args": ["-c", "echo x > /golem/config/new.txt"],
                        "capture": capture,
                    }
                }
            ],
        )
        assert (await req.results(activity_id, write))[-1]["result"] == "Error"
        assert not (tmp_path / "new.txt").exists()
        await req.destroy_activity(activity_id)
        await req.terminate(agreement_id)

    run(shared_localnet, body)


def test_a_provider_publishes_its_offer_again_when_it_disappears(localnet: Any) -> None:
    """Offers expire (yagna's subscription TTL); the provider must re-subscribe, as
    ya-provider does when its offer's event poll answers 404."""
    info = localnet(providers=1)
    ready = json.loads((info.state_dir / "ready.json").read_text())
    provider_key = ready["provider_app_keys"]["local-provider-1"]

    async def body(req: Requestor) -> None:
        headers = {"Authorization": f"Bearer {provider_key}"}
        offers_url = ready["provider_api_url"] + "/market-api/v1/offers"
        async with req.session.get(offers_url, headers=headers) as response:
            (offer,) = await response.json()
        async with req.session.delete(f"{offers_url}/{offer['offerId']}", headers=headers) as r:
            assert r.status == 204
        with anyio.fail_after(15):
            while True:
                async with req.session.get(offers_url, headers=headers) as response:
                    offers = await response.json()
                if offers:
                    break
                await anyio.sleep(0.2)
        assert offers[0]["offerId"] != offer["offerId"]
        sub, drafts, _ = await req.negotiate(req.demand(), want=1, deadline=10)
        await req.unsubscribe(sub)
        assert list(drafts) == ["local-provider-1"]
        assert drafts["local-provider-1"]["properties"] == offers[0]["properties"]

    run(info, body)


def test_the_provider_node_gives_silent_activities_longer_before_destroying_them(
    shared_localnet: LocalNetInfo,
) -> None:
    """One provider yagna serves every local provider's activities, so its usage reports
    can queue behind each other (localnet/daemons.py, INACTIVITY_LIMIT_S); the
    Unresponsive mark keeps yagna's own 5 s."""
    from golem_deploy.localnet.daemons import INACTIVITY_LIMIT_S
    from golem_deploy.localnet.records import read_pid_file

    entry = read_pid_file(shared_localnet.state_dir, "provider")
    assert entry is not None
    environ = Path(f"/proc/{entry[0]}/environ").read_bytes().split(b"\0")
    assert f"INACTIVITY_LIMIT_SECONDS={INACTIVITY_LIMIT_S:g}".encode() in environ
    assert not any(v.startswith(b"UNRESPONSIVE_LIMIT_SECONDS=") for v in environ)
