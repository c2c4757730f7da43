"""The local network's VPN carries TCP from the requestor's yagna into an activity's namespace.

Real yagna on both sides: the requestor creates a network and adds a local provider as a node
(Net API), the provider side (VpnHost) gives a network namespace a TAP at the node's address,
and a WebSocket to `/net-api/v1/net/{id}/tcp/{ip}/{port}` reaches a TCP server in that
namespace -- the path every forwarded port and `get_websocket_uri` takes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anyio
import pytest

from golem_deploy.localnet import LocalNetInfo
from golem_deploy.localnet.vpn_host import NetSpec, VpnHost

pytestmark = [
    pytest.mark.localnet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the local VPN needs root (CAP_NET_ADMIN)"),
]

ECHO = """
import socket
server = socket.create_server(("0.0.0.0", 7000))
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data.upper())
"""


@pytest.fixture
def namespace_with_server() -> Iterator[Path]:
    """A process in a fresh network namespace (only `lo`) running an upper-casing echo."""
    process = subprocess.Popen(
        ["unshare", "--net", sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "listening\n"
        yield Path(f"/proc/{process.pid}/ns/net")
    finally:
        process.kill()
        process.wait(10)


def test_a_requestor_reaches_a_tcp_server_in_an_activity_namespace_over_the_vpn(
    shared_localnet: LocalNetInfo, namespace_with_server: Path
) -> None:
    ready = json.loads((shared_localnet.state_dir / "ready.json").read_text())
    provider_id = shared_localnet.providers[0][1].lower()
    api = f"{shared_localnet.api_url}/net-api/v1"

    async def main() -> None:
        headers = {"Authorization": f"Bearer {shared_localnet.app_key}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{api}/net", json={"ip": "192.168.9.0"}) as created:
                net_id = (await created.json())["id"]
            try:
                node = {"id": provider_id, "ip": "192.168.9.2"}
                async with http.post(f"{api}/net/{net_id}/nodes", json=node) as added:
                    assert added.status == 200
                spec = NetSpec(
                    net_id,
                    "192.168.9.0/24",
                    "192.168.9.2",
                    {"192.168.9.1": ready["requestor_id"]},
                )
                async with VpnHost.connect(ready["provider_gsb_url"]) as vpn:
                    member = await vpn.join(spec, provider_id, namespace_with_server)
                    link = subprocess.run(
                        ["nsenter", f"--net={namespace_with_server}", "ip", "-o", "addr"],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    assert "gvpn0    inet 192.168.9.2/24" in link.replace("\\", "")
                    with anyio.fail_after(20):
                        async with http.ws_connect(
                            f"{api}/net/{net_id}/tcp/192.168.9.2/7000"
                        ) as ws:
                            payload = os.urandom(20_000).hex()  # many frames, both ways
                            await ws.send_bytes(payload.encode())
                            echoed = b""
                            while len(echoed) < len(payload):
                                echoed += await ws.receive_bytes()
                            assert echoed == payload.upper().encode()
                    await vpn.leave(member)
                gone = subprocess.run(
                    ["nsenter", f"--net={namespace_with_server}", "ip", "link", "show", "gvpn0"],
                    capture_output=True,
                )
                assert gone.returncode != 0  # the interface left with the activity
            finally:
                async with http.delete(f"{api}/net/{net_id}"):
                    pass

    anyio.run(main)
