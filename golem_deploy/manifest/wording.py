"""How manifest diagnostics name a place and a value, so every message reads the same.

Schema errors, semantic rules and the loader all say "services.web.payload" for a place and
"a mapping" for a value's type; keeping those phrasings here means a reader of one message
has learned the vocabulary of all of them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from golem_deploy.manifest.load import JsonPath


def dotted(path: JsonPath) -> str:
    """`services.web.start[0]`; "manifest" for the document itself."""
    if not path:
        return "manifest"
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def where(path: JsonPath) -> str:
    """Like `dotted`, but "top level" for the document itself (used for keys found there)."""
    return "top level" if not path else dotted(path)


def type_name(value: Any) -> str:
    """A loaded value's type in YAML words, with its article: "a mapping", "an integer"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, Decimal | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_SCHEMA_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "null": "null",
}


def article(names: str) -> str:
    """JSON Schema type names ("object or string") in YAML words ("a mapping or a string")."""
    return " or ".join(_SCHEMA_TYPES.get(n, n) for n in names.split(" or "))


def show(value: Any) -> str:
    """A value as the user wrote it in YAML: strings quoted, `true`, `null`."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)
