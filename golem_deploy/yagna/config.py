"""Where a yagna is: its base URL, the app key, and yapapi's optional per-API URLs.

yapapi's `ApiConfig` lets each REST API (market, payment, activity, net) live at its own
base URL (`YAGNA_MARKET_URL`, ...), falling back to `YAGNA_API_URL` + the API's usual path;
`YagnaConfig.url(path)` is the one place that decision is made for every request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from golem_deploy.yagna.errors import YagnaError

__all__ = [
    "ACTIVITY",
    "API_URL_VARIABLES",
    "DEFAULT_API_URL",
    "MARKET",
    "NET",
    "PAYMENT",
    "YagnaConfig",
    "per_api_urls_from_env",
]

DEFAULT_API_URL = "http://127.0.0.1:7465"
MARKET = "/market-api/v1"
ACTIVITY = "/activity-api/v1"
PAYMENT = "/payment-api/v1"
NET = "/net-api/v1"

#: The per-API URL variables yapapi's ApiConfig reads, by the path prefix each one replaces.
API_URL_VARIABLES = {
    MARKET: "YAGNA_MARKET_URL",
    PAYMENT: "YAGNA_PAYMENT_URL",
    ACTIVITY: "YAGNA_ACTIVITY_URL",
    NET: "YAGNA_NET_URL",
}


@dataclass(frozen=True)
class YagnaConfig:
    """Where yagna is and how to authenticate. The key is excluded from repr.

    `market_url`, `payment_url`, `activity_url` and `net_url` are yapapi's per-API URLs: the
    full base of that API (e.g. `http://host:7465/market-api/v1`), used instead of
    `api_url` + the API's usual path when set (a proxy in front of one API, say)."""

    api_url: str = DEFAULT_API_URL
    app_key: str = field(default="", repr=False)
    market_url: str | None = None
    payment_url: str | None = None
    activity_url: str | None = None
    net_url: str | None = None

    @classmethod
    def from_env(cls, api_url: str | None = None, app_key: str | None = None) -> YagnaConfig:
        """Explicit values win; else YAGNA_API_URL / YAGNA_APPKEY, as yapapi reads them.

        The per-API variables (YAGNA_MARKET_URL, YAGNA_PAYMENT_URL, YAGNA_ACTIVITY_URL,
        YAGNA_NET_URL) describe the yagna that YAGNA_API_URL names, so they apply when the
        engine talks to that yagna: always when `api_url` is not given, and when it is given
        and equal to YAGNA_API_URL (or the default). A different explicit `api_url` (the
        embedded local network's, say) is another yagna, and they are not applied to it."""
        env_url = (os.environ.get("YAGNA_API_URL") or DEFAULT_API_URL).rstrip("/")
        url = (api_url or env_url).rstrip("/")
        key = app_key or os.environ.get("YAGNA_APPKEY") or ""
        if not key:
            raise YagnaError(
                "no app key",
                "configuration",
                hint="set YAGNA_APPKEY (see `yagna app-key list`) or pass app_key=",
            )
        return cls.for_yagna(url, key)

    @classmethod
    def for_yagna(cls, api_url: str, app_key: str) -> YagnaConfig:
        """The configuration of the yagna at `api_url`: with the environment's per-API
        URLs when it is the yagna YAGNA_API_URL names (see `from_env`), else without."""
        url = api_url.rstrip("/")
        env_url = (os.environ.get("YAGNA_API_URL") or DEFAULT_API_URL).rstrip("/")
        per_api = per_api_urls_from_env() if url == env_url else {}
        return cls(api_url=url, app_key=app_key, **per_api)

    def base_of(self, prefix: str) -> str:
        """The base URL of the API at `prefix` (MARKET, PAYMENT, ACTIVITY or NET)."""
        override = {
            MARKET: self.market_url,
            PAYMENT: self.payment_url,
            ACTIVITY: self.activity_url,
            NET: self.net_url,
        }.get(prefix)
        return override.rstrip("/") if override else self.api_url + prefix

    @property
    def uses_tls(self) -> bool:
        """Whether any of the URLs is `https://` (the client then brings a CA-loaded SSL
        context of its own, see YagnaClient and supervisor/tls_deferred.py)."""
        urls = (self.api_url, self.market_url, self.payment_url, self.activity_url, self.net_url)
        return any(u is not None and u.lower().startswith("https:") for u in urls)

    def url(self, path: str) -> str:
        """The full URL of `path` (`/market-api/v1/demands`, ...), honouring per-API URLs."""
        for prefix in API_URL_VARIABLES:
            if path == prefix or path.startswith(prefix + "/"):
                return self.base_of(prefix) + path[len(prefix) :]
        return self.api_url + path


def per_api_urls_from_env() -> dict[str, str]:
    """`YagnaConfig` keyword arguments from the per-API URL variables that are set."""
    names = {
        MARKET: "market_url",
        PAYMENT: "payment_url",
        ACTIVITY: "activity_url",
        NET: "net_url",
    }
    found: dict[str, str] = {}
    for prefix, variable in API_URL_VARIABLES.items():
        value = os.environ.get(variable, "").strip()
        if value:
            found[names[prefix]] = value.rstrip("/")
    return found
