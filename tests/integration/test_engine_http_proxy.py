"""yapapi's LocalHttpProxy / HttpProxyService (golem_deploy.engine.http_proxy) against the
real local network: HTTP requests on a local port reach web servers in two instances over
the VPN, round robin, with bodies framed by Content-Length and by chunks."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
from _engine_helpers import Recorder, _payload, golem_for, wait_for

from golem_deploy.engine import ServiceState
from golem_deploy.engine.http_proxy import HttpProxyService, LocalHttpProxy
from golem_deploy.engine.payload import VmPayload
from golem_deploy.localnet import LocalNetInfo

pytestmark = [pytest.mark.localnet, pytest.mark.anyio]

PORT = 8000  # the local sandbox cannot bind ports below 1024 (a VM could)

# a web server from the host's python3 (in the sealed host root): GET / answers the
# provider's name; GET /chunked answers in chunks; POST echoes the body
SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"one,", b"two"):
                self.wfile.write(hex(len(part))[2:].encode() + b"\\r\\n" + part + b"\\r\\n")
            self.wfile.write(b"0\\r\\n\\r\\n")
            return
        body = sys.argv[1].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-By", sys.argv[1])
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.upper())
http.server.HTTPServer(("0.0.0.0", PORT), H).serve_forever()
""".replace("PORT", str(PORT))


class Web(HttpProxyService):
    def __init__(self, **params: Any) -> None:
        super().__init__(remote_port=PORT, response_timeout=20, **params)

    @staticmethod
    async def get_payload() -> VmPayload:
        return await _payload()

    async def start(self) -> AsyncIterator[Any]:
        async for script in super().start():
            yield script
        script = self._ctx.new_script()
        script.upload_bytes(SERVER.encode(), "/golem/work/server.py")
        script.run(
            "/bin/sh",
            "-c",
            f"python3 /golem/work/server.py {self.provider_name} >/dev/null 2>&1 &"
            f" for i in $(seq 50); do python3 -c 'import socket;"
            f' socket.create_connection(("127.0.0.1", {PORT}))\' 2>/dev/null && exit 0;'
            " sleep 0.1; done; exit 1",
        )
        yield script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_local_http_proxy_round_robin_over_the_vpn(shared_localnet: LocalNetInfo) -> None:
    rec = Recorder()
    async with golem_for(shared_localnet, rec) as golem:
        network = await golem.create_network("192.168.30.1/24")
        cluster = await golem.run_service(Web, num_instances=2, network=network)
        await wait_for(
            lambda: all(i.state is ServiceState.running for i in cluster.instances),
            90,
            "both web servers running",
        )
        port = _free_port()
        proxy = LocalHttpProxy(cluster, port)
        await proxy.run()
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                served = set()
                for _ in range(4):
                    async with http.get(f"{base}/") as answer:
                        assert answer.status == 200
                        body = await answer.text()
                        assert answer.headers["X-Served-By"] == body
                        served.add(body)
                assert served == {i.provider_name for i in cluster.instances}
                assert len(served) == 2  # round robin over both instances
                async with http.get(f"{base}/chunked") as answer:
                    assert (answer.status, await answer.text()) == (200, "one,two")
                async with http.post(f"{base}/echo", data=b"x" * 100_000) as answer:
                    assert (answer.status, await answer.read()) == (201, b"X" * 100_000)
        finally:
            await proxy.stop()
        with pytest.raises(OSError):  # stopped: nothing listens any more
            await anyio.connect_tcp("127.0.0.1", port)
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
