"""Payment terms: the debit-note interval, mid-agreement payments, and notes that come too
often (pure, no I/O, no clock: callers pass the time).

GAP-3 names two negotiable properties: `golem.com.scheme.payu.debit-note.interval-sec?` (how
often the provider sends a debit note) and `golem.com.scheme.payu.payment-timeout-sec?` (the
provider makes a debit note *payable* about once per timeout, with a due date that far
ahead; the requestor's yagna pays an accepted payable note by its due date, and a provider
ends an agreement whose payable note goes unpaid). The rules follow yapapi 0.13.1
(`strategy/base.py`, `engine.py`):

- The debit-note interval is the provider's offered value, never below 60 s; a manifest may
  ask for its own (`payment.debit_note_interval`). Real providers offer 120 s. A provider
  whose offer does not name the property is left alone (nothing to negotiate).
- Mid-agreement payments are negotiated for agreements of 5 h or more with providers that
  offer the property, at the provider's payment timeout, never below 5 h; a manifest's
  `payment.payment_timeout` asks for them on every agreement, at that timeout.
- Notes are counted per activity from its creation: more than `(elapsed + 30 s) /
  interval + 1` notes (payable notes: against the payment timeout) is "too many", and the
  agreement is ended; so is a payable note when mid-agreement payments were not agreed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from golem_deploy import protocol as p

__all__ = [
    "GRACE_PERIOD",
    "MAP_MIN_LIFETIME",
    "MIN_DEBIT_NOTE_INTERVAL",
    "MIN_PAYMENT_TIMEOUT",
    "AgreedTerms",
    "NoteCadence",
    "PaymentTerms",
    "agreed_terms",
    "negotiate",
    "seconds_until",
]

#: yapapi's lower bound on the debit-note interval (s), unless the requestor asks otherwise.
MIN_DEBIT_NOTE_INTERVAL = 60
#: Agreements at least this long (s) get mid-agreement payments (yapapi: 5 h).
MAP_MIN_LIFETIME = 18000
#: yapapi's lower bound on the payment timeout (s), unless the requestor asks otherwise.
MIN_PAYMENT_TIMEOUT = 18000
#: Slack (s) before notes count as too frequent (yapapi's DEBIT_NOTE_INTERVAL_GRACE_PERIOD).
GRACE_PERIOD = 30.0


@dataclass(frozen=True)
class PaymentTerms:
    """What the requestor asks for (the manifest's `payment.*`; None: yapapi's rules).

    `debit_note_interval`: seconds between debit notes (default: the provider's offer, at
    least 60 s). `payment_timeout`: when set, mid-agreement payments on every agreement with
    this timeout (default: only for agreements of 5 h or more)."""

    debit_note_interval: float | None = None
    payment_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("debit_note_interval", "payment_timeout"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 s, got {value}")


@dataclass(frozen=True)
class AgreedTerms:
    """What an agreement's demand says (None: not agreed; the provider's own default then)."""

    debit_note_interval: int | None = None
    payment_timeout: int | None = None

    @property
    def mid_agreement_payments(self) -> bool:
        return self.payment_timeout is not None

    def properties(self) -> dict[str, int]:
        """The demand properties that say these terms (a counter-proposal adds them)."""
        props: dict[str, int] = {}
        if self.debit_note_interval is not None:
            props[p.DEBIT_NOTE_INTERVAL] = self.debit_note_interval
        if self.payment_timeout is not None:
            props[p.PAYMENT_TIMEOUT] = self.payment_timeout
        return props


def _seconds(value: object) -> int | None:
    """A positive whole number of seconds from a property value, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return max(1, round(value))


def negotiate(terms: PaymentTerms, offer: Mapping[str, object], lifetime: float) -> AgreedTerms:
    """Our answer to an offer, for an agreement that would last `lifetime` seconds."""
    offered_interval = _seconds(offer.get(p.DEBIT_NOTE_INTERVAL))
    if p.DEBIT_NOTE_INTERVAL not in offer:
        return AgreedTerms()  # a provider unaware of the property: nothing to negotiate
    if terms.debit_note_interval is not None:
        interval = max(1, round(terms.debit_note_interval))
    else:
        interval = max(offered_interval or MIN_DEBIT_NOTE_INTERVAL, MIN_DEBIT_NOTE_INTERVAL)
    offered_timeout = _seconds(offer.get(p.PAYMENT_TIMEOUT))
    wanted = terms.payment_timeout is not None or lifetime >= MAP_MIN_LIFETIME
    if not wanted or p.PAYMENT_TIMEOUT not in offer:
        return AgreedTerms(interval, None)
    if terms.payment_timeout is not None:
        timeout = max(1, round(terms.payment_timeout))
    else:
        timeout = max(offered_timeout or MIN_PAYMENT_TIMEOUT, MIN_PAYMENT_TIMEOUT)
    return AgreedTerms(interval, timeout)


def agreed_terms(demand: Mapping[str, object]) -> AgreedTerms:
    """The terms an agreement's demand properties carry (what the requestor agreed to)."""
    return AgreedTerms(
        _seconds(demand.get(p.DEBIT_NOTE_INTERVAL)), _seconds(demand.get(p.PAYMENT_TIMEOUT))
    )


def seconds_until(due: str | None, now: datetime) -> float | None:
    """Seconds from `now` to a note's `paymentDueDate` (ISO-8601); None when it has none
    (or an unreadable one), never below 0."""
    if due is None:
        return None
    try:
        moment = datetime.fromisoformat(due)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def too_many(elapsed: float, count: int, interval: float) -> bool:
    """yapapi's check: `count` notes in `elapsed` seconds is more than the interval allows."""
    return elapsed + GRACE_PERIOD < (count - 1) * interval


@dataclass
class NoteCadence:
    """The debit notes of one activity so far, judged against the agreed terms."""

    terms: AgreedTerms
    started: float  # when the activity was created (the caller's clock, seconds)
    notes: int = 0
    payable: int = 0

    def judge(self, now: float, *, payable: bool) -> str | None:
        """Count one more note; why the agreement must end, or None when it is fine."""
        self.notes += 1
        elapsed = max(0.0, now - self.started)
        interval = self.terms.debit_note_interval
        if interval is not None and too_many(elapsed, self.notes, interval):
            return (
                f"too many debit notes: {self.notes} in {elapsed:.0f} s "
                f"(agreed interval {interval} s)"
            )
        if not payable:
            return None
        self.payable += 1
        timeout = self.terms.payment_timeout
        if timeout is None:
            return "a payable debit note although mid-agreement payments were not agreed"
        if too_many(elapsed, self.payable, timeout):
            return (
                f"too many payable debit notes: {self.payable} in {elapsed:.0f} s "
                f"(agreed payment timeout {timeout} s)"
            )
        return None
