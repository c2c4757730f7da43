"""aiohttp client for the requestor side of yagna's REST API (market, activity, payment)."""

from golem_deploy.yagna.client import YagnaClient, YagnaConfig
from golem_deploy.yagna.errors import (
    ActivityGone,
    YagnaBadAnswer,
    YagnaError,
    YagnaStatusError,
    YagnaUnreachable,
)

__all__ = [
    "ActivityGone",
    "YagnaBadAnswer",
    "YagnaClient",
    "YagnaConfig",
    "YagnaError",
    "YagnaStatusError",
    "YagnaUnreachable",
]
