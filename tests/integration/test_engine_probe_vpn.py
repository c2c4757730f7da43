"""Health probes over the VPN on real yagna: the http and tcp probes reach a server inside
an activity's network namespace through yagna's TCP WebSocket, and judge what they find.

The requestor side is the engine's (Network, the probes, the Watcher's use of them); the
provider side is the local network's VpnHost with one namespace (as in test_vpn_proxy.py),
whose server answers HTTP and then keeps the connection open: yagna 0.17.6 would not pass
its close on anyway, so a probe that waited for the end would never finish.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import anyio
import pytest

from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.config import HealthCheck, HttpProbe
from golem_deploy.engine.executor import ScriptExecutor
from golem_deploy.engine.network import Network
from golem_deploy.engine.probe import http_probe, tcp_probe
from golem_deploy.engine.timing import Timings
from golem_deploy.engine.watcher import Watcher
from golem_deploy.localnet import LocalNetInfo
from golem_deploy.localnet.vpn_host import NetSpec, VpnHost
from golem_deploy.yagna.client import YagnaClient, YagnaConfig
from golem_deploy.yagna.net import NetApi

pytestmark = [
    pytest.mark.localnet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the local VPN needs root (CAP_NET_ADMIN)"),
]

SERVER = """
import socket, threading, time

def serve(conn):
    request = conn.recv(65536)  # a tcp probe sends nothing: this waits, in its own thread
    ok = request.startswith(b"GET /health ")
    conn.sendall(b"HTTP/1.1 200 OK\\r\\n" if ok else b"HTTP/1.1 404 Not Found\\r\\n")
    time.sleep(0.2)  # the rest comes later, in another segment
    conn.sendall(b"Content-Length: 2\\r\\n\\r\\nok")
    held.append(conn)  # never closed: the probe must not wait for the end

server = socket.create_server(("0.0.0.0", 8000))
print("listening", flush=True)
held = []
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@pytest.fixture
def namespace() -> Iterator[Path]:
    process = subprocess.Popen(
        ["unshare", "--net", sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "listening\n"
        yield Path(f"/proc/{process.pid}/ns/net")
    finally:
        process.kill()
        process.wait(10)


def test_http_and_tcp_probes_over_the_vpn(shared_localnet: LocalNetInfo, namespace: Path) -> None:
    ready = json.loads((shared_localnet.state_dir / "ready.json").read_text())
    provider = shared_localnet.providers[0][1]

    async def main() -> None:
        config = YagnaConfig(api_url=shared_localnet.api_url, app_key=shared_localnet.app_key)
        async with YagnaClient(config) as client, VpnHost.connect(ready["provider_gsb_url"]) as vpn:
            api = NetApi(client)
            network = await Network.create(api, "192.168.11.0/24", ready["requestor_id"])
            async with network:
                node = await network.add_node(provider, "192.168.11.5")
                await vpn.join(
                    NetSpec.from_deploy(node.get_deploy_args()["net"][0]), provider, namespace
                )
                net_id, ip = network.network_id, node.ip

                with anyio.fail_after(20):
                    ok, message = await http_probe(api, net_id, ip, HttpProbe(8000, "/health"))
                assert (ok, message) == (True, "GET /health on port 8000: HTTP 200")
                with anyio.fail_after(20):
                    ok, message = await http_probe(api, net_id, ip, HttpProbe(8000, "/missing"))
                assert (ok, message) == (False, "GET /missing on port 8000: HTTP 404")
                with anyio.fail_after(20):
                    assert await tcp_probe(api, net_id, ip, 8000) == (
                        True,
                        "port 8000 accepts connections",
                    )
                with anyio.fail_after(20):
                    ok, message = await tcp_probe(api, net_id, ip, 8001)  # nothing listens
                assert not ok and message.startswith("port 8001 does not accept connections")

                # the watcher runs them with the health check's timeout, as events
                got: list[lc.Event] = []
                for check in (
                    HealthCheck(http=HttpProbe(8000, "/health"), timeout=20),
                    HealthCheck(tcp=8001, timeout=20),
                    HealthCheck(tcp=8000, timeout=20),
                ):
                    watcher = Watcher(
                        client,
                        cast(ScriptExecutor, None),  # a VPN probe runs nothing on the provider
                        check,
                        Timings(),
                        "web[0]",
                        node=lambda: node,
                    )
                    await watcher._vpn_probe(got.append)
                assert [type(e) for e in got] == [
                    lc.HealthCheckPassed,
                    lc.HealthCheckFailed,
                    lc.HealthCheckPassed,
                ]
                offline = Watcher(
                    client, cast(ScriptExecutor, None), HealthCheck(tcp=8000), Timings(), "x"
                )
                await offline._vpn_probe(got.append)
                assert got[-1] == lc.HealthCheckFailed(
                    "the instance is on no network: http/tcp probes need one"
                )

    anyio.run(main)
