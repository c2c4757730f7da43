"""Market strategies (engine/strategy.py): yapapi 0.13.1's scoring, wrappers and filters,
and how many demand subscriptions the market negotiates on (market.lanes_wanted)."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

import pytest

from golem_deploy.engine.market import lanes_wanted
from golem_deploy.engine.offers import Demand
from golem_deploy.engine.strategy import (
    SCORE_NEUTRAL,
    SCORE_REJECTED,
    SCORE_TRUSTED,
    DecreaseScoreForUnconfirmedAgreement,
    DemandBuilder,
    LeastExpensiveLinearPayuMS,
    MarketStrategy,
    OfferProposal,
    ProviderFilter,
    WrappingMarketStrategy,
    decorate,
    default_strategy,
    note_agreement,
)

pytestmark = pytest.mark.anyio

CPU = "golem.usage.cpu_sec"
TIME = "golem.usage.duration_sec"


def offer(
    coeffs: list[float],
    issuer: str = "0xAA",
    name: str = "prov-a",
    vector: tuple[str, ...] = (CPU, TIME),
    **extra: Any,
) -> OfferProposal:
    props: dict[str, Any] = {
        "golem.com.pricing.model": "linear",
        "golem.com.scheme": "payu",
        "golem.com.pricing.model.linear.coeffs": coeffs,
        "golem.com.usage.vector": list(vector),
        "golem.node.id.name": name,
    }
    props.update(extra)
    return OfferProposal(id="P-1", issuer=issuer, props=props)


async def test_least_expensive_scores_cost_of_expected_time_like_yapapi() -> None:
    strategy = LeastExpensiveLinearPayuMS(expected_time_secs=60)
    # cost = 0.01*60 + 0.002*60 + 0.5 = 1.22 -> 100 / (1.22 + 1.01)
    score = await strategy.score_offer(offer([0.01, 0.002, 0.5]))
    assert score == pytest.approx(100 / (1.22 + 1.01))
    assert 0 < score < SCORE_TRUSTED
    # every counter counts expected_time_secs, whatever it is (yapapi's rule)
    wide = await strategy.score_offer(offer([0.0, 0.0, 0.01, 0.0], vector=(CPU, TIME, "x")))
    assert wide == pytest.approx(100 / (0.6 + 1.01))


async def test_cheaper_offers_score_higher_and_expected_time_weighs_prices() -> None:
    cheap_start = offer([0.01, 0.0, 0.0])  # cheap to start, dear per second
    cheap_run = offer([0.0, 0.0, 1.0])  # dear to start, free to run
    short = LeastExpensiveLinearPayuMS(expected_time_secs=10)
    long = LeastExpensiveLinearPayuMS(expected_time_secs=1000)
    assert await short.score_offer(cheap_start) > await short.score_offer(cheap_run)
    assert await long.score_offer(cheap_start) < await long.score_offer(cheap_run)


class Counter(enum.Enum):  # yapapi's com.Counter shape
    CPU = CPU
    TIME = TIME


@pytest.mark.parametrize(
    ("coeffs", "kwargs", "rejected"),
    [
        ([0.1, 0.1, 2.0], {"max_fixed_price": Decimal("1.0")}, True),
        ([0.1, 0.1, 1.0], {"max_fixed_price": Decimal("1.0")}, False),  # equal is fine
        ([0.3, 0.0, 0.0], {"max_price_for": {CPU: Decimal("0.2")}}, True),
        ([0.2, 5.0, 0.0], {"max_price_for": {CPU: Decimal("0.2")}}, False),  # TIME uncapped
        ([0.0, 0.2, 0.0], {"max_price_for": {Counter.TIME: Decimal("0.1")}}, True),
        ([0.0, 0.0, -0.1], {}, True),  # negative start price
        ([-0.1, 0.0, 0.0], {}, True),  # negative counter price
    ],
)
async def test_caps_reject(coeffs: list[float], kwargs: dict[str, Any], rejected: bool) -> None:
    score = await LeastExpensiveLinearPayuMS(**kwargs).score_offer(offer(coeffs))
    assert (score == SCORE_REJECTED) is rejected


async def test_unusable_pricing_is_rejected_not_raised() -> None:
    strategy = LeastExpensiveLinearPayuMS()
    not_payu = offer([0.0, 0.0, 0.0], **{"golem.com.scheme": "payd"})
    not_linear = offer([0.0, 0.0, 0.0], **{"golem.com.pricing.model": "fixed"})
    short = offer([0.0, 0.0])
    for bad in (not_payu, not_linear, short):
        assert await strategy.score_offer(bad) == SCORE_REJECTED


async def test_default_strategy_is_yapapis() -> None:
    strategy = default_strategy()
    assert isinstance(strategy, DecreaseScoreForUnconfirmedAgreement)
    assert strategy.factor == 0.5
    base = strategy.base_strategy
    assert isinstance(base, LeastExpensiveLinearPayuMS)
    assert base.expected_time_secs == 60
    assert base.max_fixed_price == Decimal("1.0")
    assert base.max_price_for == {CPU: Decimal("0.2"), TIME: Decimal("0.1")}
    assert await strategy.score_offer(offer([0.0, 0.0, 1.5])) == SCORE_REJECTED
    assert await strategy.score_offer(offer([0.21, 0.0, 0.0])) == SCORE_REJECTED
    assert await strategy.score_offer(offer([0.0, 0.11, 0.0])) == SCORE_REJECTED
    assert await strategy.score_offer(offer([0.2, 0.1, 1.0])) > SCORE_NEUTRAL


async def test_unconfirmed_agreement_halves_score_until_one_is_approved() -> None:
    strategy = DecreaseScoreForUnconfirmedAgreement(LeastExpensiveLinearPayuMS(), 0.5)
    o = offer([0.0, 0.0, 0.0], issuer="0xbad")
    full = await strategy.score_offer(o)
    wrapped = ProviderFilter(strategy, lambda _p: True)
    note_agreement(wrapped, "0xbad", approved=False)  # found through the wrapper
    assert await strategy.score_offer(o) == pytest.approx(full * 0.5)
    assert await strategy.score_offer(offer([0.0, 0.0, 0.0], issuer="0xgood")) == full
    note_agreement(strategy, "0xbad", approved=True)
    assert await strategy.score_offer(o) == full


async def test_unconfirmed_agreement_never_lifts_a_rejection() -> None:
    strategy = DecreaseScoreForUnconfirmedAgreement(LeastExpensiveLinearPayuMS(), 0.5)
    note_agreement(strategy, "0xAA", approved=False)
    assert await strategy.score_offer(offer([0.0, 0.0, -1.0])) == SCORE_REJECTED


async def test_on_event_takes_yapapi_style_events() -> None:
    class AgreementRejected:
        provider_id = "0xp"

    class AgreementConfirmed:
        provider_id = "0xp"

    class Other:
        provider_id = "0xq"

    strategy = DecreaseScoreForUnconfirmedAgreement(LeastExpensiveLinearPayuMS(), 0.25)
    o = offer([0.0, 0.0, 0.0], issuer="0xp")
    full = await strategy.score_offer(o)
    strategy.on_event(AgreementRejected())
    strategy.on_event(Other())
    assert await strategy.score_offer(o) == pytest.approx(full * 0.25)
    strategy.on_event(AgreementConfirmed())
    assert await strategy.score_offer(o) == full


async def test_provider_filter_sync_and_async_predicates() -> None:
    base = LeastExpensiveLinearPayuMS()
    good, bad = offer([0.0, 0.0, 0.0], issuer="0xgood"), offer([0.0, 0.0, 0.0], issuer="0xbad")
    seen: list[str] = []

    def sync_allowed(provider_id: str) -> bool:
        seen.append(provider_id)
        return provider_id != "0xbad"

    async def async_allowed(provider_id: str) -> bool:
        return provider_id != "0xbad"

    for predicate in (sync_allowed, async_allowed):
        strategy = ProviderFilter(base, predicate)
        assert await strategy.score_offer(bad) == SCORE_REJECTED
        assert await strategy.score_offer(good) == await base.score_offer(good)
    assert seen == ["0xbad", "0xgood"]  # the predicate gets the issuer's node id


async def test_provider_filter_allow_and_deny_lists_match_ids_and_names() -> None:
    base = LeastExpensiveLinearPayuMS()
    a = offer([0.0, 0.0, 0.0], issuer="0xAAAA", name="alpha")
    b = offer([0.0, 0.0, 0.0], issuer="0xBBBB", name="beta")
    by_name = ProviderFilter(base, allow=["alpha"])
    assert await by_name.score_offer(a) > 0 and await by_name.score_offer(b) == SCORE_REJECTED
    by_id = ProviderFilter(base, deny=["0xaaaa"])  # node ids compare case-insensitively
    assert await by_id.score_offer(a) == SCORE_REJECTED and await by_id.score_offer(b) > 0
    both = ProviderFilter(base, lambda p: p != "0xBBBB", allow=["alpha", "beta"])
    assert await both.score_offer(a) > 0 and await both.score_offer(b) == SCORE_REJECTED


async def test_a_users_own_strategy_and_wrapper() -> None:
    class PreferNamed(MarketStrategy):
        async def score_offer(self, offer: OfferProposal) -> float:
            return 90.0 if offer.provider_name == "fav" else 10.0

    class Doubling(WrappingMarketStrategy):
        async def score_offer(self, offer: OfferProposal) -> float:
            return 2 * await self.base_strategy.score_offer(offer)

    strategy = Doubling(PreferNamed())
    assert await strategy.score_offer(offer([0.0, 0.0, 0.0], name="fav")) == 180.0
    assert await strategy.score_offer(offer([0.0, 0.0, 0.0], name="x")) == 20.0


async def test_decorate_demand_adds_properties_and_constraints_once() -> None:
    class Decorating(MarketStrategy):
        async def score_offer(self, offer: OfferProposal) -> float:
            return SCORE_NEUTRAL

        async def decorate_demand(self, demand: DemandBuilder) -> None:
            demand.ensure("(golem.inf.mem.gib>=8)")
            demand.ensure("(golem.inf.mem.gib>=8)")
            demand.properties["golem.custom"] = "x"

    base = Demand({"a": 1}, "(&(golem.node.debug.subnet=s)\n\t(golem.com.pricing.model=linear))")
    decorated = await decorate(Decorating(), base)
    assert decorated.properties == {"a": 1, "golem.custom": "x"}
    assert decorated.constraints == f"(&{base.constraints}\n\t(golem.inf.mem.gib>=8))"
    # LeastExpensiveLinearPayuMS ensures linear pricing, which the engine's demand has
    assert await decorate(LeastExpensiveLinearPayuMS(), base) == base
    assert base.properties == {"a": 1}  # the original is left alone


@pytest.mark.parametrize(
    ("waiting", "providers", "wanted"),
    [
        (0, 4, 1),
        (1, 0, 1),  # no provider seen yet: one subscription
        (1, 4, 1),
        (4, 4, 1),
        (5, 4, 2),
        (100, 4, 16),  # capped
        (100, 13, 8),
        (10, 200, 1),  # a real market: more providers than instances
    ],
)
def test_lanes_scale_with_instances_not_providers(
    waiting: int, providers: int, wanted: int
) -> None:
    assert lanes_wanted(waiting, providers, max_lanes=16) == wanted
