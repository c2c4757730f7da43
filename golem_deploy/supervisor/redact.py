"""Keeping secrets out of everything the supervisor writes: journal, logs, status.

Secrets are the app key and every manifest env value; the Redactor replaces them with ***
in any text, and `to_plain` turns event fields into JSON-ready data through it. Values
shorter than MIN_SECRET_LENGTH are only hidden when their variable's name says they are
secret (secret_name), since replacing every "1" in the logs would protect nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

REDACTED = "***"

# Env values shorter than this are not redacted inside free text: replacing every "1" or
# "info" in command output would destroy the logs while protecting nothing secret -- unless
# their name says they are secret (see secret_name), then they are redacted whatever length.
MIN_SECRET_LENGTH = 4
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)


def secret_name(name: str) -> bool:
    """True for names that say their value is secret: *KEY*, *SECRET*, *TOKEN*, *PASSWORD*
    (case-insensitive)."""
    return _SECRET_NAME.search(name) is not None


class Redactor:
    """Replaces known secret strings with *** in everything written to disk."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str, *, named_secret: bool = False) -> None:
        """Also hide `secret` from now on (e.g. a local network's app key once known).

        Values shorter than MIN_SECRET_LENGTH are ignored unless `named_secret` (their
        variable is called like a secret)."""
        long_enough = len(secret) >= MIN_SECRET_LENGTH or named_secret
        if secret and long_enough and secret not in self._secrets:
            self._secrets.append(secret)
            # Longest first, so a secret containing another secret is replaced whole.
            self._secrets.sort(key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def argv(self, argv: Iterable[str]) -> list[str]:
        """Redact an argv; `/usr/bin/env K=V` prefixes (how the compiler applies env) lose V."""
        out: list[str] = []
        items = list(argv)
        in_env_prefix = bool(items) and items[0] in ("/usr/bin/env", "env")
        for i, item in enumerate(items):
            if in_env_prefix and i > 0:
                if "=" in item and not item.startswith("-"):
                    key = item.split("=", 1)[0]
                    out.append(f"{key}={REDACTED}")
                    continue
                in_env_prefix = False
            out.append(self.text(item))
        return out


def to_plain(value: Any, redactor: Redactor | None = None) -> Any:
    """Turn event fields into JSON-ready data: Decimal -> str, enum -> value, times -> epoch."""
    red = redactor or Redactor()
    if isinstance(value, str):
        return red.text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_plain(value.value, red)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name), red) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if secret_name(str(k)) and v else to_plain(v, red)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if items and all(isinstance(i, str) for i in items):
            return red.argv(items)
        return [to_plain(v, red) for v in items]
    return red.text(str(value))
