"""The market side of the engine: negotiation (offers.py builds the demand and checks
offers, strategy.py scores them, agreement.py signs the chosen one).

Instances of a service are spread over providers first (the provider with the fewest of
them wins), then the best score under the strategy, then the lowest expected cost; a
provider that failed us is avoided for the rest of the deployment.

Negotiation scales with instances, not providers. A demand subscription gets one proposal
per provider and yagna lets each be countered once, so one subscription yields at most one
Draft (one agreement) per provider per round: 100 instances on 4 providers took 25 rounds.
So a session can negotiate on several subscriptions at once ("lanes"): as many as the
waiting instances need for the providers seen (`ceil(waiting / providers)`, at most
`max_lanes`; the engine passes `Timings.market_lanes`, 16 by default: see timing.py;
the burst of starts that follows is paced by engine/pacing.py).
On a market with more providers than waiting instances that stays one subscription, as
yapapi has. Each lane re-subscribes on its own once its Drafts are used and its providers
answered (a provider slow to answer delays that by `counter_patience` at most); the other
providers' Drafts are signed meanwhile.

Size: one negotiation loop per lane plus the shared pool and the signing policy; the pure
parts (scoring, demand, signing an agreement) live in offers.py, strategy.py, agreement.py.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import anyio
from anyio.abc import TaskGroup

from golem_deploy.engine import events as ev
from golem_deploy.engine import orphans
from golem_deploy.engine.agreement import AgreementFailed, SignedAgreement, sign_draft
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
from golem_deploy.engine.strategy import (
    SCORE_NEUTRAL,
    BaseMarketStrategy,
    OfferProposal,
    default_strategy,
    note_agreement,
)
from golem_deploy.protocol import EXPIRATION, NODE_NAME
from golem_deploy.yagna.client import YagnaClient
from golem_deploy.yagna.errors import YagnaError, YagnaStatusError
from golem_deploy.yagna.models import Proposal

__all__ = [
    "CPU_SEC",
    "DURATION_SEC",
    "AgreementFailed",
    "Demand",
    "LinearPricing",
    "MarketSession",
    "OfferScore",
    "PriceCaps",
    "SignedAgreement",
    "build_demand",
    "counter_properties",
    "lanes_wanted",
    "offer_platforms",
    "score_offer",
]

log = logging.getLogger(__name__)

#: How long a lane waits for yagna to take its subscription back (loopback answers in ms).
UNSUBSCRIBE_TIMEOUT = 5.0


def lanes_wanted(waiting: int, providers: int, max_lanes: int) -> int:
    """How many subscriptions `waiting` instances need when `providers` providers answer
    each (one Draft per provider per subscription); at least one, at most `max_lanes`."""
    if waiting <= 0 or providers <= 0:
        return 1
    return max(1, min(max_lanes, math.ceil(waiting / providers)))


@dataclass
class _Draft:
    proposal: Proposal
    lane: int
    score: float
    cost: Decimal

    @property
    def provider_id(self) -> str:
        return self.proposal.issuer_id


@dataclass(frozen=True)
class _Countered:
    """A counter-proposal whose Draft has not come back yet: when, and how its provider
    ranks (a better-ranked Draft on the way is worth a moment's wait)."""

    at: float
    score: float
    cost: Decimal


@dataclass
class _Lane:
    """One demand subscription of a session and its negotiations in flight."""

    index: int
    subscription: str | None = None
    #: Providers we countered in this subscription whose Draft has not come back yet (and
    #: when): their Drafts are on the way, so no Draft in the pool is no reason to re-publish.
    countered: dict[str, _Countered] = field(default_factory=dict)
    counter_ids: dict[str, str] = field(default_factory=dict)  # our counter -> provider
    #: Providers whose proposal we accepted in this subscription (sizes the lane count).
    answered: set[str] = field(default_factory=set)
    drafted: bool = False  # a Draft of this subscription reached the pool
    stale: bool = False  # published for an expiration no longer wanted: publish again
    poll_scope: anyio.CancelScope | None = None


@dataclass
class MarketSession:
    """The demand subscriptions of one service and the pool of negotiated Drafts.

    `collect()` runs as a task: its lanes subscribe, counter acceptable Initial proposals
    and pool Draft ones (the latest per provider and lane). `sign(...)` turns the best
    pooled Draft of a provider we do not avoid into an approved agreement. Each Draft is
    used once; when the pool runs dry while instances wait, lanes re-publish the demand to
    get fresh proposals from every matching provider.
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
    strategy: BaseMarketStrategy = field(default_factory=default_strategy)
    payment_terms: PaymentTerms = field(default_factory=PaymentTerms)
    expected_seconds: float = 3600.0
    approval_timeout: float = 15.0
    resubscribe_after: float = 4.0
    counter_patience: float = 2.0
    #: How long an instance waits for a better-ranked provider's Draft that is on the way,
    #: or three times what Drafts typically take when that is more (a provider much
    #: slower than the rest must not hold up every instance for its whole patience).
    rank_patience: float = 0.5
    max_patience: float = 10.0
    max_lanes: int = 16
    _pool: dict[tuple[int, str], _Draft] = field(default_factory=dict)
    _pool_changed: anyio.Event = field(default_factory=anyio.Event)
    _lanes: dict[int, _Lane] = field(default_factory=dict)
    _tg: TaskGroup | None = None
    _waiting: int = 0  # sign() calls in progress
    _hungry: int = 0  # of those, waiting for a Draft to appear in the pool
    _signing: Counter[str] = field(default_factory=Counter)  # provider -> agreements in flight
    _approved_by: set[str] = field(default_factory=set)
    _names: dict[str, str] = field(default_factory=dict)
    _latency: dict[str, float] = field(default_factory=dict)  # provider -> Draft took (s)
    _orphans: orphans.OrphanWatch = field(default_factory=orphans.OrphanWatch)

    async def collect(self) -> None:
        """Negotiate forever (cancel to stop); every lane unsubscribes on the way out."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._start_lane(0)
                await anyio.sleep_forever()
        finally:
            self._tg = None

    @property
    def lanes(self) -> int:
        """How many subscriptions negotiate right now."""
        return len(self._lanes)

    def _start_lane(self, index: int) -> None:
        lane = _Lane(index)
        self._lanes[index] = lane
        assert self._tg is not None
        self._tg.start_soon(self._run_lane, lane)

    def _grow(self) -> None:
        """Open the lanes the waiting instances need (they end themselves when not)."""
        if self._tg is None or not self._hungry:
            return
        wanted = lanes_wanted(self._hungry, len(self._providers()), self.max_lanes)
        for index in range(wanted):
            if index not in self._lanes:
                self._start_lane(index)

    def _providers(self) -> set[str]:
        seen: set[str] = set()
        for lane in self._lanes.values():
            seen |= lane.answered
        return {provider for provider in seen if not self.avoided(provider)}

    async def _run_lane(self, lane: _Lane) -> None:
        try:
            while True:
                try:
                    await self._subscribe(lane)
                    await self._poll_until_gone(lane)
                except YagnaError as e:  # yagna hiccup: keep negotiating, don't crash
                    log.warning("%s: market: %s", self.service, e)
                    await self._unsubscribe(lane)
                    await anyio.sleep(2.0)
                if lane.index > 0 and lane.index >= self._lanes_needed():
                    return
                # A round ended: now the providers that answered it tell how many lanes
                # the waiting instances need (earlier, a real market's first batch of
                # offers would under-count them and open lanes nobody needs).
                self._grow()
        finally:
            await self._unsubscribe(lane)  # shielded: it runs also when we are cancelled
            if self._lanes.get(lane.index) is lane:
                del self._lanes[lane.index]

    def _lanes_needed(self) -> int:
        if not self._hungry:
            return 1
        return lanes_wanted(self._hungry, len(self._providers()), self.max_lanes)

    async def _subscribe(self, lane: _Lane) -> None:
        lane.subscription = await self.client.subscribe_demand(
            self.demand.properties, self.demand.constraints
        )
        self._orphans.subscriptions.add(lane.subscription)
        lane.stale = False
        lane.countered.clear()
        lane.counter_ids.clear()
        lane.answered.clear()
        lane.drafted = False
        self.emit(ev.DemandSubscribed(service=self.service, subscription_id=lane.subscription))

    async def _unsubscribe(self, lane: _Lane) -> None:
        """Give the lane's subscription back to yagna. Shielded and bounded: the lane
        forgets its subscription at once, so a DELETE cut short by a cancellation (the
        cluster stopping while a lane closes itself) would leave it in yagna, negotiating
        for nobody until the demand expires, with no one left who knows of it."""
        sub, lane.subscription = lane.subscription, None
        # its Drafts die with the subscription
        for key in [key for key in self._pool if key[0] == lane.index]:
            del self._pool[key]
        if sub is None:
            return
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + UNSUBSCRIBE_TIMEOUT
            try:
                await self.client.unsubscribe_demand(sub)
            except YagnaError as e:
                log.warning("%s: unsubscribe %s: %s", self.service, sub, e)
        if scope.cancelled_caught:
            log.warning("%s: unsubscribe %s: yagna did not answer", self.service, sub)
        self.emit(ev.DemandUnsubscribed(service=self.service, subscription_id=sub))

    def _lane_spent(self, lane: _Lane) -> bool:
        """Whether the lane has nothing more to give: no usable Draft of it in the pool."""
        return not any(
            key[0] == lane.index and not self.avoided(d.provider_id)
            for key, d in self._pool.items()
        )

    async def _poll_until_gone(self, lane: _Lane) -> None:
        sub = lane.subscription
        assert sub is not None
        idle_since = anyio.current_time()
        while True:
            if lane.index > 0 and not self._waiting:
                # every instance has its agreement: extra lanes go (they cost yagna polls)
                await self._unsubscribe(lane)
                return
            if lane.stale:  # extend(): the demand changed under this subscription
                await self._unsubscribe(lane)
                return
            if self._hungry and self._lane_spent(lane):
                # Re-publish once this subscription's Drafts were all used and none is on
                # the way; a subscription that never gave a Draft (nothing matches yet,
                # or every provider is full) is re-published after a quiet while only.
                idle = anyio.current_time() - idle_since
                if not self._drafts_on_the_way(lane) and (
                    lane.drafted or idle > self.resubscribe_after
                ):
                    log.debug(
                        "%s: lane %d: re-publish (idle %.1f s)", self.service, lane.index, idle
                    )
                    await self._unsubscribe(lane)
                    return
            events = []
            try:
                # sign() cancels this long poll when it wants fresh proposals right away
                with anyio.CancelScope() as lane.poll_scope:
                    events = await self.client.demand_events(sub, timeout=2.0, max_events=50)
            except YagnaStatusError as e:
                if e.status in (404, 410):  # subscription expired: publish again
                    await self._unsubscribe(lane)
                    return
                raise
            finally:
                lane.poll_scope = None
            # Answer a batch's proposals concurrently: one at a time, 13 counter-proposals
            # took 0.5 s of every negotiation round on a busy machine.
            async with anyio.create_task_group() as tg:
                for event in events:
                    if event.proposal is not None:
                        tg.start_soon(self._on_proposal, lane, sub, event.proposal)
            for event in events:
                if event.proposal is not None:
                    idle_since = anyio.current_time()
                elif event.rejected_id is not None:
                    # e.g. a provider whose capacity is taken: no Draft will come from it
                    provider = lane.counter_ids.pop(event.rejected_id, None)
                    if provider is not None:
                        lane.countered.pop(provider, None)

    async def _judge(self, proposal: Proposal) -> tuple[str, float, Decimal]:
        """(why it is rejected or "", its strategy score, its expected cost)."""
        props, provider = proposal.properties, proposal.issuer_id
        checked = score_offer(
            props, self.caps, platform=self.platform, expected_seconds=self.expected_seconds
        )
        if not checked.accepted:
            return checked.reason, 0.0, checked.expected_cost
        if self.avoided(provider) or self.avoided(self._names.get(provider, provider)):
            # (the user's blacklist may name a provider instead of giving its node id)
            return "provider failed us earlier in this deployment", 0.0, checked.expected_cost
        offer = OfferProposal(proposal.proposal_id, provider, props, proposal.state)
        try:
            score = await self.strategy.score_offer(offer)
        except Exception:
            log.warning("%s: strategy failed to score an offer", self.service, exc_info=True)
            return "Unknown error in score offer", 0.0, checked.expected_cost
        if score < SCORE_NEUTRAL:
            return f"Score too low ({type(self.strategy).__name__})", score, checked.expected_cost
        return "", score, checked.expected_cost

    async def _on_proposal(self, lane: _Lane, sub: str, proposal: Proposal) -> None:
        props = proposal.properties
        provider = proposal.issuer_id
        name = props.get(NODE_NAME)
        self._names[provider] = name if isinstance(name, str) else provider
        reason, score, cost = await self._judge(proposal)
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
        lane.answered.add(provider)
        if proposal.state == "Initial":
            props_out = counter_properties(
                self.demand,
                props,
                platform=self.platform,
                expiration=self.expiration,
                now=datetime.now(self.expiration.tzinfo),
                terms=self.payment_terms,
            )
            # On the way from now, not from when yagna answers: a Draft of a worse-ranked
            # provider handled meanwhile (often in the same batch of events) must not be
            # signed ahead of this one, or the strategy's choice depends on a race.
            lane.countered[provider] = _Countered(anyio.current_time(), score, cost)
            try:
                counter_id = await self.client.counter_proposal(
                    sub, proposal.proposal_id, props_out, self.demand.constraints
                )
                log.debug(
                    "%s: lane %d: countered %s", self.service, lane.index, self._names[provider]
                )
                lane.counter_ids[counter_id] = provider
            except YagnaError as e:
                lane.countered.pop(provider, None)
                log.info("counter-proposal to %s failed: %s", self._names[provider], e)
        elif proposal.state == "Draft" and lane.subscription == sub:
            countered = lane.countered.pop(provider, None)
            if countered is not None:
                took = anyio.current_time() - countered.at
                self._latency[provider] = (self._latency.get(provider, took) + took) / 2
            lane.drafted = True
            log.debug("%s: lane %d: Draft of %s", self.service, lane.index, self._names[provider])
            self._pool[(lane.index, provider)] = _Draft(proposal, lane.index, score, cost)
            self._pool_changed.set()
            self._pool_changed = anyio.Event()

    def _drafts_on_the_way(self, lane: _Lane) -> bool:
        """Whether a provider we countered recently may still send its Draft.

        Re-subscribing drops every negotiation in flight. With many instances waiting, the
        pool is empty for a moment after each agreement although a dozen Drafts are on the
        way; re-subscribing then threw them away, and 100 instances on 13 providers needed
        dozens of rounds (about 15 s) instead of about eight. A provider that rejects our
        counter (its capacity is taken) is not waited for; one that never answers holds its
        lane up for its patience at most."""
        now = anyio.current_time()
        return any(now - c.at < self._patience(p) for p, c in lane.countered.items())

    def _patience(self, provider: str) -> float:
        """How long a counter-proposal to `provider` may take: `counter_patience`, or three
        times what its Drafts took lately when that is more (at most `max_patience`).

        On an overloaded machine a Draft took longer than 2 s; re-publishing then threw
        the negotiations in flight away and started more, which loaded the machine more:
        negotiation stalled. Waiting for what a provider is seen to need avoids that."""
        latency = self._latency.get(provider, 0.0)
        return min(self.max_patience, max(self.counter_patience, 3 * latency))

    def _pick(self) -> tuple[_Draft | None, float]:
        """The Draft to sign now (taken out of the pool), or none and how long to wait for a
        better-ranked one that is on the way (0: none is; wait for any news).

        Rank: spread instances over providers first (the fewest of this service's
        instances, agreements being signed included), then the best score, the lowest
        expected cost, random tie-break."""
        load = Counter(self.busy_providers()) + self._signing
        usable = [d for d in self._pool.values() if not self.avoided(d.provider_id)]
        if not usable:
            return None, 0.0
        best = min(usable, key=lambda d: (load[d.provider_id], -d.score, d.cost, random.random()))
        rank = (load[best.provider_id], -best.score, best.cost)
        now, wait = anyio.current_time(), 0.0
        # as long as Drafts take here (all are slow on an overloaded machine), but not for
        # one provider much slower than the rest
        typical = statistics.median(self._latency.values()) if self._latency else 0.0
        rank_wait = max(self.rank_patience, 3 * typical)
        for lane in self._lanes.values():
            for provider, c in lane.countered.items():
                left = min(self._patience(provider), rank_wait) - (now - c.at)
                if left > 0 and (load[provider], -c.score, c.cost) < rank:
                    wait = max(wait, left)
        if wait > 0:
            return None, wait
        del self._pool[(best.lane, best.provider_id)]
        return best, 0.0

    def extend(self, expiration: datetime) -> None:
        """Negotiate agreements ending at `expiration` from now on (a renewal needs a fresh,
        whole agreement; engine/renewal.py): every lane publishes the demand again with the
        new expiration, and Drafts negotiated for the old one are dropped."""
        if expiration <= self.expiration:
            return
        props = {**self.demand.properties, EXPIRATION: int(expiration.timestamp() * 1000)}
        self.demand = Demand(props, self.demand.constraints)
        self.expiration = expiration
        self._pool.clear()
        for lane in self._lanes.values():
            lane.stale = True
            if lane.poll_scope is not None:
                lane.poll_scope.cancel()

    def _want_fresh_proposals(self) -> None:
        """The pool is dry: lanes with nothing more to give re-publish now, not after their
        long poll."""
        for lane in self._lanes.values():
            if lane.poll_scope is not None and lane.drafted and not self._drafts_on_the_way(lane):
                lane.poll_scope.cancel()

    async def sign(self, index: int) -> SignedAgreement:
        """Wait for a usable Draft and turn it into an approved agreement."""
        self._waiting += 1
        try:
            while True:
                draft, better_soon = self._pick()
                if draft is None and better_soon:
                    # the Draft of a better-ranked provider is on the way (the strategy
                    # chooses among a round's Drafts, not the first to arrive)
                    changed = self._pool_changed
                    with anyio.move_on_after(better_soon):
                        await changed.wait()
                    continue
                if draft is None:
                    changed = self._pool_changed
                    self._hungry += 1
                    try:
                        self._want_fresh_proposals()
                        with anyio.move_on_after(self.resubscribe_after + 1):
                            await changed.wait()
                    finally:
                        self._hungry -= 1
                    continue
                signed = await self._sign_draft(draft, index)
                if signed is not None:
                    return signed
        finally:
            self._waiting -= 1

    async def _sign_draft(self, draft: _Draft, index: int) -> SignedAgreement | None:
        provider = draft.provider_id
        self._signing[provider] += 1
        try:
            signed = await sign_draft(
                self.client,
                self.emit,
                service=self.service,
                index=index,
                proposal=draft.proposal,
                expiration=self.expiration,
                approval_timeout=self.approval_timeout,
                provider_name=self._names.get(provider, provider),
                orphan_watch=self._orphans,
            )
        except AgreementFailed:
            note_agreement(self.strategy, provider, approved=False)
            if provider not in self._approved_by:
                raise  # the caller avoids it
            # It approved our agreements before: it is full now (several Drafts of it
            # were signed at once), not faulty. Its other Drafts would fail the same way.
            log.info("%s: %s is full", self.service, self._names.get(provider, provider))
            for key in [key for key in self._pool if key[1] == provider]:
                del self._pool[key]
            return None
        finally:
            self._signing[provider] -= 1
        if signed is not None:
            self._approved_by.add(provider)
            note_agreement(self.strategy, provider, approved=True)
        return signed
