"""`golem-deploy plan`: what the market offers for each service and what it would cost.

Per service: how many offers match its demand, how many of those are within the manifest's
price caps (the engine would reject the others), the price ranges (start, per CPU-hour, per
hour), and the projected cost of the declared instances per hour and until expiration.
Projections assume every CPU thread the service asks for (min_cpu_threads) is busy the whole
time, the usual upper estimate for a service, and give a range: every instance on the
cheapest acceptable offer .. every instance on the dearest one. The sum of the upper ends
is compared with the budget.

Runs on the user's yagna (YAGNA_APPKEY set), or else on a private local network started for
the look in the state folder and stopped after it, so it works on both networks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

import anyio

from golem_deploy import paths
from golem_deploy.compiler import price_caps
from golem_deploy.engine.offers import LinearPricing, score_offer
from golem_deploy.manifest.model import Manifest
from golem_deploy.preflight.checks import Target
from golem_deploy.preflight.images import resolve_images
from golem_deploy.preflight.market import Offer, look_at_offers, service_demands
from golem_deploy.protocol import CPU_SEC, DURATION_SEC
from golem_deploy.yagna.client import YagnaClient, YagnaConfig

__all__ = ["Plan", "ServicePlan", "make_plan", "plan_lines"]

HOUR = Decimal(3600)


@dataclass(frozen=True)
class Range:
    low: Decimal
    high: Decimal

    @classmethod
    def of(cls, values: list[Decimal]) -> Range | None:
        return cls(min(values), max(values)) if values else None

    def __str__(self) -> str:
        low, high = _round(self.low), _round(self.high)
        return f"{low}" if low == high else f"{low}..{high}"


@dataclass(frozen=True)
class ServicePlan:
    name: str
    instances: int
    expiration_s: float
    offers: int
    acceptable: int  # within the manifest's price caps
    start: Range | None
    cpu_per_hour: Range | None
    env_per_hour: Range | None
    per_hour: Range | None  # all instances, acceptable offers only
    to_expiration: Range | None  # all instances, start prices included


@dataclass(frozen=True)
class Plan:
    network: str  # "yagna" (the user's) or "local"
    subnet: str
    budget: Decimal
    looked_s: float
    services: list[ServicePlan]

    @property
    def total(self) -> Range | None:
        parts = [s.to_expiration for s in self.services if s.to_expiration is not None]
        if not parts or len(parts) != len(self.services):
            return None
        return Range(
            sum((p.low for p in parts), Decimal(0)), sum((p.high for p in parts), Decimal(0))
        )

    def plain(self) -> dict[str, object]:
        total = self.total
        data = asdict(self)
        data["total_to_expiration"] = asdict(total) if total else None
        data["fits_budget"] = total is not None and total.high <= self.budget
        plain = _strings(data)
        assert isinstance(plain, dict)
        return plain


def _strings(value: object) -> object:
    """Decimals as strings (JSON has no exact decimals), recursively."""
    if isinstance(value, Decimal):
        return str(_round(value))
    if isinstance(value, dict):
        return {k: _strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v) for v in value]
    return value


def _round(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.000001")).normalize()


def price_service(manifest: Manifest, name: str, offers: list[Offer], platform: str) -> ServicePlan:
    """One service's plan from the offers it got (pure)."""
    spec = manifest.services[name]
    caps = price_caps(manifest.market.max_price)
    threads = Decimal(spec.payload.min_cpu_threads)
    priced: list[tuple[LinearPricing, bool]] = []
    for offer in offers:
        props = dict(offer.properties)
        try:
            pricing = LinearPricing.from_properties(props)
        except ValueError:
            continue  # not linear: the engine would reject it too
        score = score_offer(props, caps, platform=platform, expected_seconds=spec.expiration)
        priced.append((pricing, score.accepted))
    good = [pricing for pricing, accepted in priced if accepted]
    hourly = [p.cost({CPU_SEC: threads * HOUR, DURATION_SEC: HOUR}) - p.start for p in good]
    hours = Decimal(str(spec.expiration)) / HOUR
    whole = [
        p.start + (p.cost({CPU_SEC: threads * HOUR, DURATION_SEC: HOUR}) - p.start) * hours
        for p in good
    ]
    n = spec.instances
    return ServicePlan(
        name=name,
        instances=n,
        expiration_s=spec.expiration,
        offers=len(offers),
        acceptable=len(good),
        start=Range.of([p.start for p, _ in priced]),
        cpu_per_hour=Range.of([p.prices.get(CPU_SEC, Decimal(0)) * HOUR for p, _ in priced]),
        env_per_hour=Range.of([p.prices.get(DURATION_SEC, Decimal(0)) * HOUR for p, _ in priced]),
        per_hour=Range.of([h * n for h in hourly]),
        to_expiration=Range.of([w * n for w in whole]),
    )


def make_plan(manifest: Manifest, seconds: float) -> Plan:
    """Look at the market for `seconds` (user's yagna, else a private local network)."""
    if os.environ.get("YAGNA_APPKEY"):
        return anyio.run(_look, manifest, Target.from_env(manifest), seconds, "yagna")
    from golem_deploy import localnet

    state_dir = Path(tempfile.mkdtemp(prefix="plan-", dir=paths.home()))
    try:
        info = localnet.start(state_dir, providers=3, timeout=60.0)
        target = Target(
            api_url=info.api_url,
            app_key=info.app_key,
            subnet=info.subnet,
            driver=info.payment_driver,
            network=info.payment_network,
            manifest=manifest,
        )
        return anyio.run(_look, manifest, target, seconds, "local")
    finally:
        localnet.stop(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


async def _look(manifest: Manifest, target: Target, seconds: float, network: str) -> Plan:
    config = YagnaConfig.for_yagna(target.api_url, target.app_key)
    async with YagnaClient(config, retries=1) as client:
        me = await client.me()
        images = {}
        if network == "yagna":
            resolved = await resolve_images(manifest, subnet=target.subnet, warn=lambda _: None)
            images = {name: (image.sha3, image.url) for name, image in resolved.items()}
        demands = await service_demands(
            manifest,
            subnet=target.subnet,
            platform=target.platform,
            address=me.node_id,
            images=images,
        )
        offers = await look_at_offers(client, demands, seconds)
    services = [
        price_service(manifest, name, found, target.platform) for name, found in offers.items()
    ]
    return Plan(network, target.subnet, manifest.budget, seconds, services)


def plan_lines(plan: Plan) -> list[str]:
    """The plan as plain text, one service per block."""
    where = "your yagna" if plan.network == "yagna" else "a private local network"
    lines = [f"offers seen in {plan.looked_s:g} s on {where}, subnet {plan.subnet} (prices in GLM)"]
    for s in plan.services:
        lines.append(
            f"{s.name}: {s.offers} matching offers, {s.acceptable} within the price caps; "
            f"{s.instances} instance(s) for {s.expiration_s / 3600:g} h"
        )
        if s.start is None:
            lines.append("  no priced offer: nothing to project")
            continue
        lines.append(f"  start {s.start}  per CPU-hour {s.cpu_per_hour}  per hour {s.env_per_hour}")
        if s.per_hour is None or s.to_expiration is None:
            lines.append("  no offer within the price caps: nothing to project")
            continue
        lines.append(f"  projected: {s.per_hour} per hour, {s.to_expiration} until expiration")
    total = plan.total
    if total is None:
        lines.append(f"budget {plan.budget}: cannot project (a service has no acceptable offer)")
    elif total.high <= plan.budget:
        lines.append(f"total until expiration {total}: within the budget of {plan.budget}")
    else:
        lines.append(f"total until expiration {total}: OVER the budget of {plan.budget}")
    return lines
