"""The budget's pace for the snapshot: when what is left runs out at the current burn rate
(pure; the rate itself is measured by the engine, engine/burn.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

__all__ = ["budget_plain", "glm_text", "runs_out_at"]

#: Beyond this a pace never spends the budget in a lifetime: no date is given.
_NEVER_HOURS = 24 * 365 * 100


def runs_out_at(
    budget: str | None, spent: Decimal, per_hour: Decimal | None, now: dt.datetime | None
) -> str | None:
    """When what is left of `budget` is spent at `per_hour` GLM/hour from `now`, as an
    ISO-8601 UTC string (None when the budget or the pace is unknown, or nothing is spent)."""
    if budget is None or per_hour is None or per_hour <= 0:
        return None
    try:
        left = max(Decimal(0), Decimal(budget) - spent)
    except ArithmeticError:
        return None
    hours = float(left / per_hour)
    if hours > _NEVER_HOURS:
        return None
    start = now or dt.datetime.now(dt.UTC)
    moment = (start + dt.timedelta(hours=hours)).astimezone(dt.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def glm_text(value: Decimal | None) -> str | None:
    """A GLM amount as a plain decimal string, 18 places at most (GLM's precision)."""
    if value is None:
        return None
    return format(value.quantize(Decimal(1).scaleb(-18)).normalize(), "f")


def budget_plain(
    total: str | None, spent: Decimal, per_hour: Decimal | None, out_at: str | None
) -> dict[str, str | None]:
    """The snapshot's `budget` object (the `status --json` shape)."""
    remaining = None
    if total is not None:
        try:
            remaining = str(Decimal(total) - spent)
        except ArithmeticError:
            remaining = None
    return {
        "total": total,
        "spent": str(spent),
        "remaining": remaining,
        "burn_rate_per_hour": glm_text(per_hour),
        "runs_out_at": out_at,
    }
