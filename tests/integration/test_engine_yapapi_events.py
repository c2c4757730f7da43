"""issue 13 A.5, A.6, A.9 and exc_info against the real local network: yapapi-shaped events
reach consumers added with `add_event_consumer` (a failing one does not stop anything), a
failed health check sets `exc_info` as yapapi does, the default summary log, per-API URLs
(a real yagna whose market, activity and payment APIs are reached through a proxy at other
paths), and a `vm.manifest` payload accepted by the local providers."""

from __future__ import annotations

import base64
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import anyio
import pytest
from _engine_helpers import Recorder, _payload, assert_settled, golem_for
from aiohttp import web

from golem_deploy.engine import (
    ApiConfig,
    Golem,
    HealthCheck,
    Service,
    ServiceRunnerError,
    ServiceState,
    vm,
)
from golem_deploy.engine import yapapi_events as ye
from golem_deploy.engine.payload import VmPayload
from golem_deploy.localnet import LocalNetInfo

pytestmark = [pytest.mark.localnet, pytest.mark.anyio]


class Unhealthy(Service):
    """yapapi's hook says the activity never answers: two failed checks end the instance."""

    healthcheck = HealthCheck(interval=0.5, timeout=5.0, retries=2)

    @staticmethod
    async def get_payload() -> VmPayload:
        return await _payload()

    async def is_activity_responsive(self) -> bool:
        return False


async def test_yapapi_events_reach_added_consumers_and_a_failed_health_check_sets_exc_info(
    shared_localnet: LocalNetInfo, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    changes: list[ye.ServiceEvent] = []
    seen: list[ye.Event] = []
    during_stop: list[Any] = []

    def broken(event: ye.Event) -> None:
        raise RuntimeError("a consumer's own bug")

    def on_change(event: Any) -> None:
        changes.append(event)
        if isinstance(event, ye.ServiceStateChanged) and event.new is ServiceState.stopping:
            during_stop.append(event.service.exc_info)

    caplog.set_level(logging.ERROR, "golem_deploy.engine.dispatch")
    async with golem_for(shared_localnet, rec) as golem:
        golem.add_event_consumer(broken)
        golem.add_event_consumer(on_change, ["ServiceStateChanged", ye.ServiceFinished])
        golem.add_event_consumer(seen.append)
        cluster = await golem.run_service(Unhealthy, num_instances=1)
        [inst] = cluster.instances
        with anyio.fail_after(90):
            await cluster.wait_finished()
    transitions = [(e.old, e.new) for e in changes if isinstance(e, ye.ServiceStateChanged)]
    S = ServiceState
    assert transitions == [
        (S.pending, S.starting),
        (S.starting, S.running),
        (S.running, S.stopping),
        (S.stopping, S.terminated),
    ]
    assert all(e.service is inst for e in changes)
    assert isinstance(changes[-1], ye.ServiceFinished)
    # the failed health check: a raised ServiceRunnerError, as yapapi's exc_info ...
    stopping = next(
        e for e in changes if isinstance(e, ye.ServiceStateChanged) and e.new is S.stopping
    )
    assert isinstance(stopping.exception, ServiceRunnerError)
    assert "health check failed after 2 retries" in str(stopping.exception)
    [(kind, error, traceback)] = during_stop
    assert kind is ServiceRunnerError and error is stopping.exception and traceback is not None
    # ... which the clean shutdown clears again, as yapapi's does
    assert inst.exc_info == (None, None, None)
    assert stopping.agr_id is not None and stopping.job_id == cluster.id
    kinds = Counter(type(e).__name__ for e in seen)
    for name in (
        "JobStarted",
        "SubscriptionCreated",
        "AgreementCreated",
        "AgreementConfirmed",
        "ActivityCreated",
        "CommandStarted",
        "CommandExecuted",
        "JobFinished",
        "InvoiceAccepted",
        "ShutdownFinished",
    ):
        assert kinds[name] >= 1, f"no {name} in {sorted(kinds)}"
    assert isinstance(seen[-1], ye.ShutdownFinished)
    assert "a consumer's own bug" in caplog.text  # logged, and nothing else happened
    assert_settled(rec, golem.budget, golem)


# ------------------------------------------------------------------ per-API URLs

PREFIXES = {"mkt": "/market-api/v1", "act": "/activity-api/v1", "pay": "/payment-api/v1"}


@pytest.fixture
async def api_proxy(shared_localnet: LocalNetInfo) -> AsyncIterator[tuple[str, Counter[str]]]:
    """A loopback HTTP proxy: /mkt/... -> yagna's /market-api/v1/..., /act, /pay likewise
    (responses streamed, so live exec output still flows). Counts requests per prefix."""
    counts: Counter[str] = Counter()
    upstream = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def forward(request: web.Request) -> web.StreamResponse:
        api = request.match_info["api"]
        if api not in PREFIXES:
            return web.Response(status=404)
        counts[api] += 1
        url = shared_localnet.api_url + PREFIXES[api] + "/" + request.match_info["tail"]
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with upstream.request(
            request.method,
            url,
            params=request.query,
            data=await request.read(),
            headers=headers,
        ) as answer:
            response = web.StreamResponse(status=answer.status)
            if "Content-Type" in answer.headers:
                response.content_type = answer.headers["Content-Type"].split(";")[0]
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_route("*", "/{api}/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", counts
    finally:
        await runner.cleanup()
        await upstream.close()


MANIFEST = base64.b64encode(b'{"version": "0.1.0", "compManifest": {"version": "0.1.0"}}')


@dataclass(frozen=True, kw_only=True, repr=False)
class Greeted(ye.ActivityEvent):
    """A custom event, as in yapapi's docs (a dataclass here)."""

    greeting: str


class Hello(Service):
    """A manifest payload (yapapi's partner scheme): the local providers run it on the
    sealed host root, as they do a payload without a task package."""

    @staticmethod
    async def get_payload() -> VmPayload:
        return await vm.manifest(
            manifest=MANIFEST.decode(),
            node_descriptor={"nodeDescriptor": {"permissions": {"outbound": "unrestricted"}}},
            capabilities=["inet"],
        )

    async def start(self) -> AsyncIterator[Any]:
        async for script in super().start():
            yield script
        script = self._ctx.new_script()
        said = script.run("/bin/echo", "hello over the proxy")
        yield script
        self.said = (await said).stdout
        self._ctx.emit(Greeted, greeting=self.said.strip())  # type: ignore[arg-type]


async def test_per_api_urls_default_summary_and_a_manifest_payload(
    shared_localnet: LocalNetInfo,
    api_proxy: tuple[str, Counter[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, counts = api_proxy
    info = shared_localnet
    config = ApiConfig(
        app_key=info.app_key,
        api_url=info.api_url,
        market_url=f"{proxy}/mkt",
        activity_url=f"{proxy}/act",
        payment_url=f"{proxy}/pay/",
    )
    caplog.set_level(logging.INFO, "golem_deploy.engine.summary")
    golem = Golem(
        budget=Decimal("5"),
        subnet_tag=info.subnet,
        payment_driver=info.payment_driver,
        payment_network=info.payment_network,
        api_config=config,
    )  # no event_consumer: yapapi's summary log
    greeted: list[Greeted] = []
    golem.add_event_consumer(greeted.append, [Greeted])  # type: ignore[arg-type]
    async with golem:
        cluster = await golem.run_service(Hello, num_instances=1)
        [inst] = cluster.instances
        with anyio.fail_after(90):
            while inst.state is not ServiceState.running:
                await anyio.sleep(0.1)
        assert "hello over the proxy" in inst.said
        await cluster.terminate()
    # the custom event got its context filled in, as yapapi's ctx.emit does
    [event] = greeted
    assert event.greeting == "hello over the proxy" and event.job_id == cluster.id
    assert event.agr_id is not None and event.activity is not None
    # every API the engine used went through its own base URL
    assert counts["mkt"] > 0 and counts["act"] > 0 and counts["pay"] > 0, counts
    for line in (
        "Agreement proposed to provider",
        "Agreement confirmed by provider",
        "Accepted invoice from",
        "Job finished in",
        "Negotiated 1 agreement with 1 provider",
        "Total cost:",
        "Golem engine has shut down",
    ):
        assert line in caplog.text, line
