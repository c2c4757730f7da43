"""Durations as people write them: `500ms`, `10s`, `15m`, `1h30m`, `2d` (or plain seconds).

Shared by the manifest and the CLI (`--timeout 2m`), so both accept exactly the same forms.
"""

from __future__ import annotations

import re
from decimal import Decimal

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"
_WHOLE = re.compile(DURATION_PATTERN)
DURATION_HINT = "write a duration such as 500ms, 10s, 15m, 1h30m or 2d (or a number of seconds)"


def parse_duration(value: str | int | float | Decimal) -> float:
    """Seconds as a float. Raises ValueError with a readable message for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
        if not seconds >= 0 or seconds == float("inf"):
            raise ValueError(f"{value} is not a duration (must be >= 0 seconds)")
        return seconds
    text = value.strip()
    if not _WHOLE.match(text):
        raise ValueError(f"{value!r} is not a duration")
    return sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of `seconds` in the manifest's syntax (`1h30m`, `500ms`)."""
    if seconds == 0:
        return "0s"
    millis = round(seconds * 1000)
    if abs(millis - seconds * 1000) > 1e-6:
        return f"{seconds}s"
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)
