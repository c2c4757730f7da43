"""yapapi's `ApiConfig`: where the user's yagna is, and its app key, for `Golem(api_config=)`.

The same fields and environment variables as yapapi 0.13.1's `yapapi.config.ApiConfig`:
`app_key` (`YAGNA_APPKEY`), `api_url` (`YAGNA_API_URL`, default `http://127.0.0.1:7465`) and
the optional per-API base URLs `market_url` (`YAGNA_MARKET_URL`), `payment_url`
(`YAGNA_PAYMENT_URL`), `activity_url` (`YAGNA_ACTIVITY_URL`), `net_url` (`YAGNA_NET_URL`).
Like yapapi's, a field left out is read from the environment when the object is made, and a
missing app key is refused right there. It becomes the yagna client's `YagnaConfig`, which
makes every request go to the right base URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial

from golem_deploy.errors import GolemDeployError
from golem_deploy.yagna.config import DEFAULT_API_URL, YagnaConfig

__all__ = ["ApiConfig", "MissingConfiguration"]


class MissingConfiguration(GolemDeployError):
    """yapapi's name for a configuration value that is needed and nowhere to be found."""


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


@dataclass
class ApiConfig:
    """yagna's REST API location and app key (the app key is not in the repr)."""

    app_key: str | None = field(default_factory=partial(_env, "YAGNA_APPKEY"), repr=False)
    api_url: str = field(default_factory=lambda: _env("YAGNA_API_URL") or DEFAULT_API_URL)
    market_url: str | None = field(default_factory=partial(_env, "YAGNA_MARKET_URL"))
    payment_url: str | None = field(default_factory=partial(_env, "YAGNA_PAYMENT_URL"))
    net_url: str | None = field(default_factory=partial(_env, "YAGNA_NET_URL"))
    activity_url: str | None = field(default_factory=partial(_env, "YAGNA_ACTIVITY_URL"))

    def __post_init__(self) -> None:
        if not self.app_key:
            raise MissingConfiguration(
                "no app key for yagna's API",
                hint="set YAGNA_APPKEY (see `yagna app-key list`) or pass ApiConfig(app_key=...)",
            )

    def yagna_config(self) -> YagnaConfig:
        """The client configuration: every URL as given here, nothing else read."""

        def base(url: str | None) -> str | None:
            return url.rstrip("/") if url else None

        assert self.app_key
        return YagnaConfig(
            api_url=self.api_url.rstrip("/"),
            app_key=self.app_key,
            market_url=base(self.market_url),
            payment_url=base(self.payment_url),
            activity_url=base(self.activity_url),
            net_url=base(self.net_url),
        )
