"""A minimal requestor written with plain aiohttp, as any Golem SDK talks to yagna.

Used by the local-network integration tests: it deliberately re-states the requestor side of
the protocol (docs: yagna-rest.md) instead of using golem-deploy's engine, so the tests show
the local network works for any client, not just ours.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import anyio

from golem_deploy.localnet import LocalNetInfo

PLATFORM = "erc20-holesky-tglm"
TASK_PACKAGE = "hash:sha3:" + "0" * 56 + ":http://127.0.0.1:1/local-image.gvmi"


class HttpError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:500]}")
        self.status = status
        self.body = body


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Requestor:
    def __init__(self, info: LocalNetInfo, session: aiohttp.ClientSession) -> None:
        self.info = info
        self.session = session
        self.headers = {"Authorization": f"Bearer {info.app_key}"}
        self.node_id = ""
        self.allocation_id = ""

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
        timeout: float = 30.0,
    ) -> Any:
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = body
        async with self.session.request(
            method,
            self.info.api_url + path,
            headers=self.headers,
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
            **kwargs,
        ) as response:
            text = await response.text()
            if response.status not in ok:
                raise HttpError(method, path, response.status, text)
            return json.loads(text) if text else None

    # ------------------------------------------------------------------ setup

    async def setup(self, budget: str = "10.0") -> None:
        me = await self.call("GET", "/me")
        self.node_id = me["identity"]
        allocation = await self.call(
            "POST",
            "/payment-api/v1/allocations",
            body={
                "address": self.node_id,
                "paymentPlatform": PLATFORM,
                "totalAmount": budget,
                "timeout": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
                "makeDeposit": False,
            },
        )
        self.allocation_id = allocation["allocationId"]

    def demand(
        self,
        *,
        min_threads: int = 1,
        min_mem_gib: float = 0.5,
        extra: Mapping[str, Any] | None = None,
        subnet: str | None = None,
    ) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "golem.srv.comp.expiration": int((time.time() + 1800) * 1000),
            "golem.srv.caps.multi-activity": True,
            "golem.node.debug.subnet": subnet or self.info.subnet,
            f"golem.com.payment.platform.{PLATFORM}.address": self.node_id,
            "golem.com.payment.protocol.version": "3",
            "golem.srv.comp.task_package": TASK_PACKAGE,
            "golem.srv.comp.vm.package_format": "gvmkit-squash",
            # notes every 5 s, so tests see them (the providers' own default is 2 min)
            "golem.com.scheme.payu.debit-note.interval-sec?": 5,
        }
        properties.update(extra or {})
        constraints = (
            f"(&(golem.node.debug.subnet={subnet or self.info.subnet})\n\t"
            f"(golem.com.payment.platform.{PLATFORM}.address=*)\n\t"
            "(golem.com.pricing.model=linear)\n\t"
            f"(&(golem.inf.mem.gib>={min_mem_gib})\n\t(golem.inf.storage.gib>=2.0)\n\t"
            f"(golem.inf.cpu.threads>={min_threads})\n\t(golem.runtime.name=vm)))"
        )
        return {"properties": properties, "constraints": constraints}

    # ------------------------------------------------------------------ market

    async def subscribe(self, demand: dict[str, Any]) -> str:
        return str(await self.call("POST", "/market-api/v1/demands", body=demand))

    async def unsubscribe(self, sub: str) -> None:
        await self.call("DELETE", f"/market-api/v1/demands/{sub}", ok=(204, 404, 410))

    async def events(self, sub: str, timeout: float = 2.0) -> list[dict[str, Any]]:
        events = await self.call(
            "GET",
            f"/market-api/v1/demands/{sub}/events",
            params={"timeout": timeout, "maxEvents": 100},
        )
        return list(events or [])

    async def negotiate(
        self,
        demand: dict[str, Any],
        *,
        want: int = 1,
        deadline: float = 20.0,
        sub: str | None = None,
    ) -> tuple[str, dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Counter every Initial proposal; collect provider Drafts and rejections.

        Returns (subscription, drafts by provider name, rejections by provider name).
        Stops once `want` providers answered (Draft or rejection) or the deadline passed.
        """
        sub = sub or await self.subscribe(demand)
        counter = dict(demand)
        counter["properties"] = {
            **demand["properties"],
            "golem.com.payment.chosen-platform": PLATFORM,
        }
        drafts: dict[str, dict[str, Any]] = {}
        rejections: dict[str, dict[str, Any]] = {}
        names: dict[str, str] = {}
        end = time.monotonic() + deadline
        while time.monotonic() < end and len(drafts) + len(rejections) < want:
            for event in await self.events(sub):
                if event["eventType"] == "ProposalEvent":
                    proposal = event["proposal"]
                    if proposal["state"] == "Initial":
                        names[proposal["issuerId"]] = proposal["properties"]["golem.node.id.name"]
                        ours = await self.call(
                            "POST",
                            f"/market-api/v1/demands/{sub}/proposals/{proposal['proposalId']}",
                            body=counter,
                        )
                        names[str(ours)] = proposal["properties"]["golem.node.id.name"]
                    elif proposal["state"] == "Draft":
                        drafts[proposal["properties"]["golem.node.id.name"]] = proposal
                elif event["eventType"] == "ProposalRejectedEvent":
                    rejections[names.get(event["proposalId"], event["proposalId"])] = event
        return sub, drafts, rejections

    async def agree(
        self, draft: dict[str, Any], wait: float = 15.0, valid_for: float = 3600.0
    ) -> str:
        """Create, confirm and wait for approval; raises HttpError(410) when rejected."""
        valid_to = (datetime.now(UTC) + timedelta(seconds=valid_for)).isoformat()
        agreement_id = str(
            await self.call(
                "POST",
                "/market-api/v1/agreements",
                body={"proposalId": draft["proposalId"], "validTo": valid_to},
            )
        )
        await self.call("POST", f"/market-api/v1/agreements/{agreement_id}/confirm")
        await self.call(
            "POST",
            f"/market-api/v1/agreements/{agreement_id}/wait",
            params={"timeout": wait},
            timeout=wait + 5,
        )
        return agreement_id

    async def agreement(self, agreement_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/market-api/v1/agreements/{agreement_id}"))

    async def terminate(self, agreement_id: str, message: str = "done") -> None:
        await self.call(
            "POST",
            f"/market-api/v1/agreements/{agreement_id}/terminate",
            body={"message": message, "golem.requestor.code": "Success"},
            ok=(200, 204, 410),
        )

    async def one_agreement(self, provider: str | None = None, **demand: Any) -> str:
        """Negotiate with every provider and sign with `provider` (or the first Draft)."""
        sub, drafts, _ = await self.negotiate(
            self.demand(**demand), want=len(self.info.providers) if provider else 1
        )
        await self.unsubscribe(sub)
        draft = drafts[provider] if provider else next(iter(drafts.values()))
        return await self.agree(draft)

    # ------------------------------------------------------------------ activity

    async def create_activity(self, agreement_id: str, timeout: float = 10.0) -> str:
        return str(
            await self.call(
                "POST",
                "/activity-api/v1/activity",
                body=agreement_id,
                params={"timeout": timeout},
                timeout=timeout + 5,
            )
        )

    async def destroy_activity(self, activity_id: str, timeout: float = 10.0) -> None:
        await self.call(
            "DELETE",
            f"/activity-api/v1/activity/{activity_id}",
            params={"timeout": timeout},
            timeout=timeout + 5,
        )

    async def state(self, activity_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/activity-api/v1/activity/{activity_id}/state"))

    async def exec(self, activity_id: str, script: list[dict[str, Any]]) -> str:
        return str(
            await self.call(
                "POST",
                f"/activity-api/v1/activity/{activity_id}/exec",
                body={"text": json.dumps(script)},
            )
        )

    async def results(
        self, activity_id: str, batch_id: str, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Poll until the batch is finished (last result has isBatchFinished)."""
        end = time.monotonic() + timeout
        while True:
            results = await self.call(
                "GET",
                f"/activity-api/v1/activity/{activity_id}/exec/{batch_id}",
                params={"timeout": 2.0},
                timeout=10.0,
            )
            if results and results[-1]["isBatchFinished"]:
                return list(results)
            if time.monotonic() > end:
                raise TimeoutError(f"batch {batch_id} unfinished: {results}")

    async def stream(
        self, activity_id: str, batch_id: str, last_index: int, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Read SSE runtime events until the `finished` of `last_index` or a failure."""
        events: list[dict[str, Any]] = []
        with anyio.fail_after(timeout):
            async with self.session.get(
                self.info.api_url + f"/activity-api/v1/activity/{activity_id}/exec/{batch_id}",
                headers={**self.headers, "Accept": "text/event-stream"},
            ) as response:
                assert response.status == 200, await response.text()
                async for raw in response.content:
                    line = raw.decode().strip()
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    events.append(event)
                    finished = event["kind"].get("finished")
                    if finished is not None and (
                        event["index"] == last_index or finished["return_code"] != 0
                    ):
                        return events
        return events

    # ------------------------------------------------------------------ payments

    async def payment_events(self, kind: str, after: str) -> list[dict[str, Any]]:
        events = await self.call(
            "GET", f"/payment-api/v1/{kind}Events", params={"afterTimestamp": after, "timeout": 1}
        )
        return list(events or [])

    async def accept_debit_note(self, debit_note_id: str) -> dict[str, Any]:
        note = dict(await self.call("GET", f"/payment-api/v1/debitNotes/{debit_note_id}"))
        await self.call(
            "POST",
            f"/payment-api/v1/debitNotes/{debit_note_id}/accept",
            body={
                "totalAmountAccepted": note["totalAmountDue"],
                "allocationId": self.allocation_id,
            },
        )
        return note

    async def accept_invoice(self, invoice_id: str) -> dict[str, Any]:
        invoice = dict(await self.call("GET", f"/payment-api/v1/invoices/{invoice_id}"))
        await self.call(
            "POST",
            f"/payment-api/v1/invoices/{invoice_id}/accept",
            body={"totalAmountAccepted": invoice["amount"], "allocationId": self.allocation_id},
        )
        return invoice


async def with_requestor(info: LocalNetInfo) -> tuple[aiohttp.ClientSession, Requestor]:
    session = aiohttp.ClientSession()
    requestor = Requestor(info, session)
    await requestor.setup()
    return session, requestor
