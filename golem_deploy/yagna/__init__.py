"""aiohttp client for the requestor side of yagna's REST API (market, activity, payment)."""

from golem_deploy.yagna.client import YagnaClient, YagnaConfig
from golem_deploy.yagna.errors import YagnaError

__all__ = ["YagnaClient", "YagnaConfig", "YagnaError"]
