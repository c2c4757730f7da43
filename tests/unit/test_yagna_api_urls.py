"""yapapi's per-API URLs (YAGNA_MARKET_URL, ..., `ApiConfig`): which base every request uses,
and when the environment's per-API variables apply. The wire is covered by
tests/integration/test_engine_yapapi_events.py (a real yagna behind a path-rewriting proxy)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from golem_deploy.engine import ApiConfig, EngineError, Golem, MissingConfiguration
from golem_deploy.yagna.client import YagnaClient, YagnaConfig
from golem_deploy.yagna.config import API_URL_VARIABLES
from golem_deploy.yagna.net import NetApi

ALL_VARS = ("YAGNA_APPKEY", "YAGNA_API_URL", *API_URL_VARIABLES.values())


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_VARS:
        monkeypatch.delenv(name, raising=False)


def test_without_per_api_urls_every_api_is_under_api_url() -> None:
    cfg = YagnaConfig(api_url="http://y:1", app_key="k")
    assert cfg.url("/market-api/v1/demands") == "http://y:1/market-api/v1/demands"
    assert cfg.url("/me") == "http://y:1/me"
    assert cfg.url("/gsb-api/v1/services") == "http://y:1/gsb-api/v1/services"


def test_a_per_api_url_replaces_that_apis_base_only() -> None:
    cfg = YagnaConfig(
        api_url="http://y:1",
        app_key="k",
        market_url="http://m:2/mkt",
        payment_url="http://p:3/pay",
        activity_url="http://a:4/act",
        net_url="https://n:5/net-api/v1",
    )
    assert cfg.url("/market-api/v1/demands/x/events") == "http://m:2/mkt/demands/x/events"
    assert cfg.url("/payment-api/v1/allocations") == "http://p:3/pay/allocations"
    assert cfg.url("/activity-api/v1/activity") == "http://a:4/act/activity"
    assert cfg.url("/net-api/v1/net") == "https://n:5/net-api/v1/net"
    assert cfg.url("/me") == "http://y:1/me"  # identity, gsb-api: no per-API URL in yapapi
    assert cfg.url("/market-api/v10") == "http://y:1/market-api/v10"  # a prefix, not a path
    client = YagnaClient(cfg)
    assert NetApi(client).tcp_url("n1", "10.0.0.2", 80) == (
        "wss://n:5/net-api/v1/net/n1/tcp/10.0.0.2/80"
    )


def test_the_environments_per_api_urls_go_with_the_environments_yagna(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YAGNA_APPKEY", "k")
    monkeypatch.setenv("YAGNA_MARKET_URL", "http://m:2/mkt/")
    monkeypatch.setenv("YAGNA_ACTIVITY_URL", "http://a:4/act")
    cfg = YagnaConfig.from_env()
    assert (cfg.market_url, cfg.activity_url, cfg.payment_url) == (
        "http://m:2/mkt",
        "http://a:4/act",
        None,
    )
    # the same yagna named explicitly (what the supervisor does with YAGNA_API_URL)
    assert YagnaConfig.from_env("http://127.0.0.1:7465/").market_url == "http://m:2/mkt"
    # another yagna (the embedded local network's): the variables are not about it
    other = YagnaConfig.from_env("http://127.0.0.1:5555")
    assert other.market_url is None and other.activity_url is None
    assert other.url("/market-api/v1/demands") == "http://127.0.0.1:5555/market-api/v1/demands"
    # what doctor, plan and down's recovery use: the same rule
    assert YagnaConfig.for_yagna("http://127.0.0.1:7465", "k").activity_url == "http://a:4/act"
    assert YagnaConfig.for_yagna("http://127.0.0.1:5555", "k").activity_url is None


def test_api_config_reads_yapapis_variables_and_refuses_a_missing_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(MissingConfiguration, match="no app key") as err:
        ApiConfig()
    assert err.value.hint and "YAGNA_APPKEY" in err.value.hint
    monkeypatch.setenv("YAGNA_APPKEY", "s3cret")
    monkeypatch.setenv("YAGNA_PAYMENT_URL", "http://p:3/pay")
    monkeypatch.setenv("YAGNA_NET_URL", "http://n:5/net")
    cfg = ApiConfig()
    assert cfg.api_url == "http://127.0.0.1:7465" and "s3cret" not in repr(cfg)
    yc = cfg.yagna_config()
    assert (yc.payment_url, yc.net_url, yc.market_url) == ("http://p:3/pay", "http://n:5/net", None)
    explicit = ApiConfig(app_key="k", api_url="http://y:1/", market_url="http://m/x/")
    assert explicit.yagna_config().url("/market-api/v1/demands") == "http://m/x/demands"
    assert explicit.yagna_config().api_url == "http://y:1"


def test_golem_refuses_api_config_with_api_url_or_app_key() -> None:
    with pytest.raises(EngineError, match="api_config and api_url/app_key"):
        Golem(budget=1, api_config=ApiConfig(app_key="k"), app_key="k")


@pytest.fixture
async def recording_server() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response("sub-1")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


@pytest.mark.anyio
async def test_the_client_sends_each_request_to_its_apis_base(
    recording_server: tuple[str, list[str]],
) -> None:
    url, seen = recording_server
    cfg = YagnaConfig(api_url="http://127.0.0.1:9", app_key="k", market_url=f"{url}/mkt")
    async with YagnaClient(cfg, retries=1) as c:
        assert await c.subscribe_demand({}, "()") == "sub-1"
    assert seen == ["/mkt/demands"]
