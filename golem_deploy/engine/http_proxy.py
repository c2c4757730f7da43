"""yapapi's local HTTP proxy (`yapapi.contrib.service.http_proxy`), for ported programs.

`LocalHttpProxy(cluster, port)` listens on a local port and hands each HTTP request to the
next running instance of the cluster (round robin), whose `HttpProxyService.handle_request`
sends it through yagna's Net API (one TCP connection per request over the WebSocket
`/net-api/v1/net/{id}/tcp/{ip}/{port}`, as yapapi does) to `remote_port` inside the
provider's VPN node, and answers with what comes back.

yagna 0.17.6 never closes that WebSocket when the service closes its side (engine/proxy.py),
so a response ends where HTTP says it ends: after `Content-Length` bytes, or the last chunk
of a chunked body; a response with neither is cut at `response_timeout`. For any other TCP
protocol, or for streaming, `engine/proxy.py`'s `TcpProxy` forwards raw connections.

Differences from yapapi's, each for a reason: the proxy listens on 127.0.0.1 only (a way
into your VPN should not open to your LAN unasked); every request goes with
`Connection: close` (its connection carries only that request, and since yagna does not
pass our WebSocket's close on, a kept-alive connection would hold a one-connection-at-a-time
server until its idle timeout); and a request that reaches no instance, or gets no complete
answer, is a 502/503/504 with the reason, not a blanket 500.
"""

from __future__ import annotations

import contextlib
import logging

import aiohttp
import anyio
from aiohttp import web
from multidict import CIMultiDict

from golem_deploy.engine.cluster import Cluster
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.service import Service
from golem_deploy.yagna.errors import YagnaError

__all__ = ["DEFAULT_MAX_REQUEST_SIZE", "DEFAULT_TIMEOUT", "HttpProxyService", "LocalHttpProxy"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_REQUEST_SIZE = 128 * 1024**2
WEBSOCKET_CHUNK_LIMIT = 2**16
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class BadResponse(Exception):
    """The service's answer is not a complete HTTP response."""


class HttpProxyService(Service):
    """A service reached over HTTP through a `LocalHttpProxy` (yapapi's base class).

    `remote_port`: where the service listens inside the VM; `remote_host`: the `Host`
    header to send (default: the incoming request's); `response_timeout`: seconds to wait
    for a complete response."""

    def __init__(
        self,
        remote_port: int = 80,
        remote_host: str | None = None,
        response_timeout: float = DEFAULT_TIMEOUT,
        **params: object,
    ) -> None:
        super().__init__(**params)  # type: ignore[arg-type]
        self._remote_port = remote_port
        self._remote_host = remote_host
        self._remote_response_timeout = response_timeout

    async def handle_request(self, request: web.Request) -> web.Response:
        """Send `request` to this instance's `remote_port` and return its response."""
        node = self.network_node
        if node is None:
            return web.Response(status=503, text="The service instance is not on a network.")
        headers = "".join(
            f"{k}: {self._remote_host if k.lower() == 'host' and self._remote_host else v}\r\n"
            for k, v in request.headers.items()
            if k.lower() not in ("connection", "keep-alive")
        )
        headers += "Connection: close\r\n"  # one request per connection (see module doc)
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        raw = f"{request.method} {request.path_qs} {version}\r\n{headers}\r\n".encode("latin-1")
        if request.can_read_body:
            raw += await request.read()
        log.info("request %s %s to %s", request.method, request.path_qs, node.ip)
        network = node.network
        try:
            ws = await network.api.connect_tcp(network.network_id, node.ip, self._remote_port)
        except (aiohttp.ClientError, YagnaError) as e:
            return web.Response(status=502, text=f"Cannot reach the service instance: {e}")
        try:
            for start in range(0, len(raw), WEBSOCKET_CHUNK_LIMIT):
                await ws.send_bytes(raw[start : start + WEBSOCKET_CHUNK_LIMIT])
            with anyio.fail_after(self._remote_response_timeout):
                return await _read_response(ws)
        except TimeoutError:
            return web.Response(status=504, text="The service instance did not answer in time.")
        except BadResponse as e:
            return web.Response(status=502, text=f"Bad answer from the service instance: {e}")
        finally:
            with anyio.move_on_after(2), contextlib.suppress(Exception):
                await ws.close()  # best effort: yagna may never answer the close


class LocalHttpProxy:
    """A local HTTP server passing requests to the running instances of `cluster`, round
    robin (yapapi's class; `await run()`, then `await stop()`)."""

    def __init__(
        self,
        cluster: Cluster[HttpProxyService],
        port: int,
        max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
    ) -> None:
        self._cluster = cluster
        self._port = port
        self._max_request_size = max_request_size
        self._count = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        running = [i for i in self._cluster.instances if i.state is ServiceState.running]
        if not running:
            return web.Response(status=503, text="No service instances available.")
        instance = running[self._count % len(running)]
        self._count += 1
        return await instance.handle_request(request)

    async def run(self) -> None:
        """Start listening on 127.0.0.1:`port`; returns once it listens."""
        app = web.Application(client_max_size=self._max_request_size)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self._port).start()
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening (requests in progress are cut)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _read_response(ws: aiohttp.ClientWebSocketResponse) -> web.Response:
    """One HTTP response from the WebSocket, ending where its framing says."""
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        buffer += await _next(ws)
    head, _, body = bytes(buffer).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise BadResponse(f"status line {status_line[:100]!r}")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers.add(name.strip(), value.strip())
    content = bytearray(body)
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        while not content.endswith(b"0\r\n\r\n"):
            content += await _next(ws)
        content = bytearray(_dechunk(bytes(content)))
    elif "Content-Length" in headers:
        length = int(headers["Content-Length"])
        while len(content) < length:
            content += await _next(ws)
        del content[length:]
    else:  # no framing: what arrives until the service's side closes (or the timeout)
        try:
            while True:
                content += await _next(ws)
        except BadResponse:
            pass
    kept = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _HOP_BY_HOP)
    return web.Response(status=int(parts[1]), body=bytes(content), headers=kept)


async def _next(ws: aiohttp.ClientWebSocketResponse) -> bytes:
    """The next binary message; BadResponse when the connection ended first."""
    while True:
        message = await ws.receive()
        if message.type == aiohttp.WSMsgType.BINARY:
            return bytes(message.data)
        if message.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.ERROR,
        ):
            raise BadResponse("the connection closed before the response was complete")


def _dechunk(data: bytes) -> bytes:
    """The body of a chunked transfer coding (trailers dropped)."""
    out = bytearray()
    rest = data
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        rest = rest[size + 2 :]
