"""Market strategies and negotiation on the real local network: a strategy's filter and
score decide which providers get the instances; many instances on few providers are
negotiated on several demand subscriptions at once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anyio
import pytest
from _engine_helpers import Recorder, assert_settled, golem_for, wait_for
from test_engine import HelloService

from golem_deploy.engine import ServiceState, Timings
from golem_deploy.engine import events as ev
from golem_deploy.engine.strategy import (
    LeastExpensiveLinearPayuMS,
    MarketStrategy,
    OfferProposal,
    ProviderFilter,
)
from golem_deploy.localnet import LocalNetInfo
from golem_deploy.yagna.client import YagnaClient, YagnaConfig
from golem_deploy.yagna.config import MARKET

pytestmark = pytest.mark.anyio


async def _run_until_running(
    info: LocalNetInfo, rec: Recorder, instances: int, **kw: Any
) -> dict[int, str]:
    """Run `instances` HelloServices until all run, stop them; index -> provider name."""
    budget = Decimal("5")
    async with golem_for(info, rec, str(budget), **kw) as golem:
        cluster = await golem.run_service(HelloService, num_instances=instances)
        await wait_for(
            lambda: all(i.state is ServiceState.running for i in cluster.instances),
            90,
            "every instance running",
        )
        placed = {i.snapshot().index: i.snapshot().provider_name or "" for i in cluster.instances}
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
    assert_settled(rec, budget, golem)
    return placed


async def test_provider_filter_keeps_instances_off_denied_providers(
    shared_localnet: LocalNetInfo,
) -> None:
    # local-provider-1 is the cheapest: without the filter it gets the first instance
    strategy = ProviderFilter(LeastExpensiveLinearPayuMS(), deny=["local-provider-1"])
    rec = Recorder()
    placed = await _run_until_running(shared_localnet, rec, 2, strategy=strategy)
    assert sorted(placed.values()) == ["local-provider-2", "local-provider-3"]
    refused = {e.provider_name: e.reason for e in rec.of(ev.ProposalRejected)}
    assert refused.get("local-provider-1") == "Score too low (ProviderFilter)"


class DearestFirst(MarketStrategy):
    """Prefers the provider with the highest start price (the opposite of the default)."""

    async def score_offer(self, offer: OfferProposal) -> float:
        coeffs = offer.props["golem.com.pricing.model.linear.coeffs"]
        assert isinstance(coeffs, list)
        return 1.0 + 1000.0 * float(coeffs[-1])


async def test_a_strategys_score_decides_the_provider(shared_localnet: LocalNetInfo) -> None:
    rec = Recorder()
    placed = await _run_until_running(shared_localnet, rec, 1, strategy=DearestFirst())
    assert placed == {0: "local-provider-3"}  # the dearest of the three
    placed = await _run_until_running(shared_localnet, Recorder(), 1)
    assert placed == {0: "local-provider-1"}  # the default strategy: the cheapest


async def test_many_instances_on_few_providers_negotiate_on_several_subscriptions(
    localnet: Any,
) -> None:
    """8 instances, 2 providers, default timings (several subscriptions are on by
    default): one subscription yields one Draft per provider, so the market opens more
    subscriptions at once instead of going round after round."""
    assert Timings().market_lanes > 1
    info = localnet(providers=2)
    rec = Recorder()
    placed = await _run_until_running(info, rec, 8)
    assert set(placed.values()) == {"local-provider-1", "local-provider-2"}
    live, most = 0, 0
    for event in rec.events:
        if isinstance(event, ev.DemandSubscribed):
            live += 1
            most = max(most, live)
        elif isinstance(event, ev.DemandUnsubscribed):
            live -= 1
    assert most > 1, "negotiated on one subscription only"
    assert live == 0, "a subscription was left behind"
    # and yagna agrees: this network's requestor holds no demand any more
    config = YagnaConfig(api_url=info.api_url, app_key=info.app_key)
    async with YagnaClient(config) as client:
        _, demands = await client.request("GET", f"{MARKET}/demands")
    assert demands == [], "yagna still holds a demand subscription"


async def test_paced_starts_one_at_a_time_still_bring_every_instance_up(
    shared_localnet: LocalNetInfo,
) -> None:
    """With one start slot for the whole engine, 4 instances start one after another: each
    start gives its slot back (engine/pacing.py), so none waits for good."""
    rec = Recorder()
    placed = await _run_until_running(
        shared_localnet, rec, 4, timings=Timings(start_slots=1, start_slot_hold_max=300.0)
    )
    assert len(placed) == 4
    assert not rec.of(ev.ProviderAvoided)


async def test_a_provider_slow_to_negotiate_neither_stalls_nor_is_avoided(localnet: Any) -> None:
    """One of three providers answers proposals and agreements 1.5 s late: every instance
    still comes up, on the fast providers at least, and the slow one is not treated as
    failed (it approves, only late)."""
    info = localnet(providers=3, faults={"local-provider-1": {"slow_negotiation": "1.5s"}})
    rec = Recorder()
    placed = await _run_until_running(info, rec, 6)
    assert {"local-provider-2", "local-provider-3"} <= set(placed.values())
    assert not rec.of(ev.ProviderAvoided)
    assert not rec.of(ev.AgreementRejected)
