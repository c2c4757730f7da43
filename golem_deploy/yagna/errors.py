"""Errors of the yagna REST client."""

from __future__ import annotations

from golem_deploy.errors import GolemDeployError

__all__ = ["YagnaError"]


class YagnaError(GolemDeployError):
    """yagna answered with an error, answered nonsense, or could not be reached.

    `status` is the HTTP status (0 when there was no usable HTTP answer), `request` the
    method and path (never the app key), `detail` yagna's own message.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        request: str,
        *,
        hint: str | None = None,
    ) -> None:
        what = f"HTTP {status}" if status else "no answer"
        super().__init__(f"yagna {request}: {what}: {detail}", hint=hint)
        self.status = status
        self.detail = detail
        self.request = request
