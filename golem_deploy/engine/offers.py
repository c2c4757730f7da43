"""What the engine asks the market for and how it judges offers (pure, no I/O).

Demand: built as yapapi builds it (yagna-rest.md §3): expiration (ms), multi-activity,
subnet property + constraint, the payment platform properties/constraints exactly as the
payment service's demand decorations give them, the linear pricing constraint, and the
payload's task package + resource constraints.

Scoring: an offer's expected cost for `expected_seconds` of work under its linear pricing,
checked against the price caps (start price, CPU per hour, environment per hour). An offer
over a cap, or with an unknown pricing model or no common payment platform, is rejected
with a reason the user can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from golem_deploy import protocol as p
from golem_deploy.engine.config import PriceCaps
from golem_deploy.engine.payload import VmPayload
from golem_deploy.engine.payment_terms import MAP_MIN_LIFETIME, PaymentTerms, negotiate
from golem_deploy.protocol import CPU_SEC, DURATION_SEC
from golem_deploy.yagna.models import Decoration

__all__ = [
    "CPU_SEC",
    "DURATION_SEC",
    "Demand",
    "LinearPricing",
    "OfferScore",
    "build_demand",
    "counter_properties",
    "offer_platforms",
    "score_offer",
]

PLATFORM_PREFIX = p.PAYMENT_PLATFORM_PREFIX
ACCEPT_TIMEOUT = p.DEBIT_NOTE_ACCEPT_TIMEOUT
DEBIT_NOTE_INTERVAL = p.DEBIT_NOTE_INTERVAL
PAYMENT_TIMEOUT = p.PAYMENT_TIMEOUT
MAP_MIN_EXPIRATION = MAP_MIN_LIFETIME  # s; below this yapapi negotiates no mid-agreement payments


@dataclass(frozen=True)
class Demand:
    properties: dict[str, Any]
    constraints: str


def build_demand(
    payload: VmPayload,
    *,
    subnet: str,
    expiration: datetime,
    decoration: Decoration,
) -> Demand:
    """The demand a yapapi requestor would publish for this payload (key order included)."""
    props: dict[str, Any] = {
        p.EXPIRATION: int(expiration.timestamp() * 1000),
        p.MULTI_ACTIVITY: True,
        p.SUBNET: subnet,
    }
    props.update(decoration.properties)
    props.update(payload.properties())
    constraints = [
        f"(golem.node.debug.subnet={subnet})",
        *decoration.constraints,
        "(golem.com.pricing.model=linear)",
        payload.constraints(),
    ]
    return Demand(props, "(&" + "\n\t".join(constraints) + ")")


@dataclass(frozen=True)
class LinearPricing:
    """Per-unit prices by usage counter, plus the fixed start price (all GLM)."""

    prices: dict[str, Decimal]
    start: Decimal

    @classmethod
    def from_properties(cls, props: Mapping[str, object]) -> LinearPricing:
        """Parse an offer's linear pricing; ValueError with a reason if it is not usable."""
        if props.get(p.PRICING_MODEL) != "linear":
            raise ValueError(f"pricing model {props.get('golem.com.pricing.model')!r} not linear")
        if props.get(p.SCHEME) not in (None, "payu"):
            raise ValueError(f"payment scheme {props.get('golem.com.scheme')!r} is not payu")
        coeffs = props.get(p.LINEAR_COEFFS)
        vector = props.get(p.USAGE_VECTOR)
        if not isinstance(coeffs, list) or not isinstance(vector, list):
            raise ValueError("offer has no linear coefficients / usage vector")
        if len(coeffs) != len(vector) + 1 or not all(isinstance(v, str) for v in vector):
            raise ValueError("linear coefficients do not match the usage vector")
        try:
            values = [Decimal(str(c)) for c in coeffs]
        except InvalidOperation:
            raise ValueError("linear coefficients are not numbers") from None
        pairs = zip(coeffs, values, strict=True)
        if any(isinstance(c, bool) or not v.is_finite() or v < 0 for c, v in pairs):
            raise ValueError("linear coefficients must be finite and non-negative")
        return cls(prices=dict(zip(vector, values[:-1], strict=True)), start=values[-1])

    def cost(self, usage: dict[str, Decimal | float | int]) -> Decimal:
        total = self.start
        for counter, price in self.prices.items():
            total += price * Decimal(str(usage.get(counter, 0)))
        return total

    def expected_cost(self, seconds: float) -> Decimal:
        """Cost of `seconds` of wall time with one fully used CPU (the usual upper estimate)."""
        s = Decimal(str(seconds))
        return self.cost({CPU_SEC: s, DURATION_SEC: s})


@dataclass(frozen=True)
class OfferScore:
    accepted: bool
    expected_cost: Decimal
    reason: str = ""


def offer_platforms(props: Mapping[str, object]) -> set[str]:
    """Payment platforms an offer supports (the segment after golem.com.payment.platform.)."""
    found = set()
    for key in props:
        if key.startswith(PLATFORM_PREFIX):
            rest = key[len(PLATFORM_PREFIX) :]
            found.add(rest.split(".", 1)[0])
    return found


def score_offer(
    props: Mapping[str, object], caps: PriceCaps, *, platform: str, expected_seconds: float
) -> OfferScore:
    """Accept or reject an offer; accepted offers carry their expected cost (lower wins)."""
    try:
        pricing = LinearPricing.from_properties(props)
    except ValueError as e:
        return OfferScore(False, Decimal(0), str(e))
    platforms = offer_platforms(props)
    if platforms and platform not in platforms:
        return OfferScore(False, Decimal(0), f"no common payment platform (we use {platform})")
    hour = Decimal(3600)
    cpu = pricing.prices.get(CPU_SEC, Decimal(0)) * hour
    env = pricing.prices.get(DURATION_SEC, Decimal(0)) * hour
    checks = [
        ("start price", pricing.start, caps.start),
        ("CPU price per hour", cpu, caps.cpu_per_hour),
        ("env price per hour", env, caps.env_per_hour),
    ]
    for label, value, cap in checks:
        if cap is not None and value > cap:
            return OfferScore(
                False, pricing.expected_cost(expected_seconds), f"{label} {value} > cap {cap}"
            )
    return OfferScore(True, pricing.expected_cost(expected_seconds))


def counter_properties(
    demand: Demand,
    offer: dict[str, Any],
    *,
    platform: str,
    expiration: datetime,
    now: datetime,
    terms: PaymentTerms | None = None,
) -> dict[str, Any]:
    """Our counter-proposal's properties: the demand plus what yapapi negotiates (the
    accept timeout; the debit-note interval and mid-agreement payments by `terms`, see
    engine/payment_terms.py)."""
    props = dict(demand.properties)
    props[p.CHOSEN_PLATFORM] = platform
    timeout = offer.get(ACCEPT_TIMEOUT)
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        props[ACCEPT_TIMEOUT] = max(int(timeout), 30)
    lifetime = (expiration - now).total_seconds()
    props.update(negotiate(terms or PaymentTerms(), offer, lifetime).properties())
    return props
