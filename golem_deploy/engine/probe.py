"""Health probes over the VPN, sent from the requestor's side: an HTTP GET or a TCP connect.

Both go through yagna's Net API: a WebSocket on ``/net/{id}/tcp/{ip}/{port}`` is one TCP
connection from the requestor's own VPN stack to the instance. yagna connects before it
upgrades, so a refused or unreachable port is an HTTP error on the upgrade itself: the TCP
probe is healthy exactly when the WebSocket opens.

yagna 0.17.6 never closes the WebSocket when the service closes its side, so the HTTP probe
cannot read "until the end": it sends ``Connection: close`` (good manners) but stops reading
as soon as it has the status line. The caller bounds every probe with the health check's
timeout.
"""

from __future__ import annotations

import contextlib

import aiohttp
import anyio

from golem_deploy.engine.config import HttpProbe
from golem_deploy.yagna.errors import YagnaError
from golem_deploy.yagna.net import NetApi

__all__ = ["MAX_STATUS_LINE", "http_probe", "http_request", "status_code", "tcp_probe"]

MAX_STATUS_LINE = 8192  # more than this without a line break is not HTTP
CLOSE_PATIENCE = 2.0  # seconds to wait for yagna to acknowledge closing the WebSocket

Verdict = tuple[bool, str]  # (healthy, what to report)


def http_request(path: str, host: str, port: int) -> bytes:
    """The probe's request: a GET that asks the server to close the connection after it."""
    target = path if path.startswith("/") else f"/{path}"
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: golem-deploy-healthcheck"
        "\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


def status_code(head: bytes) -> int | None:
    """The status code of the response's status line (``HTTP/1.1 200 OK``) at the start of
    ``head``; None when that line is not complete yet or is not an HTTP status line."""
    line, newline, _ = head.partition(b"\n")
    if not newline:
        return None
    parts = line.rstrip(b"\r").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return None
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        return None
    return int(code)


def http_verdict(head: bytes, probe: HttpProbe) -> Verdict:
    """Healthy on a 2xx/3xx status; what else came back says why not."""
    code = status_code(head)
    if code is None:
        shown = head[:60].decode("latin-1", "replace").strip() or "nothing"
        return False, f"GET {probe.path} on port {probe.port}: not an HTTP answer ({shown!r})"
    return 200 <= code < 400, f"GET {probe.path} on port {probe.port}: HTTP {code}"


async def tcp_probe(api: NetApi, network_id: str, ip: str, port: int) -> Verdict:
    """Healthy when ``ip:port`` accepts a TCP connection over the VPN."""
    try:
        ws = await api.connect_tcp(network_id, ip, port)
    except aiohttp.WSServerHandshakeError as e:
        return False, f"port {port} does not accept connections (yagna: HTTP {e.status})"
    except (aiohttp.ClientError, YagnaError) as e:
        return False, f"port {port}: {e or type(e).__name__}"
    await _close(ws)
    return True, f"port {port} accepts connections"


async def http_probe(api: NetApi, network_id: str, ip: str, probe: HttpProbe) -> Verdict:
    """GET ``probe.path`` from ``ip:probe.port``; healthy on a 2xx/3xx status line."""
    try:
        ws = await api.connect_tcp(network_id, ip, probe.port)
    except aiohttp.WSServerHandshakeError as e:
        return False, f"port {probe.port} does not accept connections (yagna: HTTP {e.status})"
    except (aiohttp.ClientError, YagnaError) as e:
        return False, f"port {probe.port}: {e or type(e).__name__}"
    head = b""
    try:
        await ws.send_bytes(http_request(probe.path, ip, probe.port))
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                head += message.data
            elif message.type == aiohttp.WSMsgType.TEXT:
                head += message.data.encode()
            else:
                break
            if b"\n" in head or len(head) > MAX_STATUS_LINE:
                break
    except (aiohttp.ClientError, ConnectionError) as e:
        return False, f"GET {probe.path} on port {probe.port}: {e or type(e).__name__}"
    finally:
        await _close(ws)
    return http_verdict(head, probe)


async def _close(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Close our side, without waiting long for yagna's acknowledgement."""
    with (
        anyio.CancelScope(shield=True),
        anyio.move_on_after(CLOSE_PATIENCE),
        contextlib.suppress(Exception),
    ):
        await ws.close()
