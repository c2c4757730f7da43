"""What the provider side of yagna's REST API returns, as typed values, and their parsing.

The raw JSON of an answer goes in here and never further: api.py turns answers into these
dataclasses, the agent sees nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Proposal:
    """A requestor's (counter-)proposal to our offer (subscription)."""

    subscription_id: str
    proposal_id: str
    issuer_id: str | None
    properties: dict[str, object]
    constraints: str


@dataclass(frozen=True)
class ProposedAgreement:
    """An agreement a requestor proposed, waiting for our approval or rejection."""

    agreement_id: str
    requestor_id: str
    demand: dict[str, object]  # the demand's properties
    demand_constraints: str
    offer: dict[str, object] | None  # the offer's properties as agreed, if yagna sent them
    valid_to: datetime | None


#: What an offer subscription's event poll yields (other kinds are skipped).
OfferEvent = Proposal | ProposedAgreement


@dataclass(frozen=True)
class AgreementEvent:
    """A change of one of our agreements (AgreementTerminatedEvent, ...)."""

    agreement_id: str
    kind: str
    event_date: str
    reason: str | None


@dataclass(frozen=True)
class ActivityEvent:
    """CreateActivity or DestroyActivity of one of our agreements' activities."""

    activity_id: str
    agreement_id: str
    kind: str
    event_date: str


AGREEMENT_TERMINATED = "AgreementTerminatedEvent"
AGREEMENT_CANCELLED = "AgreementCancelledEvent"
AGREEMENT_REJECTED = "AgreementRejectedEvent"
CREATE_ACTIVITY = "CreateActivity"
DESTROY_ACTIVITY = "DestroyActivity"


def now_cursor() -> str:
    """An event cursor (RFC 3339) one second in the past: events strictly after it."""
    return (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _proposal(subscription_id: str, raw: dict[str, Any]) -> Proposal:
    issuer = raw.get("issuerId")
    return Proposal(
        subscription_id=subscription_id,
        proposal_id=str(raw["proposalId"]),
        issuer_id=str(issuer) if issuer is not None else None,
        properties=dict(_object(raw.get("properties", {}))),
        constraints=_text(raw.get("constraints")),
    )


def _proposed_agreement(raw: dict[str, Any]) -> ProposedAgreement:
    demand = _object(raw.get("demand", {}))
    offer = _object(raw.get("offer", {}))
    offer_properties = offer.get("properties")
    return ProposedAgreement(
        agreement_id=str(raw["agreementId"]),
        requestor_id=_text(demand.get("requestorId")),
        demand=dict(_object(demand.get("properties", {}))),
        demand_constraints=_text(demand.get("constraints")),
        offer=dict(offer_properties) if isinstance(offer_properties, dict) else None,
        valid_to=parse_time(raw.get("validTo")),
    )


def event_age(event_date: str) -> float | None:
    """Seconds since yagna recorded an event (same host, same clock), or None if unparsable."""
    when = parse_time(event_date)
    return None if when is None else (datetime.now(UTC) - when).total_seconds()


def seconds_text(value: float | None) -> str:
    """A duration for a log line: "0.123", or "?" when unknown."""
    return "?" if value is None else f"{value:.3f}"


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp from yagna (nanoseconds allowed), or None."""
    if not isinstance(value, str):
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", value)
    if match is None:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = match.group(3) or "Z"
    text = match.group(1) + fraction + ("+00:00" if zone == "Z" else zone)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def json_objects(answer: object) -> list[dict[str, Any]]:
    """The JSON objects of an event list (anything else in it is skipped)."""
    if not isinstance(answer, list):
        return []
    return [item for item in answer if isinstance(item, dict)]


def parse_offer_event(subscription_id: str, raw: dict[str, Any]) -> OfferEvent | None:
    """A proposal or a proposed agreement; None for kinds the agent does not act on.

    Raises KeyError or TypeError when the event is malformed.
    """
    kind = raw.get("eventType")
    if kind == "ProposalEvent":
        return _proposal(subscription_id, _object(raw["proposal"]))
    if kind == "AgreementEvent":
        return _proposed_agreement(_object(raw["agreement"]))
    return None


def parse_agreement_event(raw: dict[str, Any]) -> AgreementEvent:
    reason = raw.get("reason")
    message = reason.get("message") if isinstance(reason, dict) else None
    return AgreementEvent(
        agreement_id=_text(raw.get("agreementId")),
        kind=_text(raw.get("eventType")),
        event_date=_text(raw.get("eventDate")),
        reason=str(message) if message else None,
    )


def parse_activity_event(raw: dict[str, Any]) -> ActivityEvent:
    kind = raw.get("eventType")  # {"CreateActivity": {...}}
    return ActivityEvent(
        activity_id=_text(raw.get("activityId")),
        agreement_id=_text(raw.get("agreementId")),
        kind=next(iter(kind), "?") if isinstance(kind, dict) else _text(kind),
        event_date=_text(raw.get("eventDate")),
    )
