"""Open connections per instance address, so a replaced instance stops once it serves none.

The forwarded ports (engine/proxy.py) count every connection they pipe to an address --
from the moment they pick the address, before the VPN connection is even made -- and a
replacement (engine/replace.py) waits for the old instance's address to be idle before
stopping it, instead of guessing how long its requests take: under load a request can take
longer than any fixed pause, and stopping the instance then resets it.
"""

from __future__ import annotations

import anyio

__all__ = ["Connections"]


class Connections:
    """How many connections are open to each address; wait for one to have none."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}
        self._idle: dict[str, anyio.Event] = {}

    def opened(self, ip: str) -> None:
        self._open[ip] = self._open.get(ip, 0) + 1

    def closed(self, ip: str) -> None:
        left = self._open.get(ip, 0) - 1
        if left > 0:
            self._open[ip] = left
            return
        self._open.pop(ip, None)
        idle = self._idle.pop(ip, None)
        if idle is not None:
            idle.set()

    def count(self, ip: str) -> int:
        return self._open.get(ip, 0)

    async def wait_idle(self, ip: str, at_most: float) -> bool:
        """Until no connection to `ip` is open (True), or `at_most` seconds passed (False)."""
        with anyio.move_on_after(at_most):
            while self.count(ip) > 0:
                await self._idle.setdefault(ip, anyio.Event()).wait()
            return True
        return False
