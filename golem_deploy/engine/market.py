"""The market side of the engine: negotiation and agreements (offers.py builds the demand
and scores offers).

Among acceptable offers the cheapest wins (instances spread over providers first); a
provider that failed us is avoided for the rest of the deployment.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.engine import orphans
from golem_deploy.engine.config import PriceCaps
from golem_deploy.engine.offers import (
    CPU_SEC,
    DURATION_SEC,
    Demand,
    LinearPricing,
    OfferScore,
    build_demand,
    counter_properties,
    offer_platforms,
    score_offer,
)
from golem_deploy.engine.payment_terms import PaymentTerms
from golem_deploy.protocol import EXPIRATION, NODE_NAME
from golem_deploy.yagna.client import YagnaClient
from golem_deploy.yagna.errors import YagnaError, YagnaStatusError
from golem_deploy.yagna.models import Agreement, Proposal

__all__ = [
    "CPU_SEC",
    "DURATION_SEC",
    "Demand",
    "LinearPricing",
    "MarketSession",
    "OfferScore",
    "PriceCaps",
    "SignedAgreement",
    "build_demand",
    "counter_properties",
    "offer_platforms",
    "score_offer",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedAgreement:
    agreement: Agreement
    proposal_id: str

    @property
    def agreement_id(self) -> str:
        return self.agreement.agreement_id

    @property
    def provider_id(self) -> str:
        return self.agreement.provider_id

    @property
    def provider_name(self) -> str:
        return self.agreement.provider_name


@dataclass
class _Draft:
    proposal: Proposal
    cost: Decimal

    @property
    def provider_id(self) -> str:
        return self.proposal.issuer_id


@dataclass
class MarketSession:
    """One demand subscription for one service and the pool of negotiated offers.

    `collect()` runs as a task: it re-subscribes when the subscription vanishes, counters
    acceptable Initial proposals and pools Draft ones (the latest per provider).
    `sign(...)` turns the cheapest pooled draft of a provider we do not avoid into an
    approved agreement. Each draft is used once; when the pool runs dry while instances
    wait, the demand is re-published to get fresh proposals from every matching provider.
    """

    client: YagnaClient
    service: str
    demand: Demand
    caps: PriceCaps
    platform: str
    expiration: datetime
    emit: Callable[[ev.EngineEvent], None]
    avoided: Callable[[str], bool]
    busy_providers: Callable[[], Iterable[str]] = lambda: ()
    payment_terms: PaymentTerms = field(default_factory=PaymentTerms)
    expected_seconds: float = 3600.0
    approval_timeout: float = 15.0
    resubscribe_after: float = 4.0
    _pool: dict[str, _Draft] = field(default_factory=dict)
    _pool_changed: anyio.Event = field(default_factory=anyio.Event)
    _subscription: str | None = None
    _want_resubscribe: bool = False
    #: Providers we countered in this subscription whose Draft has not come back yet (and
    #: when): their drafts are on the way, so an empty pool is no reason to re-subscribe.
    _countered: dict[str, float] = field(default_factory=dict)
    _counter_ids: dict[str, str] = field(default_factory=dict)  # our counter -> provider
    counter_patience: float = 2.0
    _poll_scope: anyio.CancelScope | None = None
    _waiting: int = 0
    _names: dict[str, str] = field(default_factory=dict)
    _orphans: orphans.OrphanWatch = field(default_factory=orphans.OrphanWatch)

    async def collect(self) -> None:
        """Negotiate forever (cancel to stop); unsubscribes on the way out."""
        try:
            while True:
                try:
                    await self._subscribe()
                    await self._poll_until_gone()
                except YagnaError as e:  # yagna hiccup: keep negotiating, don't crash
                    log.warning("%s: market: %s", self.service, e)
                    with anyio.move_on_after(5):
                        await self._unsubscribe()
                    self._subscription = None
                    await anyio.sleep(2.0)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._unsubscribe()

    async def _subscribe(self) -> None:
        self._subscription = await self.client.subscribe_demand(
            self.demand.properties, self.demand.constraints
        )
        self._orphans.subscriptions.add(self._subscription)
        self._want_resubscribe = False
        self._countered.clear()
        self._counter_ids.clear()
        self.emit(ev.DemandSubscribed(service=self.service, subscription_id=self._subscription))

    async def _unsubscribe(self) -> None:
        sub, self._subscription = self._subscription, None
        if sub is None:
            return
        try:
            await self.client.unsubscribe_demand(sub)
        except YagnaError as e:
            log.debug("unsubscribe %s: %s", sub, e)
        self.emit(ev.DemandUnsubscribed(service=self.service, subscription_id=sub))

    async def _poll_until_gone(self) -> None:
        sub = self._subscription
        assert sub is not None
        idle_since = anyio.current_time()
        while True:
            if (
                self._want_resubscribe
                and not self._usable_drafts()
                and not self._drafts_on_the_way()
            ) or (
                self._waiting
                and not self._usable_drafts()
                and anyio.current_time() - idle_since > self.resubscribe_after
            ):
                await self._unsubscribe()
                return
            events = []
            try:
                # sign() cancels this long poll when it wants fresh proposals right away
                with anyio.CancelScope() as self._poll_scope:
                    events = await self.client.demand_events(sub, timeout=2.0, max_events=50)
            except YagnaStatusError as e:
                if e.status in (404, 410):  # subscription expired: publish again
                    self._subscription = None
                    return
                raise
            finally:
                self._poll_scope = None
            # Answer a batch's proposals concurrently: one at a time, 13 counter-proposals
            # took 0.5 s of every negotiation round on a busy machine.
            async with anyio.create_task_group() as tg:
                for event in events:
                    if event.proposal is not None:
                        tg.start_soon(self._on_proposal, sub, event.proposal)
            for event in events:
                if event.proposal is not None:
                    idle_since = anyio.current_time()
                elif event.rejected_id is not None:
                    # e.g. a provider whose capacity is taken: no Draft will come from it
                    provider = self._counter_ids.pop(event.rejected_id, None)
                    if provider is not None:
                        self._countered.pop(provider, None)

    async def _on_proposal(self, sub: str, proposal: Proposal) -> None:
        props = proposal.properties
        provider = proposal.issuer_id
        name = props.get(NODE_NAME)
        self._names[provider] = name if isinstance(name, str) else provider
        score = score_offer(
            props, self.caps, platform=self.platform, expected_seconds=self.expected_seconds
        )
        reason = score.reason
        if score.accepted and (self.avoided(provider) or self.avoided(self._names[provider])):
            # (the user's blacklist may name a provider instead of giving its node id)
            reason = "provider failed us earlier in this deployment"
        if reason:
            self.emit(
                ev.ProposalRejected(
                    service=self.service,
                    provider_id=provider,
                    provider_name=self._names[provider],
                    reason=reason,
                )
            )
            try:
                await self.client.reject_proposal(sub, proposal.proposal_id, reason)
            except YagnaError as e:
                log.debug("reject proposal: %s", e)
            return
        if proposal.state == "Initial":
            props_out = counter_properties(
                self.demand,
                props,
                platform=self.platform,
                expiration=self.expiration,
                now=datetime.now(self.expiration.tzinfo),
                terms=self.payment_terms,
            )
            try:
                counter_id = await self.client.counter_proposal(
                    sub, proposal.proposal_id, props_out, self.demand.constraints
                )
                self._countered[provider] = anyio.current_time()
                self._counter_ids[counter_id] = provider
            except YagnaError as e:
                log.info("counter-proposal to %s failed: %s", self._names[provider], e)
        elif proposal.state == "Draft":
            self._countered.pop(provider, None)
            self._pool[provider] = _Draft(proposal, score.expected_cost)
            self._pool_changed.set()
            self._pool_changed = anyio.Event()

    def _stop_polling(self) -> None:
        if self._poll_scope is not None:
            self._poll_scope.cancel()

    def _drafts_on_the_way(self) -> bool:
        """Whether a provider we countered recently may still send its Draft.

        Re-subscribing drops every negotiation in flight. With many instances waiting, the
        pool is empty for a moment after each agreement although a dozen Drafts are on the
        way; re-subscribing then threw them away, and 100 instances on 13 providers needed
        dozens of rounds (about 15 s) instead of about eight. A provider that rejects our
        counter (its capacity is taken) is not waited for; one that never answers holds us
        up for `counter_patience` at most."""
        now = anyio.current_time()
        return any(now - at < self.counter_patience for at in self._countered.values())

    def _usable_drafts(self) -> list[_Draft]:
        return [d for d in self._pool.values() if not self.avoided(d.provider_id)]

    def _pick(self) -> _Draft | None:
        usable = self._usable_drafts()
        if not usable:
            return None
        busy = set(self.busy_providers())
        # spread instances over providers first, then the cheapest, random tie-break
        best = min(usable, key=lambda d: (d.provider_id in busy, d.cost, random.random()))
        del self._pool[best.provider_id]
        return best

    def extend(self, expiration: datetime) -> None:
        """Negotiate agreements ending at `expiration` from now on (a renewal needs a fresh,
        whole agreement; engine/renewal.py): the demand is published again with the new
        expiration, and drafts negotiated for the old one are dropped."""
        if expiration <= self.expiration:
            return
        props = {**self.demand.properties, EXPIRATION: int(expiration.timestamp() * 1000)}
        self.demand = Demand(props, self.demand.constraints)
        self.expiration = expiration
        self._pool.clear()
        self._want_resubscribe = True
        self._stop_polling()

    async def sign(self, index: int) -> SignedAgreement:
        """Wait for a usable draft and turn it into an approved agreement."""
        self._waiting += 1
        try:
            while True:
                draft = self._pick()
                if draft is None:
                    changed = self._pool_changed
                    self._want_resubscribe = self._want_resubscribe or not self._pool
                    if self._want_resubscribe and not self._drafts_on_the_way():
                        self._stop_polling()  # re-subscribe now, not after the long poll
                    with anyio.move_on_after(self.resubscribe_after + 1):
                        await changed.wait()
                    continue
                signed = await self._try_agreement(draft, index)
                if signed is not None:
                    return signed
        finally:
            self._waiting -= 1

    async def _try_agreement(self, draft: _Draft, index: int) -> SignedAgreement | None:
        provider = draft.provider_id
        valid_to = self.expiration + timedelta(minutes=5)
        since = datetime.now(UTC)
        try:
            with self._orphans.creating(provider) as created:
                agreement_id = await self.client.create_agreement(
                    draft.proposal.proposal_id, valid_to
                )
                created(agreement_id)
        except YagnaError as e:
            log.info("create agreement with %s failed: %s", self._names.get(provider), e)
            if orphans.answer_may_be_lost(e):  # yagna may hold one we never heard of
                await self._orphans.sweep(self.client, self.service, provider, since, self.emit)
            return None
        try:
            return await self._confirm(agreement_id, draft, index)
        except BaseException:
            # cancelled (the instance was stopped) or failed: never leave it pending/approved
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(10),
                contextlib.suppress(YagnaError),
            ):
                await self.client.terminate_agreement(agreement_id, "Cancelled", "Cancelled")
                self.emit(
                    ev.AgreementTerminated(
                        agreement_id=agreement_id,
                        provider_id=provider,
                        by="requestor",
                        reason="not used (not approved, or the instance was stopped)",
                    )
                )
            raise

    async def _confirm(self, agreement_id: str, draft: _Draft, index: int) -> SignedAgreement:
        provider = draft.provider_id
        agreement = await self.client.get_agreement(agreement_id)
        self.emit(
            ev.AgreementCreated(
                service=self.service,
                index=index,
                agreement_id=agreement_id,
                provider_id=provider,
                provider_name=agreement.provider_name,
            )
        )
        try:
            await self.client.confirm_agreement(agreement_id)
            deadline = anyio.current_time() + self.approval_timeout
            approved = False
            while not approved and anyio.current_time() < deadline:
                remaining = max(1.0, math.ceil(deadline - anyio.current_time()))
                approved = await self.client.wait_for_approval(agreement_id, timeout=remaining)
            if not approved:
                raise YagnaStatusError(408, "not approved in time", "agreement approval")
        except YagnaError as e:
            reason = f"agreement not approved: {e.detail}"
            self.emit(
                ev.AgreementRejected(
                    service=self.service,
                    index=index,
                    agreement_id=agreement_id,
                    provider_id=provider,
                    reason=reason,
                )
            )
            raise _AgreementFailed(provider, agreement.provider_name, reason) from e
        return SignedAgreement(agreement, draft.proposal.proposal_id)


class _AgreementFailed(Exception):
    """The provider did not approve: the caller avoids it and asks for another."""

    def __init__(self, provider_id: str, provider_name: str, reason: str) -> None:
        super().__init__(reason)
        self.provider_id = provider_id
        self.provider_name = provider_name
        self.reason = reason


AgreementFailed = _AgreementFailed
