"""How answers from yagna are read and how its errors are classified.

`status_error` is the ONE place where yagna's error text is looked at: it turns an error
status plus yagna's message into the right YagnaError subclass, so everything above the
client branches on exception types only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import aiohttp

from golem_deploy.yagna.errors import (
    ActivityGone,
    YagnaBadAnswer,
    YagnaStatusError,
)
from golem_deploy.yagna.models import RuntimeEvent

__all__ = [
    "MAX_BODY",
    "JsonValue",
    "decode",
    "error_message",
    "expect_list",
    "expect_string",
    "read_limited",
    "runtime_events",
    "status_error",
]

#: What a JSON document may hold: what the typed API methods accept as bodies.
JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
MAX_BODY = 16 * 1024 * 1024  # no legitimate requestor answer comes near this
MAX_SSE_LINE = 4 * 1024 * 1024
ACTIVITY_PATH = "/activity-api/v1/activity/"
#: What yagna's GSB router answers when the address of an activity's ExeUnit is no longer
#: bound: the provider's side of the activity is gone (crashed, killed, disconnected).
GSB_ENDPOINT_GONE = "endpoint address not found"


def status_error(status: int, raw: bytes, request: str) -> YagnaStatusError:
    """The exception for yagna answering `status` with body `raw` to `request`."""
    message = error_message(raw)
    if ACTIVITY_PATH in request and GSB_ENDPOINT_GONE in message:
        return ActivityGone(status, message, request)
    hint = None
    if status == 401:
        hint = "the app key was refused; check YAGNA_APPKEY (`yagna app-key list`)"
    return YagnaStatusError(status, message, request, hint=hint)


async def read_limited(resp: aiohttp.ClientResponse, what: str) -> bytes:
    """The body, refusing anything over MAX_BODY (a misbehaving server must not eat RAM)."""
    if resp.content_length is not None and resp.content_length > MAX_BODY:
        raise YagnaBadAnswer(f"answer too large ({resp.content_length} bytes)", what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise YagnaBadAnswer(f"answer larger than {MAX_BODY} bytes", what)
        chunks.append(chunk)
    return b"".join(chunks)


def decode(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        snippet = raw[:120].decode("utf-8", errors="replace")
        raise YagnaBadAnswer(f"answer is not JSON: {snippet!r}", what) from None


def error_message(raw: bytes) -> str:
    """yagna's ErrorMessage `{"message": ...}`, or its plain-text body (401), trimmed."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])[:500]
    return text[:500] or "(empty body)"


def expect_string(data: Any, what: str) -> str:
    if not isinstance(data, str) or not data:
        raise YagnaBadAnswer(f"expected a JSON string id, got {type(data).__name__}", what)
    return data


def expect_list(data: Any, what: str) -> list[Any]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise YagnaBadAnswer(f"expected a JSON array, got {type(data).__name__}", what)
    return data


async def runtime_events(resp: aiohttp.ClientResponse, what: str) -> AsyncIterator[RuntimeEvent]:
    """The `event: runtime` frames of a server-sent-event stream, until it ends."""
    event, data_lines = "", list[str]()
    while True:
        line_b = await resp.content.readline()
        if not line_b:
            return
        if len(line_b) > MAX_SSE_LINE:
            raise YagnaBadAnswer("stream line too long", what)
        line = line_b.decode("utf-8", errors="replace").rstrip("\r\n")
        if line == "":
            if data_lines and event in ("runtime", ""):
                payload = decode("\n".join(data_lines).encode(), what)
                yield RuntimeEvent.parse(payload, what)
            event, data_lines = "", []
        elif line.startswith(":"):
            continue  # comment / keep-alive ping
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data_lines.append(line[5:].lstrip())
