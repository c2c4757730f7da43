"""The client's failure handling against a deliberately misbehaving HTTP endpoint.

This is not a yagna stand-in: a tiny loopback server answers with exactly the kinds of
trouble the client must survive (bad JSON, huge bodies, errors, intermittent 408/504, a
server that never answers), so each can be checked once. The protocol itself is exercised
against real yagna in tests/integration/test_engine*.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest
from aiohttp import web

from golem_deploy.yagna import (
    ActivityGone,
    YagnaBadAnswer,
    YagnaClient,
    YagnaConfig,
    YagnaError,
    YagnaStatusError,
    YagnaUnreachable,
)
from golem_deploy.yagna.client import MAX_BODY

pytestmark = pytest.mark.anyio


class Hostile:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.auth: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.calls[path] = self.calls.get(path, 0) + 1
        self.auth.append(request.headers.get("Authorization", ""))
        n = self.calls[path]
        if path == "/me":
            return web.json_response({"identity": "0xabc", "name": "r"})
        if path == "/notjson":
            return web.Response(text="<html>oops</html>")
        if path == "/huge":
            return web.Response(body=b"[" + b"0," * (MAX_BODY // 2) + b"0]")
        if path == "/error":
            return web.json_response({"message": "Agreement not found"}, status=404)
        if path.startswith("/activity-api/v1/activity/"):  # what yagna says for a lost ExeUnit
            message = "GSB error: GSB failure: Bad request: endpoint address not found"
            return web.json_response({"message": message}, status=500)
        if path == "/plain401":
            return web.Response(text="Invalid application key", status=401)
        if path == "/flaky":  # two intermittent failures, then success
            if n <= 2:
                return web.json_response({"message": "Timeout"}, status=504 if n == 1 else 408)
            return web.json_response("ok-id")
        if path == "/always504":
            return web.Response(status=504)
        if path == "/slow":
            await anyio.sleep(2)
        if path == "/sse":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for ev in (
                {"batch_id": "b", "index": 0, "timestamp": "t", "kind": {"started": {}}},
                {"batch_id": "b", "index": 0, "timestamp": "t", "kind": {"stdout": "hi\n"}},
                {
                    "batch_id": "b",
                    "index": 0,
                    "timestamp": "t",
                    "kind": {"finished": {"return_code": 0, "message": None}},
                },
            ):
                await resp.write(f"event: runtime\ndata: {json.dumps(ev)}\nid: 0\n\n".encode())
            await resp.write(b":ping\n")
            await resp.write_eof()
            return resp
        return web.Response(status=500)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Hostile]]:
    h = Hostile()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", h.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", h
    finally:
        await runner.cleanup()


def client(url: str) -> YagnaClient:
    return YagnaClient(YagnaConfig(api_url=url, app_key="k3y"), backoff=0.01)


async def test_auth_header_and_identity(server: tuple[str, Hostile]) -> None:
    url, h = server
    async with client(url) as c:
        me = await c.me()
    assert me.node_id == "0xabc"
    assert h.auth == ["Bearer k3y"]
    assert "k3y" not in repr(c)


async def test_bad_json_is_a_clear_error(server: tuple[str, Hostile]) -> None:
    url, _ = server
    async with client(url) as c:
        with pytest.raises(YagnaBadAnswer, match="answer is not JSON: '<html>oops</html>'"):
            await c.request("GET", "/notjson")


async def test_huge_body_is_refused(server: tuple[str, Hostile]) -> None:
    url, _ = server
    async with client(url) as c:
        with pytest.raises(YagnaBadAnswer, match=r"larger than|too large"):
            await c.request("GET", "/huge")


async def test_error_status_carries_status_message_and_request(
    server: tuple[str, Hostile],
) -> None:
    url, h = server
    async with client(url) as c:
        with pytest.raises(YagnaStatusError) as err:
            await c.request("GET", "/error")
        assert (err.value.status, err.value.detail, err.value.request) == (
            404,
            "Agreement not found",
            "GET /error",
        )
        assert h.calls["/error"] == 1  # not retried
        with pytest.raises(YagnaStatusError) as err:
            await c.request("GET", "/plain401")
        assert err.value.detail == "Invalid application key"
        assert err.value.hint and "YAGNA_APPKEY" in err.value.hint
        assert "k3y" not in str(err.value)


async def test_intermittent_errors_are_retried_then_given_up(
    server: tuple[str, Hostile],
) -> None:
    url, h = server
    async with client(url) as c:
        assert (await c.request("GET", "/flaky"))[1] == "ok-id"
        assert h.calls["/flaky"] == 3
        with pytest.raises(YagnaStatusError) as err:
            await c.request("GET", "/always504")
        assert err.value.status == 504 and h.calls["/always504"] == c.retries


async def test_a_silent_server_times_out_instead_of_hanging(server: tuple[str, Hostile]) -> None:
    url, _ = server
    c = YagnaClient(YagnaConfig(api_url=url, app_key="k"), retries=2, backoff=0.01)
    async with c:
        with anyio.fail_after(5), pytest.raises(YagnaUnreachable, match=r"no answer within 0\.3 s"):
            await c.request("GET", "/slow", timeout=0.3)


async def test_unreachable_yagna_says_so(server: tuple[str, Hostile]) -> None:
    c = YagnaClient(YagnaConfig(api_url="http://127.0.0.1:9", app_key="k"), retries=1)
    async with c:
        with pytest.raises(YagnaUnreachable, match="connection failed") as err:
            await c.me()
    assert err.value.hint and "yagna" in err.value.hint


async def test_sse_stream_parses_runtime_events(server: tuple[str, Hostile]) -> None:
    url, _ = server
    async with client(url) as c:
        got = [(ev.kind, ev.text, ev.return_code) async for ev in c.sse("/sse")]
    assert got == [("started", None, None), ("stdout", "hi\n", None), ("finished", None, 0)]


async def test_requests_that_must_not_repeat_are_not_retried(
    server: tuple[str, Hostile],
) -> None:
    """Creating an activity or a batch twice would be worse than failing once."""
    url, h = server
    async with client(url) as c:
        with pytest.raises(YagnaStatusError) as err:
            await c.request("POST", "/flaky", body={}, retry=False)
        assert err.value.status == 504 and h.calls["/flaky"] == 1
        # a long poll's 408 means "nothing yet", not an error
        assert await c.request("POST", "/flaky", retry=False, poll=True) == (408, None)


async def test_a_lost_exeunit_is_activity_gone_and_other_errors_are_not(
    server: tuple[str, Hostile],
) -> None:
    """The caller learns "the provider's side is gone" from the type, never from the text;
    the same text on another API, or another status error on an activity, is not that."""
    url, _ = server
    async with client(url) as c:
        with pytest.raises(ActivityGone) as gone:
            await c.exec("a1", [{"terminate": {}}])
        assert gone.value.status == 500 and "endpoint address not found" in gone.value.detail
        with pytest.raises(ActivityGone):
            await c.exec_results("a1", "b1", timeout=0.1)
        with pytest.raises(YagnaStatusError) as other:
            await c.request("GET", "/error")
        assert not isinstance(other.value, ActivityGone)
    assert issubclass(ActivityGone, YagnaError) and issubclass(YagnaUnreachable, YagnaError)
