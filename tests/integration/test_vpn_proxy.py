"""A forwarded local port reaches services in the VPN: Network, Node and TcpProxy on real yagna.

The requestor side is the engine's (Network over yagna's Net API, TcpProxy over its TCP
WebSocket); the provider side is the local network's VpnHost with two activity namespaces,
each running a TCP server that says which instance answered.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from golem_deploy.engine.network import Network
from golem_deploy.engine.proxy import PortInUse, TcpProxy
from golem_deploy.localnet import LocalNetInfo
from golem_deploy.localnet.vpn_host import NetSpec, VpnHost
from golem_deploy.yagna.client import YagnaClient, YagnaConfig
from golem_deploy.yagna.net import NetApi

pytestmark = [
    pytest.mark.localnet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the local VPN needs root (CAP_NET_ADMIN)"),
]

SERVER = """
import socket, sys
server = socket.create_server(("0.0.0.0", 7000))
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        data = conn.recv(65536)
        conn.sendall(sys.argv[1].encode() + b":" + data)
"""


@pytest.fixture
def namespaces() -> Iterator[list[Path]]:
    """Two network namespaces, each with a server answering `<name>:<what it got>`."""
    processes = []
    try:
        for name in ("a", "b"):
            process = subprocess.Popen(
                ["unshare", "--net", sys.executable, "-c", SERVER, name],
                stdout=subprocess.PIPE,
                text=True,
            )
            processes.append(process)
            assert process.stdout is not None and process.stdout.readline() == "listening\n"
        yield [Path(f"/proc/{p.pid}/ns/net") for p in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait(10)


def ask(port: int, message: bytes) -> bytes:
    """Send ``message``; read the `<name>:<message>` answer (the protocol says its length).

    yagna 0.17.6 does not pass the server's close on to the WebSocket, so, as with any
    protocol over the VPN, the client knows the answer is complete from the protocol."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(message)
        answer = b""
        while len(answer) < len(message) + 2 and (chunk := conn.recv(65536)):
            answer += chunk
        return answer


def test_a_forwarded_port_round_robins_over_running_instances(
    shared_localnet: LocalNetInfo, namespaces: list[Path]
) -> None:
    ready = json.loads((shared_localnet.state_dir / "ready.json").read_text())
    providers = [node_id for _, node_id in shared_localnet.providers]
    plan = {("web", 0): "192.168.10.2", ("web", 1): "192.168.10.3"}

    async def main() -> None:
        config = YagnaConfig(api_url=shared_localnet.api_url, app_key=shared_localnet.app_key)
        async with YagnaClient(config) as client, VpnHost.connect(ready["provider_gsb_url"]) as vpn:
            api = NetApi(client)
            network = await Network.create(api, "192.168.10.0/24", ready["requestor_id"])
            async with network, anyio.create_task_group() as tg:
                nodes = [await network.add_node(providers[i], plan[("web", i)]) for i in range(2)]
                assert [n.ip for n in nodes] == ["192.168.10.2", "192.168.10.3"]
                for node, netns in zip(nodes, namespaces, strict=True):
                    spec = NetSpec.from_deploy(node.get_deploy_args()["net"][0])
                    await vpn.join(spec, node.node_id, netns)

                running = [n.ip for n in nodes]
                proxy = TcpProxy(api, network.network_id, 7000, lambda: running)
                port = await tg.start(proxy.serve, "127.0.0.1", 0)
                answers = {await anyio.to_thread.run_sync(ask, port, b"hi") for _ in range(4)}
                assert answers == {b"a:hi", b"b:hi"}  # both instances served
                with anyio.fail_after(5):  # each client closed: so did its WebSocket
                    while proxy.stats.active:
                        await anyio.sleep(0.05)

                with pytest.raises(PortInUse, match=f"cannot listen on 127.0.0.1:{port}"):
                    await TcpProxy(api, network.network_id, 7000, lambda: running).serve(
                        "127.0.0.1", port
                    )

                running = []  # nothing running: closed at once, counted
                assert await anyio.to_thread.run_sync(ask, port, b"hi") == b""
                assert proxy.stats.refused == 1

                running = ["192.168.10.9", nodes[1].ip]  # .9: nobody there, yagna gives up
                assert await anyio.to_thread.run_sync(ask, port, b"hi") == b"b:hi"

                # An instance that stops running (its provider vanished): its open
                # connections are reset -- yagna would never close them.
                running = [nodes[0].ip]
                held = await anyio.to_thread.run_sync(socket.create_connection, ("127.0.0.1", port))
                with held:
                    held.settimeout(60)  # far beyond the proxy's look: a hang fails the test
                    held.sendall(b"hi")
                    assert await anyio.to_thread.run_sync(held.recv, 100) == b"a:hi"
                    running = [nodes[1].ip]
                    with pytest.raises(ConnectionResetError):
                        await anyio.to_thread.run_sync(held.recv, 100)
                assert proxy.stats.aborted == 1
                tg.cancel_scope.cancel()

    anyio.run(main)
