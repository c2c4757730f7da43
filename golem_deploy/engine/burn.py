"""The burn rate: how fast a deployment spends now, and when its budget runs out at that pace
(pure, no I/O, no clock: callers pass the time).

Measured, not quoted: each live activity's rate is the growth of its cumulative debit-note
total between its first and its latest accepted note, over the time between them; the burn
rate is their sum. So an activity counts from its second note on (its first one carries the
provider's start price, which is no rate), and an activity whose agreement ended stops
counting at once. A deployment with no activity past its second note has no rate yet (None);
nor has one whose notes have not grown since the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

__all__ = ["BurnRate"]


@dataclass
class _Samples:
    agreement_id: str
    first_at: float
    first_total: Decimal
    last_at: float
    last_total: Decimal

    def per_hour(self) -> Decimal | None:
        span = self.last_at - self.first_at
        if span <= 0:
            return None
        return (self.last_total - self.first_total) * 3600 / Decimal(repr(span))


@dataclass
class BurnRate:
    """Accepted debit notes per live activity -> GLM per hour, and the time left."""

    _activities: dict[str, _Samples] = field(default_factory=dict)

    def note_accepted(self, agreement_id: str, activity_id: str, total: Decimal, at: float) -> None:
        """An accepted debit note's cumulative total for `activity_id` at time `at`."""
        seen = self._activities.get(activity_id)
        if seen is None:
            self._activities[activity_id] = _Samples(agreement_id, at, total, at, total)
        elif total > seen.last_total and at > seen.last_at:
            # a note with the same total is no news (a note delivered again, or usage not
            # refreshed yet under load): counting it would measure a rate of 0
            seen.last_at, seen.last_total = at, total

    def agreement_ended(self, agreement_id: str) -> None:
        """Its activities spend no more: they leave the rate."""
        for activity_id in [
            a for a, s in self._activities.items() if s.agreement_id == agreement_id
        ]:
            del self._activities[activity_id]

    def per_hour(self) -> Decimal | None:
        """GLM per hour at the current pace; None before any activity had two notes."""
        rates = [r for r in (s.per_hour() for s in self._activities.values()) if r is not None]
        if not rates:
            return None
        return sum(rates, Decimal(0))

    @staticmethod
    def hours_left(remaining: Decimal, per_hour: Decimal | None) -> Decimal | None:
        """Hours until `remaining` is spent at `per_hour` (None: no rate, or spending nothing)."""
        if per_hour is None or per_hour <= 0:
            return None
        return max(Decimal(0), remaining) / per_hour
