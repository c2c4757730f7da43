"""An HTTP service to deploy in tests and benchmarks: answers every GET with the address it
was reached at (its VPN address), so a client sees which instance served it.

`http_service(folder, port)` is its manifest entry (`services.<name>`): the python image,
the server script uploaded and started in the background, a forwarded port and an HTTP
health check. tests/e2e/_renewal_helpers.py and bench/renewal.py both use it; bench/ does
not import tests/, hence this module.
"""

from __future__ import annotations

import socket
from pathlib import Path

__all__ = ["PYTHON_IMAGE", "SERVER", "free_port", "http_service"]

PYTHON_IMAGE = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
"""The python image's hash (the local network serves it offline)."""

SERVER = """\
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.connection.getsockname()[0].encode()  # our address in the VPN
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"""


def free_port() -> int:
    """A loopback TCP port free right now (for a forwarded port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_service(folder: Path, port: int, expiration: str = "20s") -> dict[str, object]:
    """The service (a manifest's `services` entry) serving its VPN address on port 8000,
    forwarded to 127.0.0.1:`port`; writes its server script into `folder`."""
    (folder / "server.py").write_text(SERVER)
    return {
        "payload": {"image_hash": PYTHON_IMAGE, "min_mem_gib": 0.5},
        "expiration": expiration,
        "ports": [f"{port}:8000"],
        "start": [
            {"upload": {"src": "server.py", "dst": "/golem/work/server.py"}},
            {"run": "python3 /golem/work/server.py 8000 > /golem/work/server.log 2>&1 &"},
        ],
        "healthcheck": {
            "http": {"port": 8000, "path": "/"},
            "interval": "1s",
            "timeout": "5s",
            "retries": 3,
        },
    }
