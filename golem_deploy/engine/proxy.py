"""Forward a local TCP port into a Golem VPN: what makes a deployed service reachable.

Every connection accepted on the local port becomes one WebSocket to yagna's
``/net-api/v1/net/{id}/tcp/{ip}/{port}`` (a TCP connection from the requestor's own VPN
stack to an instance), and bytes are piped both ways until either side closes. Instances are
picked round robin among those currently running; when yagna cannot connect to one (its
provider died: 504 after yagna's 5 s connect timeout) the next is tried, and when none
answers they are tried again for up to CONNECT_PATIENCE seconds. With no running instance
the connection is closed at once and counted -- never left hanging.

A limit of yagna 0.17.6: when the service closes a connection, yagna does not close the
WebSocket, so the client learns of it only from the protocol itself (a Content-Length, a
chunked end, a reply per request) or when it closes its own side -- which closes ours and
yagna's. Protocols that end a response by closing the connection (HTTP/1.0 without
Content-Length) therefore wait for the client's timeout.

The same limit would leave a client hanging forever when an instance's provider vanishes
mid-connection: nothing closes the WebSocket, and no byte ever comes. So the proxy watches
``targets()`` while connections are open, and aborts (TCP reset, so no protocol mistakes it
for a complete answer) every connection whose instance is no longer listed as running.

This is yapapi's ``LocalHttpProxy`` for any TCP protocol (``draining()``, when given, lists
instances that get no new connection but keep the ones they serve); the supervisor runs one per
forwarded port, and Python users can run it themselves::

    async with anyio.create_task_group() as tg:
        proxy = TcpProxy(net_api, network.network_id, 8000, lambda: ["192.168.0.2"])
        port = await tg.start(proxy.serve, "127.0.0.1", 8080)
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
import anyio
from anyio.abc import SocketStream, TaskStatus

from golem_deploy.engine.connections import Connections
from golem_deploy.errors import GolemDeployError
from golem_deploy.yagna.errors import YagnaError
from golem_deploy.yagna.net import NetApi

__all__ = ["PortInUse", "ProxyStats", "TcpProxy"]

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
DEPARTED_POLL = 0.5
"""Seconds between looks at ``targets()`` for instances that stopped running while
connections to them are open (an instance needs far longer to be replaced at its address)."""


CONNECT_PATIENCE = 20.0
"""Seconds a new connection keeps trying the running instances when none answers: yagna's
Net API sometimes fails connections to an instance for 5-10 s (a 504 after its 5 s connect
timeout; on the local network seen right after another instance left the VPN), and a
renewal's replacement takes over within seconds."""
CONNECT_RETRY_PAUSE = 0.5


class PortInUse(GolemDeployError):
    """The local port of a forwarded port cannot be bound."""


@dataclass
class ProxyStats:
    accepted: int = 0
    refused: int = 0  # closed at once: no running instance could be reached
    active: int = 0
    aborted: int = 0  # reset because their instance stopped running


class TcpProxy:
    """Pipes connections on a local port to ``port`` of the instances ``targets()`` lists."""

    def __init__(
        self,
        api: NetApi,
        network_id: str | Callable[[], str],
        port: int,
        targets: Callable[[], Sequence[str]],
        draining: Callable[[], Sequence[str]] = lambda: (),
        connections: Connections | None = None,
    ) -> None:
        self.api = api
        # a function when the network may be re-created under the proxy (a new id)
        self._network_id = network_id
        self.port = port
        self.targets = targets
        # instances that take no new connection but finish the ones they have (an instance
        # a renewal replaced, before it stops: engine/replace.py)
        self.draining = draining
        # shared with the network: a replacement waits until its old instance serves none
        self.connections = connections or Connections()
        self.stats = ProxyStats()
        self._next = 0
        self._open: dict[str, set[anyio.CancelScope]] = {}  # per target address

    @property
    def network_id(self) -> str:
        network_id = self._network_id
        return network_id if isinstance(network_id, str) else network_id()

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
        async with listener, anyio.create_task_group() as tg:
            bound = listener.extra(anyio.abc.SocketAttribute.local_port)
            tg.start_soon(self._abort_departed)
            task_status.started(bound)
            await listener.serve(self._handle)

    async def _abort_departed(self) -> None:
        """Abort the open connections of every instance that left ``targets()``."""
        while True:
            await anyio.sleep(DEPARTED_POLL)
            if not self._open:
                continue
            running = {*self.targets(), *self.draining()}
            for ip, scopes in self._open.items():
                if ip not in running:
                    for scope in scopes:
                        scope.cancel()

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
            connected = await self._connect()
            if connected is None:
                self.stats.refused += 1
                return
            ip, ws = connected
            departed = anyio.CancelScope()  # cancelled when the instance stops running
            self._open.setdefault(ip, set()).add(departed)
            self.stats.active += 1
            try:
                with departed:
                    async with anyio.create_task_group() as tg:

                        async def until_closed(pipe: Awaitable[None]) -> None:
                            await pipe
                            tg.cancel_scope.cancel()  # one side is done: so is the connection

                        tg.start_soon(until_closed, _to_vpn(client, ws))
                        tg.start_soon(until_closed, _from_vpn(ws, client))
                if departed.cancel_called:
                    log.info("%s:%d stopped running: connection reset", ip, self.port)
                    self.stats.aborted += 1
                    _reset_on_close(client)
            finally:
                self.stats.active -= 1
                self.connections.closed(ip)
                scopes = self._open.get(ip, set())
                scopes.discard(departed)
                if not scopes:
                    self._open.pop(ip, None)
                with anyio.CancelScope(shield=True):
                    with contextlib.suppress(Exception):
                        await client.aclose()  # the client first: it must not wait for yagna
                    with contextlib.suppress(Exception):
                        await ws.close()

    async def _connect(self) -> tuple[str, aiohttp.ClientWebSocketResponse] | None:
        """A WebSocket to the first running instance that answers. When none does, the
        running instances are tried again (they are listed anew: a renewal's replacement
        may have taken over) for CONNECT_PATIENCE seconds, so a short outage is a slow
        answer rather than a refused connection; nothing running: None at once."""
        deadline = anyio.current_time() + CONNECT_PATIENCE
        while True:
            candidates = self._candidates()
            if not candidates:
                return None
            for ip in candidates:
                self.connections.opened(ip)  # counted from the choice: it is being served
                try:
                    with anyio.fail_after(15):
                        return ip, await self.api.connect_tcp(self.network_id, ip, self.port)
                except (aiohttp.ClientError, YagnaError, TimeoutError) as e:
                    log.info("forward to %s:%d failed (%s), trying the next", ip, self.port, e)
                except BaseException:
                    self.connections.closed(ip)
                    raise
                self.connections.closed(ip)
            if anyio.current_time() >= deadline:
                return None
            await anyio.sleep(CONNECT_RETRY_PAUSE)


def _reset_on_close(client: SocketStream) -> None:
    """Make closing ``client`` a TCP reset (SO_LINGER 0): an aborted transfer must not look
    like a finished one to a protocol that ends its answer by closing."""
    raw = client.extra(anyio.abc.SocketAttribute.raw_socket)
    with contextlib.suppress(OSError):
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


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
