"""The requestor yagna's memory per VPN TCP connection, by the way the connection is made.

    .venv/bin/python bench/vpn_memory.py [--n 1000] [--variants proxy_http,probe_tcp,...]

Why: in the 1-hour soak (docs/reliability.md) the requestor yagna grew to 7 GB RSS while
about four VPN TCP connections a second went through it. This finds out whether that growth
is per connection, and whether it depends on how the connection is opened and closed.

A local network with one provider is started (requestor = the hub) and a server in a
loopback-only network namespace joins a VPN through the local network's VpnHost (the same
requestor-side path as a deployed instance: yagna's Net API TCP WebSocket, the bus, the
provider's VPN endpoint). Its ports: 8000 answers a request with a Content-Length reply and
then closes (FIN), like `python3 -m http.server`; 8001 answers and never closes; 8002 has no
listener. Then, one batch per variant, `--n` connections are opened and closed one after
another, and the requestor yagna's VmRSS is read before and after each batch (and after a
pause, to see whether it is given back):

- proxy_http: a client GETs through engine/proxy.py's TcpProxy (the soak's client loop);
- probe_tcp: engine/probe.py's tcp_probe on 8000 (the soak's tcp health checks);
- ws_http_close: the GET on a WebSocket of our own, whole answer read, then a close frame;
- ws_no_close_frame: a WebSocket opened and its TCP socket shut down, no close frame;
- ws_http_no_close_frame: the GET, answer read, then shut down without a close frame;
- proxy_hold: as proxy_http, to 8001, whose server never closes (never sends FIN);
- probe_refused: tcp_probe on 8002 (nothing listens: yagna answers an HTTP error);
- probe_dead_node: tcp_probe to an address whose node does not exist (a vanished
  provider: yagna answers 504 after its 5 s connect timeout), 20 at a time, 200 in all.

Prints one JSON object: per variant, RSS before/after (MB), MB per 1000 connections,
seconds per connection, and how many connections the server saw open at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, isolate, load_average, proc_rss_mb

from golem_deploy import localnet
from golem_deploy.engine.network import Network
from golem_deploy.engine.probe import tcp_probe
from golem_deploy.engine.proxy import TcpProxy
from golem_deploy.localnet.daemons import recorded_nodes
from golem_deploy.localnet.node import REQUESTOR
from golem_deploy.localnet.vpn_host import NetSpec, VpnHost
from golem_deploy.yagna.client import YagnaClient, YagnaConfig
from golem_deploy.yagna.net import NetApi

DEAD_IP = "192.168.11.9"  # a node no provider serves: connecting waits for yagna's timeout
DEAD_NODE = "0x" + "de" * 20
DEAD_BATCH = 20
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

SERVER = """
import asyncio, json, sys
REPLY = bytes.fromhex(sys.argv[2])
stats = {"accepted": 0, "open": 0, "eof_seen": 0}
held = []
async def serve(reader, writer, close):
    stats["accepted"] += 1
    stats["open"] += 1
    try:
        data = await reader.read(65536)
        if data:
            writer.write(REPLY)
            await writer.drain()
        else:
            stats["eof_seen"] += 1
        if not close:
            held.append(writer)
            await reader.read(65536)  # waits for the peer's FIN, then still never closes
            return
        writer.close()
    except Exception:
        pass
    finally:
        if close:
            stats["open"] -= 1
async def report():
    while True:
        with open(sys.argv[1], "w") as f:
            json.dump(stats, f)
        await asyncio.sleep(0.5)
async def main():
    await asyncio.start_server(lambda r, w: serve(r, w, True), "0.0.0.0", 8000)
    await asyncio.start_server(lambda r, w: serve(r, w, False), "0.0.0.0", 8001)
    print("listening", flush=True)
    await report()
asyncio.run(main())
"""


def requestor_pid(state_dir: Path) -> int:
    for name, pid, _ in recorded_nodes(state_dir):
        if name == REQUESTOR:
            return pid
    raise SystemExit("no requestor yagna pid recorded")


async def _read_reply_ws(ws: aiohttp.ClientWebSocketResponse) -> None:
    got = b""
    while not got.endswith(b"ok"):
        message = await ws.receive()
        if message.type != aiohttp.WSMsgType.BINARY:
            raise RuntimeError(f"no reply: {message.type}")
        got += message.data


def _shutdown(ws: aiohttp.ClientWebSocketResponse) -> None:
    raw = ws.get_extra_info("socket")
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)


async def _forget(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Let aiohttp clean up after a shut-down socket (nothing reaches yagna any more)."""
    with anyio.move_on_after(1), contextlib.suppress(Exception):
        await ws.close()


def _client_get(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(REQUEST)
        got = b""
        while not got.endswith(b"ok"):
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("closed before the reply")
            got += chunk


def variants(
    api: NetApi, net_id: str, ip: str, proxy_ports: dict[int, int]
) -> dict[str, Callable[[], Awaitable[None]]]:
    async def proxy_http() -> None:
        await anyio.to_thread.run_sync(_client_get, proxy_ports[8000])

    async def proxy_hold() -> None:
        await anyio.to_thread.run_sync(_client_get, proxy_ports[8001])

    async def probe_tcp() -> None:
        ok, message = await tcp_probe(api, net_id, ip, 8000)
        if not ok:
            raise RuntimeError(message)

    async def probe_refused() -> None:
        ok, message = await tcp_probe(api, net_id, ip, 8002)
        if ok:
            raise RuntimeError(message)

    async def probe_dead_node() -> None:
        # 20 at once: each waits for yagna's 5 s connect timeout (a vanished provider)
        async def one() -> None:
            ok, message = await tcp_probe(api, net_id, DEAD_IP, 8000)
            if ok:
                raise RuntimeError(message)

        async with anyio.create_task_group() as tg:
            for _ in range(DEAD_BATCH):
                tg.start_soon(one)

    async def ws_http_close() -> None:
        ws = await api.connect_tcp(net_id, ip, 8000)
        await ws.send_bytes(REQUEST)
        await _read_reply_ws(ws)
        await ws.close()

    async def ws_no_close_frame() -> None:
        ws = await api.connect_tcp(net_id, ip, 8000)
        _shutdown(ws)
        await _forget(ws)

    async def ws_http_no_close_frame() -> None:
        ws = await api.connect_tcp(net_id, ip, 8000)
        await ws.send_bytes(REQUEST)
        await _read_reply_ws(ws)
        _shutdown(ws)
        await _forget(ws)

    return {
        "proxy_http": proxy_http,
        "probe_tcp": probe_tcp,
        "ws_http_close": ws_http_close,
        "ws_no_close_frame": ws_no_close_frame,
        "ws_http_no_close_frame": ws_http_no_close_frame,
        "proxy_hold": proxy_hold,
        "probe_refused": probe_refused,
        "probe_dead_node": probe_dead_node,
    }


async def measure(
    info: localnet.LocalNetInfo, netns: Path, stats_file: Path, n: int, chosen: list[str]
) -> dict[str, object]:
    pid = requestor_pid(info.state_dir)
    ready = json.loads((info.state_dir / "ready.json").read_text())
    provider = info.providers[0][1]
    config = YagnaConfig(api_url=info.api_url, app_key=info.app_key)
    out: dict[str, object] = {"requestor_rss_mb_at_start": proc_rss_mb(pid)}
    async with YagnaClient(config) as client, VpnHost.connect(ready["provider_gsb_url"]) as vpn:
        api = NetApi(client)
        network = await Network.create(api, "192.168.11.0/24", ready["requestor_id"])
        async with network, anyio.create_task_group() as tg:
            node = await network.add_node(provider, "192.168.11.5")
            await vpn.join(NetSpec.from_deploy(node.get_deploy_args()["net"][0]), provider, netns)
            net_id, ip = network.network_id, node.ip
            await api.add_node(net_id, DEAD_NODE, DEAD_IP)
            ports: dict[int, int] = {}
            for port in (8000, 8001):
                proxy = TcpProxy(api, net_id, port, lambda: [ip])
                ports[port] = await tg.start(proxy.serve, "127.0.0.1", 0)
            table = variants(api, net_id, ip, ports)
            for _ in range(50):  # warm-up: first connections allocate the stack's buffers
                await table["ws_http_close"]()
            await anyio.sleep(3)
            for name in chosen:
                rounds = {"probe_refused": min(n, 300), "probe_dead_node": 10}.get(name, n)
                count = rounds * (DEAD_BATCH if name == "probe_dead_node" else 1)
                before = proc_rss_mb(pid)
                began = time.perf_counter()
                failures = 0
                curve = []  # RSS after each quarter: linear, or rising with the open ones?
                for i in range(rounds):
                    if i and i % max(1, rounds // 4) == 0:
                        curve.append(round(proc_rss_mb(pid), 1))
                    try:
                        with anyio.fail_after(60):
                            await table[name]()
                    except Exception:
                        failures += 1
                seconds = time.perf_counter() - began
                after = proc_rss_mb(pid)
                await anyio.sleep(5)
                settled = proc_rss_mb(pid)
                server = json.loads(stats_file.read_text())
                out[name] = {
                    "connections": count,
                    "failures": failures,
                    "rss_before_mb": round(before, 1),
                    "rss_quarters_mb": curve,
                    "rss_after_mb": round(after, 1),
                    "rss_after_5s_mb": round(settled, 1),
                    "mb_per_1000": round((settled - before) * 1000 / count, 1),
                    "ms_per_connection": round(seconds * 1000 / count, 1),
                    "server": server,
                }
                print(name, json.dumps(out[name]), file=sys.stderr, flush=True)
            tg.cancel_scope.cancel()
    out["requestor_rss_mb_at_end"] = proc_rss_mb(pid)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument(
        "--variants",
        default="proxy_http,probe_tcp,ws_http_close,ws_no_close_frame,"
        "ws_http_no_close_frame,proxy_hold,probe_refused,probe_dead_node",
    )
    args = parser.parse_args()
    chosen = args.variants.split(",")
    result: dict[str, object] = {"isolated_netns": isolate(), "n": args.n}
    state_dir = Path(tempfile.mkdtemp(prefix="gd-bench-vpnmem-"))
    stats_file = state_dir / "server.json"
    server = subprocess.Popen(
        ["unshare", "--net", sys.executable, "-c", SERVER, str(stats_file), REPLY.hex()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline() == "listening\n"
        info = localnet.start(state_dir, providers=1, timeout=120)
        try:
            result["load_before"] = load_average()
            result.update(
                anyio.run(
                    measure, info, Path(f"/proc/{server.pid}/ns/net"), stats_file, args.n, chosen
                )
            )
            result["load_after"] = load_average()
        finally:
            localnet.stop(state_dir)
    finally:
        server.kill()
        server.wait(10)
        shutil.rmtree(state_dir, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
