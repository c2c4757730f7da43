"""What the renewal tests share: an HTTP service with `expiration: 20s` (so it is renewed
every 10-15 s; golem_deploy/testing/http_service.py, shared with bench/renewal.py) and a
client looping GETs through its forwarded port, counting failures."""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass, field

from golem_deploy.testing.http_service import PYTHON_IMAGE, free_port, http_service

__all__ = ["PYTHON_IMAGE", "Client", "free_port", "http_service"]


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
