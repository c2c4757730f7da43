"""Demand building, offer scoring under price caps, counter-proposals (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest

from golem_deploy.engine import vm
from golem_deploy.engine.market import (
    LinearPricing,
    MarketSession,
    PriceCaps,
    _Countered,
    _Lane,
    build_demand,
    counter_properties,
    offer_platforms,
    score_offer,
)
from golem_deploy.engine.strategy import LeastExpensiveLinearPayuMS, OfferProposal
from golem_deploy.yagna.models import Decoration, Proposal

PLATFORM = "erc20-holesky-tglm"
DECORATION = Decoration(
    properties={
        f"golem.com.payment.platform.{PLATFORM}.address": "0xabc",
        "golem.com.payment.protocol.version": "3",
    },
    constraints=[
        f"(golem.com.payment.platform.{PLATFORM}.address=*)",
        "(golem.com.payment.protocol.version>1)",
    ],
)


pytestmark = pytest.mark.anyio


def offer(coeffs: list[float], **extra: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "golem.com.pricing.model": "linear",
        "golem.com.scheme": "payu",
        "golem.com.pricing.model.linear.coeffs": coeffs,
        "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
        f"golem.com.payment.platform.{PLATFORM}.address": "0xdef",
    }
    props.update(extra)
    return props


async def test_demand_is_built_like_yapapi() -> None:
    payload = await vm.repo(image_hash="a" * 56, min_mem_gib=1.0, capabilities=["vpn"])
    expiration = datetime(2030, 1, 1, tzinfo=UTC)
    d = build_demand(payload, subnet="local-dev", expiration=expiration, decoration=DECORATION)
    assert list(d.properties) == [
        "golem.srv.comp.expiration",
        "golem.srv.caps.multi-activity",
        "golem.node.debug.subnet",
        f"golem.com.payment.platform.{PLATFORM}.address",
        "golem.com.payment.protocol.version",
        "golem.srv.comp.task_package",
        "golem.srv.comp.vm.package_format",
    ]
    assert d.properties["golem.srv.comp.expiration"] == int(expiration.timestamp() * 1000)
    assert d.properties["golem.srv.caps.multi-activity"] is True
    assert d.properties["golem.com.payment.protocol.version"] == "3"  # verbatim string
    assert d.properties["golem.srv.comp.task_package"] == (
        f"hash:sha3:{'a' * 56}:http://registry.golem.network/download/{'a' * 56}"
    )
    assert d.constraints == (
        "(&(golem.node.debug.subnet=local-dev)\n\t"
        f"(golem.com.payment.platform.{PLATFORM}.address=*)\n\t"
        "(golem.com.payment.protocol.version>1)\n\t"
        "(golem.com.pricing.model=linear)\n\t"
        "(&(golem.inf.mem.gib>=1.0)\n\t(golem.inf.storage.gib>=2.0)\n\t"
        "(golem.inf.cpu.threads>=1)\n\t(golem.runtime.capabilities=vpn)\n\t"
        "(golem.runtime.name=vm)))"
    )


async def test_local_mounts_become_a_demand_property() -> None:
    payload = (await vm.repo(image_hash="a" * 56)).with_local_mounts({"/golem/run": "/abs/dir"})
    d = build_demand(payload, subnet="x", expiration=datetime.now(UTC), decoration=DECORATION)
    assert d.properties["golem_deploy.local.mounts"] == '{"/golem/run": "/abs/dir"}'


def test_pricing_maps_coefficients_by_usage_vector_position() -> None:
    p = LinearPricing.from_properties(
        offer(
            [0.1, 0.2, 0.5],
            **{"golem.com.usage.vector": ["golem.usage.duration_sec", "golem.usage.cpu_sec"]},
        )
    )
    assert p.prices == {
        "golem.usage.duration_sec": Decimal("0.1"),
        "golem.usage.cpu_sec": Decimal("0.2"),
    }
    assert p.start == Decimal("0.5")
    assert p.cost({"golem.usage.cpu_sec": 10, "golem.usage.duration_sec": 100}) == Decimal("12.5")


@pytest.mark.parametrize(
    "props, reason",
    [
        ({"golem.com.pricing.model": "fixed"}, "not linear"),
        (offer([0.1, 0.2]), "do not match"),
        (offer([0.1, -0.2, 0.0]), "non-negative"),
        (offer([0.1, 0.2, 0.0], **{"golem.com.scheme": "other"}), "not payu"),
    ],
)
def test_unusable_offers_are_rejected_with_a_reason(props: dict[str, Any], reason: str) -> None:
    s = score_offer(props, PriceCaps(), platform=PLATFORM, expected_seconds=60)
    assert not s.accepted and reason in s.reason


def test_price_caps_are_per_hour_and_reject_with_reason() -> None:
    caps = PriceCaps(
        start=Decimal("0.01"), cpu_per_hour=Decimal("0.36"), env_per_hour=Decimal("0.072")
    )
    # 0.0001/cpu-s = 0.36/h (at the cap), 0.00002/s = 0.072/h (at the cap)
    ok = score_offer(offer([0.0001, 0.00002, 0.01]), caps, platform=PLATFORM, expected_seconds=3600)
    assert ok.accepted and ok.expected_cost == Decimal("0.36") + Decimal("0.072") + Decimal("0.01")
    cpu = score_offer(offer([0.00011, 0.00002, 0.0]), caps, platform=PLATFORM, expected_seconds=60)
    assert not cpu.accepted and "CPU price per hour 0.39600" in cpu.reason
    start = score_offer(offer([0.0, 0.0, 0.02]), caps, platform=PLATFORM, expected_seconds=60)
    assert not start.accepted and "start price 0.02 > cap 0.01" in start.reason
    env = score_offer(offer([0.0, 0.0001, 0.0]), caps, platform=PLATFORM, expected_seconds=60)
    assert not env.accepted and "env price per hour" in env.reason


def test_cheaper_offers_score_lower_cost() -> None:
    cheap = score_offer(
        offer([0.0001, 0.00002, 0.0]), PriceCaps(), platform=PLATFORM, expected_seconds=600
    )
    dear = score_offer(
        offer([0.0002, 0.00004, 0.002]), PriceCaps(), platform=PLATFORM, expected_seconds=600
    )
    assert cheap.accepted and dear.accepted and cheap.expected_cost < dear.expected_cost


def test_no_common_payment_platform() -> None:
    props = offer([0.0, 0.0, 0.0])
    assert offer_platforms(props) == {PLATFORM}
    s = score_offer(props, PriceCaps(), platform="erc20-polygon-glm", expected_seconds=60)
    assert not s.accepted and "no common payment platform" in s.reason


async def test_counter_proposal_adds_chosen_platform_and_negotiated_keys() -> None:
    payload = await vm.repo(image_hash="a" * 56)
    now = datetime.now(UTC)
    demand = build_demand(
        payload, subnet="s", expiration=now + timedelta(hours=1), decoration=DECORATION
    )
    props = offer(
        [0.0, 0.0, 0.0],
        **{
            "golem.com.payment.debit-notes.accept-timeout?": 240,
            "golem.com.scheme.payu.debit-note.interval-sec?": 120,
            "golem.com.scheme.payu.payment-timeout-sec?": 120,
        },
    )
    short = counter_properties(
        demand, props, platform=PLATFORM, expiration=now + timedelta(hours=1), now=now
    )
    assert short["golem.com.payment.chosen-platform"] == PLATFORM
    assert short["golem.com.payment.debit-notes.accept-timeout?"] == 240
    assert short["golem.com.scheme.payu.debit-note.interval-sec?"] == 120  # the provider's
    assert "golem.com.scheme.payu.payment-timeout-sec?" not in short  # no MAP < 5 h
    long = counter_properties(
        demand, props, platform=PLATFORM, expiration=now + timedelta(hours=6), now=now
    )
    assert long["golem.com.scheme.payu.debit-note.interval-sec?"] == 120
    assert long["golem.com.scheme.payu.payment-timeout-sec?"] >= 18000


class _SlowCounterClient:
    """Just the one yagna call a lane makes while it answers proposals: a counter-proposal
    that takes until the test lets it go (yagna is slow under load)."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def counter_proposal(self, sub: str, proposal_id: str, *_: Any) -> str:
        await self.release.wait()
        return f"counter-of-{proposal_id}"


async def _session(client: object, emit: Any = lambda event: None) -> MarketSession:
    """A market session of one service on `client` (a stand-in with the calls a test needs)."""
    payload = await vm.repo(image_hash="a" * 56)
    expiration = datetime.now(UTC) + timedelta(hours=1)
    return MarketSession(
        client=client,  # type: ignore[arg-type]
        service="svc",
        demand=build_demand(payload, subnet="s", expiration=expiration, decoration=DECORATION),
        caps=PriceCaps(),
        platform=PLATFORM,
        expiration=expiration,
        emit=emit,
        avoided=lambda provider: False,
    )


async def test_a_draft_is_not_signed_ahead_of_a_better_ranked_one_being_countered() -> None:
    """The strategy decides, not the order of events: the cheap provider's Draft lands while
    the dearer-but-preferred provider's counter-proposal is still on its way to yagna, so
    the pick waits for the preferred one's Draft instead of signing the first in hand."""
    client = _SlowCounterClient()
    session = await _session(client)
    lane = session._lanes[0] = _Lane(0, subscription="sub")
    cheap, dear = offer([0.0001, 0.00002, 0.0]), offer([0.0001, 0.00002, 0.5])
    # the cheap one was countered a moment ago; its Draft arrives with the dear one's Initial
    lane.countered["cheap"] = _Countered(anyio.current_time(), 1.0, Decimal(0))
    dear_initial = Proposal("p-dear", "dear", "Initial", dear, "()")
    cheap_draft = Proposal("p-cheap", "cheap", "Draft", cheap, "()")
    session.strategy = _PreferDear()
    async with anyio.create_task_group() as tg:
        tg.start_soon(session._on_proposal, lane, "sub", dear_initial)
        tg.start_soon(session._on_proposal, lane, "sub", cheap_draft)
        await anyio.wait_all_tasks_blocked()
        draft, wait = session._pick()
        assert draft is None and wait > 0, "signed the first Draft in hand"
        client.release.set()
    assert "dear" in lane.countered  # its Draft is awaited


class _PreferDear(LeastExpensiveLinearPayuMS):
    async def score_offer(self, offer: OfferProposal) -> float:
        coeffs = offer.props["golem.com.pricing.model.linear.coeffs"]
        assert isinstance(coeffs, list)
        return 1.0 + float(coeffs[-1])


class _SlowUnsubscribeClient:
    """A client whose DELETE /demands/{id} answers only when released."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.unsubscribed: list[str] = []

    async def unsubscribe_demand(self, sub: str) -> None:
        self.started.set()
        await self.release.wait()
        self.unsubscribed.append(sub)


async def test_a_lane_cancelled_while_unsubscribing_still_gives_its_subscription_back() -> None:
    """The cluster stopping at the moment a lane closes itself must not cut the DELETE
    short: the lane has already forgotten its subscription, so nobody would retry it."""
    client = _SlowUnsubscribeClient()
    emitted: list[Any] = []
    session = await _session(client, emitted.append)
    lane = _Lane(1, subscription="sub-1")

    async def closing_lane(scope: anyio.CancelScope) -> None:
        with scope:
            await session._unsubscribe(lane)

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(closing_lane, scope)
        await client.started.wait()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        client.release.set()
    assert client.unsubscribed == ["sub-1"]
    assert [(type(e).__name__, e.subscription_id) for e in emitted] == [
        ("DemandUnsubscribed", "sub-1")
    ]
