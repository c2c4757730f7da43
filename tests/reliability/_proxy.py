"""A loopback HTTP(+websocket) proxy in front of a real yagna that injects faults on demand.

    proxy = FaultyProxy("http://127.0.0.1:7465"); proxy.start()
    proxy.add(Rule("POST", r"/market-api/v1/agreements$", "drop_after", times=1))
    proxy.outage(6.0)          # every request dropped for 6 s: yagna "restarting"
    ...
    proxy.stop()

Modes: `error` answers 500 without asking yagna; `drop` closes the connection before yagna
sees the request; `drop_after` lets yagna do the work, then closes the connection before the
answer (the nastiest case: did it happen or not?); `garbage` answers 200 with a body that is
not JSON; `huge` answers 200 with 32 MiB. Everything else is passed through, streamed (SSE
event streams work) and websockets are bridged (the engine's GFTP over gsb-api).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from golem_deploy import localnet

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "upgrade"}


@dataclass
class Rule:
    method: str  # "*" for any
    path: str  # regex searched in the path
    mode: str  # error | drop | drop_after | garbage | huge
    times: int = 1  # how many matching requests get the fault
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.hits < self.times
            and self.method in ("*", method)
            and re.search(self.path, path) is not None
        )


@dataclass
class FaultyProxy:
    target: str
    rules: list[Rule] = field(default_factory=list)
    injected: list[tuple[str, str, str]] = field(default_factory=list)  # (mode, method, path)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _outage_until: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    url: str = ""

    def add(self, rule: Rule) -> None:
        with self._lock:
            self.rules.append(rule)

    def outage(self, seconds: float) -> None:
        """Drop every connection for `seconds` from now (yagna down / restarting)."""
        self._outage_until = time.monotonic() + seconds

    def outage_active(self) -> bool:
        return time.monotonic() < self._outage_until

    def _fault_for(self, method: str, path: str) -> str | None:
        with self._lock:
            self.requests.append((method, path))
            if time.monotonic() < self._outage_until:
                self.injected.append(("drop", method, path))
                return "drop"
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    self.injected.append((rule.mode, method, path))
                    return rule.mode
        return None

    # ---- serving --------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self._serve(ready))

        self._thread = threading.Thread(target=run, name="faulty-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the proxy did not start")

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            self._session = session
            ready.set()
            await self._stop.wait()
            await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._bridge(request)
        fault = self._fault_for(request.method, path)
        if fault == "drop":
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # nothing more to say on a closed connection
        if fault == "error":
            return web.json_response({"message": "injected fault"}, status=500)
        if fault == "garbage":
            return web.Response(status=200, text="<html>not json", content_type="text/html")
        if fault == "huge":
            return web.Response(
                status=200,
                body=b"[" + b"0," * (16 * 1024 * 1024) + b"0]",
                content_type="application/json",
            )
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._session.request(
            request.method,
            self.target + request.rel_url.path_qs,
            data=body or None,
            headers=headers,
        ) as upstream:
            if fault == "drop_after":
                await upstream.read()  # yagna did the work; the caller never hears of it
                assert request.transport is not None
                request.transport.close()
                raise asyncio.CancelledError
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_HEADERS:
                    response.headers[key] = value
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _bridge(self, request: web.Request) -> web.WebSocketResponse:
        protocols = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        server = web.WebSocketResponse(protocols=protocols, max_msg_size=0)
        headers = {"Authorization": request.headers.get("Authorization", "")}
        upstream = await self._session.ws_connect(
            self.target + request.rel_url.path_qs,
            protocols=protocols,
            headers=headers,
            max_msg_size=0,
        )
        await server.prepare(request)

        async def pump(src: Any, dst: Any) -> None:
            async for message in src:
                if message.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(message.data)
                elif message.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(message.data)
                else:
                    break
            await dst.close()

        await asyncio.gather(pump(server, upstream), pump(upstream, server), return_exceptions=True)
        return server


@contextlib.contextmanager
def proxied_network(
    env: dict[str, str], providers: int, prefix: str
) -> Iterator[tuple[FaultyProxy, localnet.LocalNetInfo]]:
    """A local network owned by the test, reached by the CLI (`env`) only through a
    FaultyProxy; stopped and removed at exit."""
    state_dir = Path(tempfile.mkdtemp(prefix=prefix))
    info = localnet.start(state_dir, providers=providers, timeout=90.0)
    proxy = FaultyProxy(info.api_url)
    try:
        proxy.start()
        env.update(info.env())
        env["YAGNA_API_URL"] = proxy.url
        yield proxy, info
    finally:
        proxy.stop()
        localnet.stop(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
