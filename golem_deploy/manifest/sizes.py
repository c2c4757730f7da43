"""Sizes as people write them: `10MB`, `512k`, `1g`, `2MiB` (or a plain number of bytes).

Used by a service's `logs.max_size`. Like compose's json-file `max-size` (Docker's
go-units), every unit is binary: k = KB = KiB = 1024 bytes, m/MB/MiB = 1024², g/GB/GiB = 1024³.
"""

from __future__ import annotations

import re

SIZE_PATTERN = r"^\d+(\.\d+)? ?([kKmMgG]([iI]?[bB])?|[bB])?$"
_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgG]?)(?:[iI]?[bB])?$")
_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
SIZE_HINT = "write a size such as 512KB, 10MB or 1GB (or a number of bytes)"
MIN_LOG_SIZE = 1024  # smaller would rotate on about every line


def parse_size(value: str | int) -> int:
    """Bytes. Raises ValueError with a readable message for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is not a size (must be >= 0 bytes)")
        return value
    match = _SIZE.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size")
    number, unit = match.groups()
    return int(float(number) * _FACTORS[unit.lower()])


def format_size(size: int) -> str:
    """The shortest exact spelling of `size` bytes (`10MB`, `1536KB`, `100`)."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
