"""Market strategies: yapapi 0.13.1's names and meaning, on the engine's own market.

    from golem_deploy.engine.strategy import LeastExpensiveLinearPayuMS, ProviderFilter

    strategy = ProviderFilter(
        LeastExpensiveLinearPayuMS(max_fixed_price=Decimal("0.5")),
        lambda provider_id: provider_id not in bad_providers,
    )
    async with Golem(budget=1.0, strategy=strategy) as golem: ...

A strategy does two things, as in yapapi: `decorate_demand` may add properties and
constraints to each service's demand before it is published, and `score_offer` rates every
proposal a provider sends (higher is better; below `SCORE_NEUTRAL` the proposal is
rejected with "Score too low"). The engine then signs with the best-scored Draft, after
spreading the instances of a service over providers (market.py).

What the engine checks *before* the strategy, whatever the strategy: the offer's pricing is
linear and parseable, there is a common payment platform, `Golem(max_price=...)` caps and
`Golem(blacklist=...)`, and providers that failed this deployment (market.py avoids them).

The default strategy (Golem without `strategy=`) is yapapi's: LeastExpensiveLinearPayuMS
with `max_fixed_price=1.0` and per-second caps of 0.2 (CPU) and 0.1 (duration), wrapped in
DecreaseScoreForUnconfirmedAgreement(factor=0.5). Where yapapi needs
`golem.add_event_consumer(strategy.on_event)` to tell DecreaseScoreForUnconfirmedAgreement
about agreement outcomes, the engine tells every DecreaseScoreForUnconfirmedAgreement in
the strategy directly (`note_agreement`), so a user-built one works without it.
"""

from __future__ import annotations

import abc
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import Final

from golem_deploy import protocol as p
from golem_deploy.engine.offers import Demand, LinearPricing

__all__ = [
    "DEFAULT_MAX_FIXED_PRICE",
    "DEFAULT_MAX_PRICE_FOR",
    "SCORE_NEUTRAL",
    "SCORE_REJECTED",
    "SCORE_TRUSTED",
    "BaseMarketStrategy",
    "DecreaseScoreForUnconfirmedAgreement",
    "DemandBuilder",
    "LeastExpensiveLinearPayuMS",
    "MarketStrategy",
    "OfferProposal",
    "ProviderFilter",
    "WrappingMarketStrategy",
    "decorate",
    "default_strategy",
    "note_agreement",
]

log = logging.getLogger(__name__)

SCORE_NEUTRAL: Final[float] = 0.0
SCORE_REJECTED: Final[float] = -1.0
SCORE_TRUSTED: Final[float] = 100.0

#: yapapi's default caps (Golem without `strategy=`): GLM start price, GLM per unit.
DEFAULT_MAX_FIXED_PRICE: Final[Decimal] = Decimal("1.0")
DEFAULT_MAX_PRICE_FOR: Final[Mapping[str, Decimal]] = MappingProxyType(
    {p.CPU_SEC: Decimal("0.2"), p.DURATION_SEC: Decimal("0.1")}
)


@dataclass(frozen=True)
class OfferProposal:
    """A provider's proposal as a strategy sees it (yapapi's `OfferProposal` attributes:
    `id`, `issuer` (the provider's node id), `props`, `is_draft`)."""

    id: str
    issuer: str
    props: Mapping[str, object]
    state: str = "Initial"

    @property
    def is_draft(self) -> bool:
        return self.state == "Draft"

    @property
    def provider_name(self) -> str:
        name = self.props.get(p.NODE_NAME)
        return name if isinstance(name, str) else self.issuer


@dataclass
class DemandBuilder:
    """A service's demand while strategies decorate it: `properties` to set, `ensure()`
    to add a constraint (yapapi's DemandBuilder surface)."""

    properties: dict[str, object]
    base_constraints: str = ""
    added: list[str] = field(default_factory=list)

    def ensure(self, constraint: str) -> None:
        """Require `constraint` (an LDAP-style filter such as `(golem.inf.mem.gib>=4)`);
        one already required is not added twice."""
        if constraint not in self.base_constraints and constraint not in self.added:
            self.added.append(constraint)

    def add_properties(self, props: Mapping[str, object]) -> None:
        self.properties.update(props)

    @property
    def constraints(self) -> str:
        if not self.added:
            return self.base_constraints
        parts = [c for c in (self.base_constraints, *self.added) if c]
        return parts[0] if len(parts) == 1 else "(&" + "\n\t".join(parts) + ")"


class BaseMarketStrategy(abc.ABC):
    """What every strategy offers the engine (yapapi's BaseMarketStrategy, without the
    payment hooks: the engine accepts debit notes and invoices within the budget)."""

    @abc.abstractmethod
    async def score_offer(self, offer: OfferProposal) -> float:
        """Score `offer`: higher is better; below SCORE_NEUTRAL rejects it."""

    async def decorate_demand(self, demand: DemandBuilder) -> None:  # noqa: B027 - optional hook
        """Add properties or constraints to the demand (default: nothing)."""


class MarketStrategy(BaseMarketStrategy, abc.ABC):
    """Base class for a strategy of your own (yapapi's name): implement `score_offer`."""


class WrappingMarketStrategy(BaseMarketStrategy):
    """A strategy around another one: by default everything is the base strategy's."""

    def __init__(self, base_strategy: BaseMarketStrategy) -> None:
        self.base_strategy = base_strategy

    async def decorate_demand(self, demand: DemandBuilder) -> None:
        await self.base_strategy.decorate_demand(demand)

    async def score_offer(self, offer: OfferProposal) -> float:
        return await self.base_strategy.score_offer(offer)


Price = Decimal | float | int | str
#: Caps per usage counter, named by strings or enum members (yapapi's `com.Counter.CPU`).
CounterPrices = Mapping[str, Price] | Mapping[Enum, Price] | Mapping[str | Enum, Price]


def _counter_key(counter: object) -> str:
    """A usage counter named by a string or by an enum member holding it (yapapi's
    `com.Counter.CPU`)."""
    value = getattr(counter, "value", counter)
    if not isinstance(value, str):
        raise TypeError(f"usage counter {counter!r} is not a counter name")
    return value


class LeastExpensiveLinearPayuMS(MarketStrategy):
    """Score by the cost of `expected_time_secs` of every usage counter (yapapi's): score =
    100 / (cost + 1.01), always in (0, 100). Rejects offers whose scheme is not payu, whose
    start price is over `max_fixed_price` or negative, or whose price for a counter is over
    its cap in `max_price_for` (GLM per unit: per CPU-second, per second; counters not
    listed are not capped) or negative."""

    def __init__(
        self,
        expected_time_secs: int | float = 60,
        max_fixed_price: Price = Decimal("inf"),
        max_price_for: CounterPrices = MappingProxyType({}),
    ) -> None:
        self.expected_time_secs = expected_time_secs
        self.max_fixed_price = Decimal(str(max_fixed_price))
        self.max_price_for = {_counter_key(c): Decimal(str(v)) for c, v in max_price_for.items()}

    def __repr__(self) -> str:
        return (
            f"LeastExpensiveLinearPayuMS(expected_time_secs={self.expected_time_secs}, "
            f"max_fixed_price={self.max_fixed_price}, max_price_for={self.max_price_for})"
        )

    async def decorate_demand(self, demand: DemandBuilder) -> None:
        demand.ensure(f"({p.PRICING_MODEL}=linear)")

    async def score_offer(self, offer: OfferProposal) -> float:
        return self.score(offer.props)

    def score(self, props: Mapping[str, object]) -> float:
        """The score of an offer's properties (pure; what `score_offer` returns)."""
        try:
            pricing = LinearPricing.from_properties(props)
        except ValueError as e:
            log.debug("offer rejected: %s", e)
            return SCORE_REJECTED
        if pricing.start > self.max_fixed_price or pricing.start < 0:
            return SCORE_REJECTED
        seconds = Decimal(str(self.expected_time_secs))
        usage: dict[str, Decimal | float | int] = {}
        for counter, price in pricing.prices.items():
            cap = self.max_price_for.get(counter)
            if (cap is not None and price > cap) or price < 0:
                return SCORE_REJECTED
            usage[counter] = seconds
        return SCORE_TRUSTED / (float(pricing.cost(usage)) + 1.01)


class DecreaseScoreForUnconfirmedAgreement(WrappingMarketStrategy):
    """Multiply the (positive) score of a provider that did not approve our last
    agreement with it by `factor`; an approved agreement clears that (yapapi's)."""

    def __init__(self, base_strategy: BaseMarketStrategy, factor: float) -> None:
        super().__init__(base_strategy)
        self.factor = factor
        self._rejecting_providers: set[str] = set()

    def note_agreement(self, provider_id: str, *, approved: bool) -> None:
        """What the engine reports after each agreement it proposed."""
        if approved:
            self._rejecting_providers.discard(provider_id)
        else:
            self._rejecting_providers.add(provider_id)

    def on_event(self, event: object) -> None:
        """yapapi's event consumer: `AgreementConfirmed` / `AgreementRejected` events (by
        class name, with a `provider_id`). The engine does not need it (it reports agreement
        outcomes itself) but a ported program that registers it does no harm."""
        provider_id = getattr(event, "provider_id", None)
        if not isinstance(provider_id, str):
            return
        kind = type(event).__name__
        if kind in ("AgreementConfirmed", "AgreementApproved"):
            self.note_agreement(provider_id, approved=True)
        elif kind == "AgreementRejected":
            self.note_agreement(provider_id, approved=False)

    async def score_offer(self, offer: OfferProposal) -> float:
        score = await self.base_strategy.score_offer(offer)
        if offer.issuer in self._rejecting_providers and score > 0:
            score *= self.factor
        return score


IsAllowed = Callable[[str], bool] | Callable[[str], Awaitable[bool]]


class ProviderFilter(WrappingMarketStrategy):
    """Reject offers of providers `is_allowed(provider_id)` says no to (a function or a
    coroutine function, as in yapapi); the rest are scored by `base_strategy`.

    `allow` (only these) and `deny` (never these) take provider node ids or names, as
    conveniences for the common lists; all given conditions must hold."""

    def __init__(
        self,
        base_strategy: BaseMarketStrategy,
        is_allowed: IsAllowed | None = None,
        *,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] = (),
    ) -> None:
        super().__init__(base_strategy)
        self._is_allowed = is_allowed
        self.allow = None if allow is None else frozenset(_norm(a) for a in allow)
        self.deny = frozenset(_norm(d) for d in deny)

    async def allowed(self, offer: OfferProposal) -> bool:
        names = {_norm(offer.issuer), _norm(offer.provider_name)}
        if self.allow is not None and not names & self.allow:
            return False
        if names & self.deny:
            return False
        if self._is_allowed is None:
            return True
        verdict = self._is_allowed(offer.issuer)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)

    async def score_offer(self, offer: OfferProposal) -> float:
        if not await self.allowed(offer):
            return SCORE_REJECTED
        return await self.base_strategy.score_offer(offer)


def _norm(provider: str) -> str:
    """Node ids are hex (compare case-insensitively); names are compared as typed."""
    return provider.lower() if provider.startswith("0x") else provider


def default_strategy() -> DecreaseScoreForUnconfirmedAgreement:
    """yapapi's default: the least expensive offer under its default caps, providers that
    did not approve the last agreement scored at half."""
    base = LeastExpensiveLinearPayuMS(
        max_fixed_price=DEFAULT_MAX_FIXED_PRICE, max_price_for=DEFAULT_MAX_PRICE_FOR
    )
    return DecreaseScoreForUnconfirmedAgreement(base, 0.5)


def note_agreement(strategy: BaseMarketStrategy, provider_id: str, *, approved: bool) -> None:
    """Tell every DecreaseScoreForUnconfirmedAgreement in `strategy` (wrappers included)
    whether `provider_id` approved the agreement the engine proposed."""
    current: BaseMarketStrategy | None = strategy
    while current is not None:
        if isinstance(current, DecreaseScoreForUnconfirmedAgreement):
            current.note_agreement(provider_id, approved=approved)
        base = getattr(current, "base_strategy", None)
        current = base if isinstance(base, BaseMarketStrategy) else None


async def decorate(strategy: BaseMarketStrategy, demand: Demand) -> Demand:
    """`demand` as `strategy.decorate_demand` leaves it."""
    builder = DemandBuilder(dict(demand.properties), demand.constraints)
    await strategy.decorate_demand(builder)
    return Demand(dict(builder.properties), builder.constraints)
