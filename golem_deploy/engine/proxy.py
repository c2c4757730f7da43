"""Forward a local TCP port into a Golem VPN: what makes a deployed service reachable.

Every connection accepted on the local port becomes one WebSocket to yagna's
``/net-api/v1/net/{id}/tcp/{ip}/{port}`` (a TCP connection from the requestor's own VPN
stack to an instance), and bytes are piped both ways until either side closes. Instances are
picked round robin among those currently running; when yagna cannot connect to one (its
provider died: 504 after yagna's 5 s connect timeout) the next is tried. With no running
instance the connection is closed at once and counted -- never left hanging.

A limit of yagna 0.17.6: when the service closes a connection, yagna does not close the
WebSocket, so the client learns of it only from the protocol itself (a Content-Length, a
chunked end, a reply per request) or when it closes its own side -- which closes ours and
yagna's. Protocols that end a response by closing the connection (HTTP/1.0 without
Content-Length) therefore wait for the client's timeout.

This is yapapi's ``LocalHttpProxy`` for any TCP protocol; the supervisor runs one per
forwarded port, and Python users can run it themselves::

    async with anyio.create_task_group() as tg:
        proxy = TcpProxy(net_api, network.network_id, 8000, lambda: ["192.168.0.2"])
        port = await tg.start(proxy.serve, "127.0.0.1", 8080)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
import anyio
from anyio.abc import SocketStream, TaskStatus

from golem_deploy.errors import GolemDeployError
from golem_deploy.yagna.errors import YagnaError
from golem_deploy.yagna.net import NetApi

__all__ = ["PortInUse", "ProxyStats", "TcpProxy"]

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


class PortInUse(GolemDeployError):
    """The local port of a forwarded port cannot be bound."""


@dataclass
class ProxyStats:
    accepted: int = 0
    refused: int = 0  # closed at once: no running instance could be reached
    active: int = 0


class TcpProxy:
    """Pipes connections on a local port to ``port`` of the instances ``targets()`` lists."""

    def __init__(
        self,
        api: NetApi,
        network_id: str,
        port: int,
        targets: Callable[[], Sequence[str]],
    ) -> None:
        self.api = api
        self.network_id = network_id
        self.port = port
        self.targets = targets
        self.stats = ProxyStats()
        self._next = 0

    async def serve(
        self,
        host: str = "127.0.0.1",
        host_port: int = 0,
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:host_port`` (0: any free port) until cancelled.

        Reports the bound port through ``task_status``; PortInUse when it is taken."""
        try:
            listener = await anyio.create_tcp_listener(
                local_host=host, local_port=host_port, reuse_port=False
            )
        except OSError as e:
            raise PortInUse(
                f"cannot listen on {host}:{host_port}: {e.strerror or e}",
                hint="another program uses that port: pick another one in `ports`",
            ) from e
        async with listener:
            bound = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started(bound)
            await listener.serve(self._handle)

    def _candidates(self) -> list[str]:
        """Every running target once, starting with the next in round-robin order."""
        targets = list(self.targets())
        if not targets:
            return []
        start = self._next % len(targets)
        self._next += 1
        return targets[start:] + targets[:start]

    async def _handle(self, client: SocketStream) -> None:
        self.stats.accepted += 1
        async with client:
            ws = await self._connect()
            if ws is None:
                self.stats.refused += 1
                return
            self.stats.active += 1
            try:
                async with anyio.create_task_group() as tg:

                    async def until_closed(pipe: Awaitable[None]) -> None:
                        await pipe
                        tg.cancel_scope.cancel()  # one side is done: so is the connection

                    tg.start_soon(until_closed, _to_vpn(client, ws))
                    tg.start_soon(until_closed, _from_vpn(ws, client))
            finally:
                self.stats.active -= 1
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await ws.close()

    async def _connect(self) -> aiohttp.ClientWebSocketResponse | None:
        for ip in self._candidates():
            try:
                with anyio.fail_after(15):
                    return await self.api.connect_tcp(self.network_id, ip, self.port)
            except (aiohttp.ClientError, YagnaError, TimeoutError) as e:
                log.info("forward to %s:%d failed (%s), trying the next", ip, self.port, e)
        return None


async def _to_vpn(client: SocketStream, ws: aiohttp.ClientWebSocketResponse) -> None:
    """Client bytes into the WebSocket, until the client stops sending."""
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
        while True:
            data = await client.receive(CHUNK)
            await ws.send_bytes(data)


async def _from_vpn(ws: aiohttp.ClientWebSocketResponse, client: SocketStream) -> None:
    """WebSocket messages to the client, until the instance's side closes."""
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                await client.send(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                await client.send(message.data.encode())
            else:
                break
