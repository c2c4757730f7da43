"""A look at the market without negotiating: subscribe each service's demand for a few
seconds, keep the offers that match, unsubscribe.

`doctor` counts the offers; `plan` prices them. The demand is the one the engine publishes
(engine.offers.build_demand, from the payload the compiler builds), except for the payment
decoration: the engine takes it from an allocation, and looking must not allocate, so it is
written here as yagna writes it for one allocation (the platform's address property and its
presence constraint). Nothing is left subscribed: every subscription is removed, also when
the look is cancelled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio

from golem_deploy.compiler import compile_manifest
from golem_deploy.engine.offers import build_demand
from golem_deploy.manifest.model import Manifest
from golem_deploy.protocol import LOCAL_SUBNET, PAYMENT_PLATFORM_PREFIX
from golem_deploy.yagna.client import YagnaClient
from golem_deploy.yagna.errors import YagnaError
from golem_deploy.yagna.models import Decoration
from golem_deploy.yagna.wire import JsonValue

__all__ = ["LookDemand", "Offer", "look_at_offers", "service_demands"]


@dataclass(frozen=True)
class LookDemand:
    """A service's demand as yagna's market takes it (JSON properties, constraints)."""

    properties: dict[str, JsonValue]
    constraints: str


@dataclass(frozen=True)
class Offer:
    """One provider's answer to a service's demand (its properties as offered)."""

    provider_id: str
    properties: Mapping[str, object]


def decoration(platform: str, address: str) -> Decoration:
    """The payment part of a demand, as yagna decorates it for one allocation."""
    key = f"{PAYMENT_PLATFORM_PREFIX}{platform}.address"
    return Decoration(properties={key: address}, constraints=[f"({key}=*)"])


async def service_demands(
    manifest: Manifest,
    *,
    subnet: str,
    platform: str,
    address: str,
    images: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, LookDemand]:
    """Service name -> the demand the engine would publish for it."""
    classes = compile_manifest(manifest, local=subnet == LOCAL_SUBNET, images=images)
    payment = decoration(platform, address)
    demands = {}
    for name, cls in classes.items():
        payload = await cls.get_payload()
        assert payload is not None  # generated classes always build one
        expiration = datetime.now(UTC) + timedelta(seconds=manifest.services[name].expiration)
        demand = build_demand(payload, subnet=subnet, expiration=expiration, decoration=payment)
        demands[name] = LookDemand(dict(demand.properties), demand.constraints)
    return demands


async def look_at_offers(
    client: YagnaClient, demands: Mapping[str, LookDemand], seconds: float
) -> dict[str, list[Offer]]:
    """Subscribe every demand at once, collect matching offers for `seconds`, unsubscribe.

    One offer per provider (a provider re-sends its offer when it changes; the last wins)."""
    found: dict[str, dict[str, Offer]] = {name: {} for name in demands}
    subscriptions: dict[str, str] = {}
    try:
        for name, demand in demands.items():
            subscriptions[name] = await client.subscribe_demand(
                demand.properties, demand.constraints
            )
        deadline = anyio.current_time() + seconds

        async def collect(name: str, subscription: str) -> None:
            while (left := deadline - anyio.current_time()) > 0:
                events = await client.demand_events(subscription, timeout=min(left, 5.0))
                for event in events:
                    if event.proposal is not None:
                        offer = Offer(event.proposal.issuer_id, event.proposal.properties)
                        found[name][offer.provider_id] = offer

        async with anyio.create_task_group() as tg:
            for name, subscription in subscriptions.items():
                tg.start_soon(collect, name, subscription)
    finally:
        with anyio.CancelScope(shield=True):
            for subscription in subscriptions.values():
                # On failure yagna drops it with its TTL; a subscription costs nothing.
                with contextlib.suppress(YagnaError):
                    await client.unsubscribe_demand(subscription)
    return {name: list(offers.values()) for name, offers in found.items()}
