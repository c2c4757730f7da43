"""Errors of the yagna REST client, as a small tree (the way httpx types its errors).

    YagnaError                 anything that went wrong talking to yagna
    +-- YagnaUnreachable       no HTTP answer at all (connection refused/dropped, timeout)
    +-- YagnaBadAnswer         an answer that is not what the API promises (not JSON, ...)
    +-- YagnaStatusError       yagna answered with an error status (`status`, `detail`)
        +-- ActivityGone       ... saying the provider's side of the activity is gone

Callers branch on the type, never on the text: yagna's error text is examined in exactly
one place, `golem_deploy.yagna.client.status_error`, which picks the class.
"""

from __future__ import annotations

from golem_deploy.errors import GolemDeployError

__all__ = [
    "ActivityGone",
    "YagnaBadAnswer",
    "YagnaError",
    "YagnaStatusError",
    "YagnaUnreachable",
]


class YagnaError(GolemDeployError):
    """Talking to yagna failed. `request` is the method and path (never the app key),
    `detail` what went wrong (yagna's own message for a status error)."""

    def __init__(self, detail: str, request: str, *, hint: str | None = None) -> None:
        super().__init__(f"yagna {request}: {self._what()}{detail}", hint=hint)
        self.detail = detail
        self.request = request

    def _what(self) -> str:
        return ""


class YagnaUnreachable(YagnaError):
    """yagna gave no HTTP answer: it is down, restarting, or too busy to answer in time.

    Says nothing about any provider: wait for yagna rather than blame an instance."""

    def _what(self) -> str:
        return "no answer: "


class YagnaBadAnswer(YagnaError):
    """yagna answered, but not what its API promises (not JSON, missing fields, too big)."""

    def _what(self) -> str:
        return "bad answer: "


class YagnaStatusError(YagnaError):
    """yagna answered with an HTTP error status."""

    def __init__(self, status: int, detail: str, request: str, *, hint: str | None = None):
        self.status = status
        super().__init__(detail, request, hint=hint)

    def _what(self) -> str:
        return f"HTTP {self.status}: "


class ActivityGone(YagnaStatusError):
    """yagna could not reach the activity on the provider: its ExeUnit is no longer on the
    bus (the provider crashed, was killed or lost its network). Nothing sent to that
    activity will ever be answered again."""
