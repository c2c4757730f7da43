"""The provider side of yagna's REST API, typed: what a provider agent calls and receives.

One `ProviderApi` per provider identity (its app key, its app session), each with its own
keep-alive connections (yagna/keepalive.py, the requestor client's lean HTTP/1.1 transport:
aiohttp's request path cost ~0.6 ms of CPU per call, and 100 starting instances make ~500
calls here in seconds, on a machine yagna keeps busy); an `https://` node, never seen on the
local network, would go through the host's aiohttp session. Every failure -- an unexpected
status, no answer, a malformed answer -- is one `ProviderApiError`, so callers catch one
thing. Answers come back as the dataclasses of events.py; the raw JSON never leaves these
two modules.

The requestor side has its own client (golem_deploy.yagna): the two sides call different
endpoints with different keys, and the localnet must not depend on the engine's stack (only
the transport is shared: keepalive.py imports nothing but the standard library).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

import aiohttp

from golem_deploy import protocol as p
from golem_deploy.localnet.provider.events import (
    ActivityEvent,
    AgreementEvent,
    OfferEvent,
    json_objects,
    parse_activity_event,
    parse_agreement_event,
    parse_offer_event,
)
from golem_deploy.yagna.keepalive import AnswerTooLarge, KeepAlivePool

log = logging.getLogger(__name__)

#: Server-side wait of the three long polls (ya-provider uses 3 s too).
LONG_POLL = 3.0
#: The client's deadline for a long poll: the server's wait plus slack for a busy machine.
LONG_POLL_DEADLINE = 15.0
#: The deadline of every other call.
CALL_DEADLINE = 20.0
#: The largest answer read (offer and agreement events are a few kB each).
MAX_ANSWER = 64 << 20
#: An idle connection is dropped after this long (yagna closes its own after 5 s idle).
KEEPALIVE = 4.0


class ProviderApiError(Exception):
    """A call to the provider node failed: `status` it answered, or None when it did not."""

    def __init__(self, request: str, status: int | None, detail: str) -> None:
        answer = f"{status}" if status is not None else "no answer"
        super().__init__(f"{request} -> {answer}: {detail[:300]}")
        self.status = status

    @property
    def gone(self) -> bool:
        """The addressed object no longer exists (e.g. an expired offer subscription)."""
        return self.status in (404, 410)


# ---------------------------------------------------------------- the client


class ProviderApi:
    """Calls of one provider identity on the provider node's REST API."""

    def __init__(
        self, session: aiohttp.ClientSession, api_url: str, app_key: str, app_session: str
    ) -> None:
        self._session = session
        self._api_url = api_url
        self._headers = {"Authorization": f"Bearer {app_key}"}
        self._app_session = app_session
        self._lean = None
        if api_url.startswith("http://"):
            self._lean = KeepAlivePool(
                self._headers, keepalive=KEEPALIVE, connect_timeout=5.0, limit=MAX_ANSWER
            )

    def close(self) -> None:
        """Close the idle connections (the agent is done)."""
        if self._lean is not None:
            self._lean.close()

    # ------------------------------------------------------------ market: offer, proposals

    async def subscribe_offer(self, properties: Mapping[str, object], constraints: str) -> str:
        body = {"properties": dict(properties), "constraints": constraints}
        answer = await self._call("POST", "/market-api/v1/offers", body=body, ok=(201,))
        return str(answer)

    async def unsubscribe_offer(self, subscription_id: str) -> None:
        await self._call("DELETE", f"/market-api/v1/offers/{subscription_id}", ok=(204, 404, 410))

    async def offer_events(self, subscription_id: str) -> list[OfferEvent]:
        """Long-poll the subscription's proposals and agreement proposals."""
        path = f"/market-api/v1/offers/{subscription_id}/events"
        answer = await self._call(
            "GET",
            path,
            params={"timeout": LONG_POLL, "maxEvents": 100},
            timeout=LONG_POLL_DEADLINE,
            ok=(200, 408),
        )
        events: list[OfferEvent] = []
        for raw in json_objects(answer):
            try:
                event = parse_offer_event(subscription_id, raw)
            except (KeyError, TypeError) as error:
                log.warning("GET %s: malformed %s skipped: %r", path, raw.get("eventType"), error)
                continue
            if event is not None:
                events.append(event)
        return events

    async def counter_proposal(
        self,
        subscription_id: str,
        proposal_id: str,
        properties: Mapping[str, object],
        constraints: str,
    ) -> None:
        await self._call(
            "POST",
            f"/market-api/v1/offers/{subscription_id}/proposals/{proposal_id}",
            body={"properties": dict(properties), "constraints": constraints},
        )

    async def reject_proposal(
        self, subscription_id: str, proposal_id: str, reason: str, *, final: bool
    ) -> None:
        await self._call(
            "POST",
            f"/market-api/v1/offers/{subscription_id}/proposals/{proposal_id}/reject",
            body={"message": reason, p.REJECTION_IS_FINAL: final},
            ok=(200, 204),
        )

    # ------------------------------------------------------------ market: agreements

    async def approve_agreement(self, agreement_id: str) -> None:
        """Approve (in our app session, so its events reach our polls)."""
        await self._call(
            "POST",
            f"/market-api/v1/agreements/{agreement_id}/approve",
            params={"appSessionId": self._app_session, "timeout": 10.0},
            ok=(200, 204),
        )

    async def reject_agreement(self, agreement_id: str, reason: str, *, final: bool) -> None:
        await self._call(
            "POST",
            f"/market-api/v1/agreements/{agreement_id}/reject",
            body={"message": reason, p.REJECTION_IS_FINAL: final},
            ok=(200, 204),
        )

    async def terminate_agreement(self, agreement_id: str, message: str) -> None:
        """Terminate; an agreement that already ended (410) is fine."""
        await self._call(
            "POST",
            f"/market-api/v1/agreements/{agreement_id}/terminate",
            body={"message": message, p.PROVIDER_CODE: "Success"},
            ok=(200, 204, 410),
        )

    async def agreement_events(self, after: str) -> list[AgreementEvent]:
        """Long-poll our session's agreement events after the cursor `after`."""
        answer = await self._call(
            "GET",
            "/market-api/v1/agreementEvents",
            params={
                "afterTimestamp": after,
                "timeout": LONG_POLL,
                "appSessionId": self._app_session,
            },
            timeout=LONG_POLL_DEADLINE,
            ok=(200, 408),
        )
        return [parse_agreement_event(raw) for raw in json_objects(answer)]

    # ------------------------------------------------------------ activities

    async def activity_events(self, after: str) -> list[ActivityEvent]:
        """Long-poll our session's CreateActivity/DestroyActivity events after `after`."""
        answer = await self._call(
            "GET",
            "/activity-api/v1/events",
            params={
                "afterTimestamp": after,
                "timeout": LONG_POLL,
                "appSessionId": self._app_session,
                "maxEvents": 100,
            },
            timeout=LONG_POLL_DEADLINE,
            ok=(200, 408),  # 408: the long poll timed out with no event
        )
        return [parse_activity_event(raw) for raw in json_objects(answer)]

    async def set_activity_state(
        self, activity_id: str, state: p.ActivityStateName, reason: str, error: str | None
    ) -> None:
        await self._call(
            "PUT",
            f"/activity-api/v1/activity/{activity_id}/state",
            body={"state": [str(state), None], "reason": reason, "errorMessage": error},
        )

    # ------------------------------------------------------------ payments

    async def create_debit_note(
        self, activity_id: str, amount: str, counters: list[float], due: datetime | None = None
    ) -> str:
        """Issue a debit note (not yet sent; payable by `due` when given); its id."""
        body: dict[str, object] = {
            "activityId": activity_id,
            "totalAmountDue": amount,
            "usageCounterVector": counters,
        }
        if due is not None:
            body["paymentDueDate"] = due.isoformat()
        answer = await self._call("POST", "/payment-api/v1/debitNotes", body=body, ok=(200, 201))
        return _id(answer, "debitNoteId", "POST /payment-api/v1/debitNotes")

    async def create_invoice(
        self, agreement_id: str, activity_ids: Sequence[str], amount: str, due: datetime
    ) -> str:
        """Issue an invoice (not yet sent); its id."""
        body = {
            "agreementId": agreement_id,
            "activityIds": list(activity_ids),
            "amount": amount,
            "paymentDueDate": due.isoformat(),
        }
        answer = await self._call("POST", "/payment-api/v1/invoices", body=body, ok=(200, 201))
        return _id(answer, "invoiceId", "POST /payment-api/v1/invoices")

    async def debit_note_status(self, debit_note_id: str) -> str:
        """The debit note's status as yagna records it (ISSUED, RECEIVED, ACCEPTED, ...)."""
        answer = await self._call("GET", f"/payment-api/v1/debitNotes/{debit_note_id}")
        if isinstance(answer, dict) and isinstance(answer.get("status"), str):
            return str(answer["status"])
        raise ProviderApiError(f"GET debit note {debit_note_id}", None, "no status")

    async def send_debit_note(self, debit_note_id: str) -> None:
        await self._send(f"/payment-api/v1/debitNotes/{debit_note_id}/send")

    async def send_invoice(self, invoice_id: str) -> None:
        await self._send(f"/payment-api/v1/invoices/{invoice_id}/send")

    async def _send(self, path: str) -> None:
        """Deliver a document to the requestor's node (waits up to 5 s for its answer)."""
        await self._call("POST", path, params={"timeout": 5.0}, timeout=LONG_POLL_DEADLINE)

    # ------------------------------------------------------------ plumbing

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, object] | None = None,
        params: Mapping[str, str | int | float] | None = None,
        ok: tuple[int, ...] = (200,),
        timeout: float = CALL_DEADLINE,
    ) -> object:
        """One request; its JSON answer (None when empty, or the text when not JSON).

        A 408 listed in `ok` is a long poll's "nothing yet": the answer is None.
        """
        request = f"{method} {path}"
        try:
            if self._lean is not None:
                query = {k: str(v) for k, v in (params or {}).items()}
                data = json.dumps(body).encode() if body is not None else None
                status, raw = await self._lean.request(
                    method, self._api_url + path, params=query, body=data, timeout=timeout
                )
                text = raw.decode(errors="replace")
            else:
                async with self._session.request(
                    method,
                    self._api_url + path,
                    headers=self._headers,
                    params=params,
                    json=body,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as response:
                    text = await response.text()
                    status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError, AnswerTooLarge) as error:
            raise ProviderApiError(request, None, repr(error)) from error
        if status not in ok:
            raise ProviderApiError(request, status, text)
        if status == 408 or not text:
            return None
        try:
            answer: object = json.loads(text)
        except ValueError:
            return text
        return answer


def _id(answer: object, key: str, request: str) -> str:
    if isinstance(answer, dict) and answer.get(key):
        return str(answer[key])
    raise ProviderApiError(request, None, f"the answer has no {key}: {str(answer)[:200]}")
