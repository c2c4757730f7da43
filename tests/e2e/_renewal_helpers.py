"""What the renewal tests share: an HTTP service with `expiration: 20s` (so it is renewed
every 10-15 s) and a client looping GETs through its forwarded port, counting failures."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PYTHON_IMAGE = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"

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
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_service(folder: Path, port: int, expiration: str = "20s") -> dict[str, Any]:
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


@dataclass
class Client:
    """GETs through the forwarded port, one connection each, back to back, until stopped
    (in a thread of its own: `start()`, then `finish()`)."""

    port: int
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    served_by: set[str] = field(default_factory=set)
    slowest: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            began, began_wall = time.monotonic(), time.time()
            try:
                url = f"http://127.0.0.1:{self.port}/"
                with urllib.request.urlopen(url, timeout=30) as answer:  # loopback only
                    body = answer.read().decode()
                    if answer.status != 200:
                        raise RuntimeError(f"status {answer.status}")
                self.ok += 1
                self.served_by.add(body)
            except Exception as error:  # every failure counts, whatever it is
                when = time.strftime("%H:%M:%S", time.gmtime(began_wall))
                self.failures.append(f"{when}Z {type(error).__name__}: {error}")
            self.slowest = max(self.slowest, time.monotonic() - began)
