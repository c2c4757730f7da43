"""A client for the requestor side of yagna's REST API.

Exactly what real yagna speaks (see shared/docs/yagna-rest.md): bare JSON-string bodies
where yagna wants them (activity create), JSON-string answers for ids, 200/201/204 as yagna
actually returns them, long polls with a server-side `timeout` plus a client deadline a little
longer, and SSE (`Accept: text/event-stream`) for live exec output.

Failure policy: 408/504 and connection errors are intermittent and retried with a bounded
exponential backoff; then no answer raises YagnaUnreachable and any other error status
YagnaStatusError(status, message, "METHOD /path") -- or its subclass ActivityGone, chosen by
`wire.status_error`, the one place that reads yagna's error text. Answers that are not JSON,
miss required fields, or exceed MAX_BODY bytes raise YagnaBadAnswer -- never a hang, never a
KeyError. The app key only ever goes into the Authorization header; it is not part of any
repr, log line or error.

Transport: the JSON requests to an `http://` yagna (the local network's, a user's own on
loopback) go over keepalive.py, a lean HTTP/1.1 client: a third of the supervisor's CPU at
100 instances less than through aiohttp (bench/RESULTS.md). aiohttp carries the rest: an
`https://` yagna, the live-output streams (SSE) and the websockets of the Net and GSB APIs.

Size: about 400 lines: one short method per REST call the engine makes.
"""

from __future__ import annotations

import functools
import json
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import anyio

from golem_deploy.protocol import REQUESTOR_CODE
from golem_deploy.yagna.config import (
    ACTIVITY,
    API_URL_VARIABLES,
    DEFAULT_API_URL,
    MARKET,
    NET,
    PAYMENT,
    YagnaConfig,
    per_api_urls_from_env,
)
from golem_deploy.yagna.errors import YagnaBadAnswer, YagnaUnreachable
from golem_deploy.yagna.keepalive import AnswerTooLarge, KeepAlivePool
from golem_deploy.yagna.models import (
    ActivityState,
    ActivityUsage,
    Agreement,
    AgreementEvent,
    Allocation,
    DebitNote,
    Decoration,
    ExeResult,
    Identity,
    Invoice,
    MarketEvent,
    PaymentEvent,
    RuntimeEvent,
)
from golem_deploy.yagna.wire import (
    MAX_BODY,
    JsonValue,
    decode,
    expect_list,
    expect_string,
    read_limited,
    runtime_events,
    status_error,
)

__all__ = [
    "ACTIVITY",
    "API_URL_VARIABLES",
    "DEFAULT_API_URL",
    "MARKET",
    "MAX_BODY",
    "NET",
    "PAYMENT",
    "YagnaClient",
    "YagnaConfig",
    "per_api_urls_from_env",
]

log = logging.getLogger(__name__)

#: How long an idle connection to yagna is kept for the next request: longer than
#: aiohttp's 15 s, so fewer connections are opened again after a quiet spell, and well under
#: the 60 s after which yagna 0.17 closes an idle one (measured; only a connection that never
#: sent a request is closed after 5 s). Ours closing first means no request is ever sent on
#: a connection yagna is closing (ServerDisconnectedError: a failure for the requests that
#: are never retried, such as exec and activity create).
KEEPALIVE_S = 30.0
SOCK_CONNECT_S = 10.0  # yagna on loopback or a LAN accepts at once


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


@functools.cache
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """A request's bound, the body's reading included: aiohttp's own timer rather than a
    cancel scope around it (one less per request; at 100 instances, 40 requests a second)."""
    return aiohttp.ClientTimeout(total=seconds, sock_connect=SOCK_CONNECT_S)


class YagnaClient:
    """One aiohttp session to one yagna. Use as `async with YagnaClient(config) as c:`."""

    def __init__(
        self,
        config: YagnaConfig,
        *,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 4.0,
    ) -> None:
        self.config = config
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._session: aiohttp.ClientSession | None = None
        self._lean: KeepAlivePool | None = None

    def __repr__(self) -> str:
        return f"YagnaClient({self.config.api_url!r})"

    async def __aenter__(self) -> YagnaClient:
        # An https yagna gets a context of our own, with the CA store loaded: the supervisor
        # imports aiohttp without it (supervisor/tls_deferred.py).
        tls = ssl.create_default_context() if self.config.uses_tls else True
        auth = {"Authorization": f"Bearer {self.config.app_key}"}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, keepalive_timeout=KEEPALIVE_S),
            headers=auth,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=SOCK_CONNECT_S),
        )
        if not self.config.uses_tls:  # the usual case: plain JSON over keepalive.py
            self._lean = KeepAlivePool(
                auth,
                keepalive=KEEPALIVE_S,
                connect_timeout=SOCK_CONNECT_S,
                limit=MAX_BODY,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._lean is not None:
            self._lean.close()
            self._lean = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("YagnaClient used outside `async with`")
        return self._session

    # --------------------------------------------------------------------- transport

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        send_body: bool = False,
        params: Mapping[str, object] | None = None,
        timeout: float = 30.0,
        retry: bool = True,
        poll: bool = False,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> tuple[int, object]:
        """Send one request; return (status, decoded JSON or None).

        `send_body` sends `body` as JSON even when it is None (yagna wants a literal `null`
        for some bodies). 408/504/connection errors are retried when `retry` is set (leave it
        off for requests that must not be repeated, e.g. creating an activity or a batch).
        With `poll`, a 408 is returned as (408, None): a long poll's "nothing yet".
        """
        what = f"{method} {path}"
        url = self.config.url(path)
        q = {k: str(v) for k, v in (params or {}).items() if v is not None}
        data = json.dumps(body).encode() if (body is not None or send_body) else None
        attempt = 0
        while True:
            attempt += 1
            status: int | None = None  # None: no HTTP answer at all
            raw, err = b"", ""
            try:
                if self._lean is not None:
                    status, raw = await self._lean.request(
                        method, url, params=q, body=data, timeout=timeout
                    )
                else:  # an https yagna; keepalive.py sets Content-Type itself
                    headers = {"Content-Type": "application/json"} if data is not None else {}
                    async with self.session.request(
                        method, url, params=q, data=data, headers=headers, timeout=_timeout(timeout)
                    ) as resp:
                        raw = await read_limited(resp, what)
                        status = resp.status
            except TimeoutError:
                err = f"no answer within {timeout:g} s"
            except AnswerTooLarge as e:
                raise YagnaBadAnswer(str(e), what) from None
            except (aiohttp.ClientError, OSError) as e:
                err = f"connection failed ({type(e).__name__}: {e})"
            if status in ok:
                return status, decode(raw, what) if raw.strip() else None
            if poll and status == 408:
                return status, None
            intermittent = status in (None, 408, 504)
            if intermittent and retry and attempt < self.retries:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                log.debug("yagna %s: %s, retry %d in %.1fs", what, err or status, attempt, delay)
                await anyio.sleep(delay)
                continue
            if status is None:
                raise YagnaUnreachable(
                    err,
                    what,
                    hint=f"is yagna running at {self.config.api_url}? (`yagna service run`)",
                )
            raise status_error(status, raw, what)

    async def _get(self, path: str, **kw: Any) -> object:
        return (await self.request("GET", path, **kw))[1]

    async def _post(self, path: str, body: object = None, **kw: Any) -> object:
        return (await self.request("POST", path, body=body, **kw))[1]

    # ---------------------------------------------------------------------- identity

    async def me(self) -> Identity:
        return Identity.parse(await self._get("/me"), "GET /me")

    # ------------------------------------------------------------------------ market

    async def subscribe_demand(self, properties: dict[str, JsonValue], constraints: str) -> str:
        path = f"{MARKET}/demands"
        body = {"properties": properties, "constraints": constraints}
        return expect_string(await self._post(path, body, retry=False), f"POST {path}")

    async def unsubscribe_demand(self, subscription_id: str) -> None:
        """Unsubscribe; one that already expired or is gone (404, 410) is no error."""
        path = f"{MARKET}/demands/{subscription_id}"
        await self.request("DELETE", path, ok=(200, 204, 404, 410))

    async def demand_events(
        self, subscription_id: str, *, timeout: float = 5.0, max_events: int = 20
    ) -> list[MarketEvent]:
        """Long poll (consuming) for proposals; [] when none arrived within `timeout`."""
        path = f"{MARKET}/demands/{subscription_id}/events"
        data = await self._get(
            path, params={"timeout": timeout, "maxEvents": max_events}, timeout=timeout + 10
        )
        return [MarketEvent.parse(e, f"GET {path}") for e in expect_list(data, f"GET {path}")]

    async def counter_proposal(
        self,
        subscription_id: str,
        proposal_id: str,
        properties: dict[str, JsonValue],
        constraints: str,
    ) -> str:
        path = f"{MARKET}/demands/{subscription_id}/proposals/{proposal_id}"
        body = {"properties": properties, "constraints": constraints}
        return expect_string(await self._post(path, body, timeout=70, retry=False), f"POST {path}")

    async def reject_proposal(self, subscription_id: str, proposal_id: str, reason: str) -> None:
        path = f"{MARKET}/demands/{subscription_id}/proposals/{proposal_id}/reject"
        await self._post(path, {"message": reason}, timeout=10)

    async def create_agreement(self, proposal_id: str, valid_to: datetime) -> str:
        path = f"{MARKET}/agreements"
        body = {"proposalId": proposal_id, "validTo": valid_to.astimezone(UTC).isoformat()}
        return expect_string(await self._post(path, body, retry=False), f"POST {path}")

    async def get_agreement(self, agreement_id: str) -> Agreement:
        path = f"{MARKET}/agreements/{agreement_id}"
        return Agreement.parse(await self._get(path), f"GET {path}")

    async def agreement_ids(self, state: str, after: datetime) -> list[str]:
        """The ids of the agreements in `state` yagna created after `after` (either role)."""
        path = f"{MARKET}/agreements"
        params = {"state": state, "afterDate": after.astimezone(UTC).isoformat()}
        entries = expect_list(await self._get(path, params=params), f"GET {path}")
        return [str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e]

    async def cancel_agreement(self, agreement_id: str, reason: str) -> None:
        """Cancel an agreement nobody confirmed yet (Proposal or Pending); a final one (410)
        counts as done."""
        await self.request(
            "POST",
            f"{MARKET}/agreements/{agreement_id}/cancel",
            body={"message": reason},
            ok=(200, 204, 410),
        )

    async def confirm_agreement(self, agreement_id: str) -> None:
        await self._post(f"{MARKET}/agreements/{agreement_id}/confirm")

    async def wait_for_approval(self, agreement_id: str, timeout: float = 15.0) -> bool:
        """True once Approved; False if not yet decided within `timeout` (408).

        A rejection/cancellation raises YagnaError with status 410 and yagna's reason."""
        status, _ = await self.request(
            "POST",
            f"{MARKET}/agreements/{agreement_id}/wait",
            params={"timeout": timeout},
            timeout=timeout + 10,
            retry=False,
            poll=True,
        )
        return status != 408

    async def terminate_agreement(self, agreement_id: str, reason: str, code: str) -> None:
        """Terminate; an agreement already terminated (410) counts as done."""
        await self.request(
            "POST",
            f"{MARKET}/agreements/{agreement_id}/terminate",
            body={"message": reason, REQUESTOR_CODE: code},
            ok=(200, 204, 410),
        )

    async def agreement_events(
        self, after: str | None, *, timeout: float = 5.0, max_events: int = 50
    ) -> list[AgreementEvent]:
        path = f"{MARKET}/agreementEvents"
        data = await self._get(
            path,
            params={"timeout": timeout, "afterTimestamp": after, "maxEvents": max_events},
            timeout=timeout + 10,
        )
        return [AgreementEvent.parse(e, f"GET {path}") for e in expect_list(data, f"GET {path}")]

    # ---------------------------------------------------------------------- activity

    async def create_activity(self, agreement_id: str, timeout: float = 30.0) -> str:
        path = f"{ACTIVITY}/activity"
        data = await self._post(
            path, agreement_id, params={"timeout": timeout}, timeout=timeout + 10, retry=False
        )
        return expect_string(data, f"POST {path}")

    async def activities_of(self, agreement_id: str) -> list[str]:
        """The ids of every activity yagna created under `agreement_id`."""
        path = f"{ACTIVITY}/activity"
        data = await self._get(path, params={"agreementId": agreement_id})
        return [expect_string(a, f"GET {path}") for a in expect_list(data, f"GET {path}")]

    async def exec(self, activity_id: str, commands: list[dict[str, JsonValue]]) -> str:
        path = f"{ACTIVITY}/activity/{activity_id}/exec"
        body = {"text": json.dumps(commands)}
        return expect_string(await self._post(path, body, retry=False), f"POST {path}")

    async def exec_results(
        self, activity_id: str, batch_id: str, *, timeout: float = 5.0
    ) -> list[ExeResult]:
        """Results of the finished prefix of the batch (long-polls up to `timeout`)."""
        path = f"{ACTIVITY}/activity/{activity_id}/exec/{batch_id}"
        data = await self._get(path, params={"timeout": timeout}, timeout=timeout + 10)
        return [ExeResult.parse(e, f"GET {path}") for e in expect_list(data, f"GET {path}")]

    async def stream_exec(self, activity_id: str, batch_id: str) -> AsyncIterator[RuntimeEvent]:
        """Live runtime events of a batch over SSE (yields until the server closes or the
        caller stops iterating; the caller decides when the batch is done)."""
        async for event in self.sse(f"{ACTIVITY}/activity/{activity_id}/exec/{batch_id}"):
            yield event

    async def sse(self, path: str) -> AsyncIterator[RuntimeEvent]:
        """Parse `event: runtime` frames of a server-sent-event stream at `path`."""
        what = f"GET {path} (stream)"
        try:
            async with self.session.get(
                self.config.url(path), headers={"Accept": "text/event-stream"}
            ) as resp:
                if resp.status != 200:
                    raise status_error(resp.status, await read_limited(resp, what), what)
                async for event in runtime_events(resp, what):
                    yield event
        except aiohttp.ClientError as e:
            raise YagnaUnreachable(f"stream broken ({type(e).__name__}: {e})", what) from e
        except ValueError as e:  # aiohttp's reader refusing an over-long line
            raise YagnaBadAnswer(f"stream unreadable: {e}", what) from e

    async def activity_state(self, activity_id: str, timeout: float = 5.0) -> ActivityState:
        path = f"{ACTIVITY}/activity/{activity_id}/state"
        data = await self._get(path, params={"timeout": timeout}, timeout=timeout + 5, retry=False)
        return ActivityState.parse(data, f"GET {path}")

    async def activity_usage(self, activity_id: str, timeout: float = 5.0) -> ActivityUsage:
        path = f"{ACTIVITY}/activity/{activity_id}/usage"
        data = await self._get(path, params={"timeout": timeout}, timeout=timeout + 5, retry=False)
        return ActivityUsage.parse(data, f"GET {path}")

    async def request_destroy(self, activity_id: str, wait: float) -> bool:
        """DELETE the activity, letting yagna wait only `wait` s for the provider to end it:
        True when it ended in that time, False when the wait ran out (yagna's 408: the
        provider was told, and is ending it; its state will say Terminated)."""
        status, _ = await self.request(
            "DELETE",
            f"{ACTIVITY}/activity/{activity_id}",
            params={"timeout": wait},
            timeout=wait + 5,
            poll=True,
            ok=(200, 204, 404, 410),
        )
        return status != 408

    async def destroy_activity(self, activity_id: str, timeout: float = 10.0) -> None:
        await self.request(
            "DELETE",
            f"{ACTIVITY}/activity/{activity_id}",
            params={"timeout": timeout},
            timeout=timeout + 5,
            ok=(200, 204, 404, 410),
        )

    # ----------------------------------------------------------------------- payment

    async def create_allocation(
        self, *, address: str, platform: str, total: Decimal, timeout: datetime
    ) -> Allocation:
        path = f"{PAYMENT}/allocations"
        body = {
            "address": address,
            "paymentPlatform": platform,
            "totalAmount": str(total),
            "timestamp": _now_iso(),
            "timeout": timeout.astimezone(UTC).isoformat(),
            "makeDeposit": False,
        }
        return Allocation.parse(await self._post(path, body, retry=False), f"POST {path}")

    async def amend_allocation(self, allocation_id: str, *, total: Decimal) -> Allocation:
        """Change the allocation's total (a budget changed on a running deployment)."""
        path = f"{PAYMENT}/allocations/{allocation_id}"
        _, answer = await self.request("PUT", path, body={"totalAmount": str(total)})
        return Allocation.parse(answer, f"PUT {path}")

    async def get_allocation(self, allocation_id: str) -> Allocation:
        path = f"{PAYMENT}/allocations/{allocation_id}"
        return Allocation.parse(await self._get(path), f"GET {path}")

    async def release_allocation(self, allocation_id: str) -> None:
        await self.request(
            "DELETE", f"{PAYMENT}/allocations/{allocation_id}", ok=(200, 204, 404, 410)
        )

    async def demand_decorations(self, allocation_ids: list[str]) -> Decoration:
        path = f"{PAYMENT}/demandDecorations"
        data = await self._get(path, params={"allocationIds": ",".join(allocation_ids)})
        return Decoration.parse(data, f"GET {path}")

    async def invoice_events(self, after: str | None, timeout: float = 5.0) -> list[PaymentEvent]:
        return await self._payment_events("invoiceEvents", after, timeout)

    async def debit_note_events(
        self, after: str | None, timeout: float = 5.0
    ) -> list[PaymentEvent]:
        return await self._payment_events("debitNoteEvents", after, timeout)

    async def _payment_events(
        self, what: str, after: str | None, timeout: float
    ) -> list[PaymentEvent]:
        path = f"{PAYMENT}/{what}"
        data = await self._get(
            path, params={"timeout": timeout, "afterTimestamp": after}, timeout=timeout + 10
        )
        return [PaymentEvent.parse(e, f"GET {path}") for e in expect_list(data, f"GET {path}")]

    async def get_invoice(self, invoice_id: str) -> Invoice:
        path = f"{PAYMENT}/invoices/{invoice_id}"
        return Invoice.parse(await self._get(path), f"GET {path}")

    async def get_debit_note(self, debit_note_id: str) -> DebitNote:
        path = f"{PAYMENT}/debitNotes/{debit_note_id}"
        return DebitNote.parse(await self._get(path), f"GET {path}")

    async def accept_invoice(self, invoice_id: str, amount: Decimal, allocation_id: str) -> None:
        body = {"totalAmountAccepted": str(amount), "allocationId": allocation_id}
        await self._post(f"{PAYMENT}/invoices/{invoice_id}/accept", body, timeout=40)

    async def reject_invoice(self, invoice_id: str, reason: str, message: str) -> None:
        body = {"rejectionReason": reason, "totalAmountAccepted": "0", "message": message}
        await self._post(f"{PAYMENT}/invoices/{invoice_id}/reject", body, timeout=40)

    async def accept_debit_note(
        self, debit_note_id: str, amount: Decimal, allocation_id: str
    ) -> None:
        body = {"totalAmountAccepted": str(amount), "allocationId": allocation_id}
        await self._post(f"{PAYMENT}/debitNotes/{debit_note_id}/accept", body, timeout=40)
