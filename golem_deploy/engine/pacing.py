"""Pacing activity starts: how many instances may be starting at once.

An instance *starts* from the moment its agreement is signed until its `start` handler
returned (activity create, deploy, start, and whatever else the handler does first). With
several demand subscriptions (engine/market.py) 100 agreements on 4 providers are signed
within seconds, and then 100 activities were created and deployed at once: on one machine
running the local network, providers then missed their heartbeats, were avoided, and the
deployment came up slower than with one subscription. A real provider is one machine too:
a burst of deploys there competes for its disk and CPU just the same.

So a start takes a slot first: at most `per_provider` starts per provider and `total` in
all. A slot is given back when the start ends (either way) or when the attempt is released;
a start that holds its slot longer than `hold_max` seconds (a `start` handler that runs a
long job) stops counting, so it cannot hold the others up for good.

`StartPacing` is the rule (pure, clock passed in, unit-tested); `StartGate` is its
asynchronous face for the runners.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

__all__ = ["StartGate", "StartPacing", "StartSlot"]


@dataclass
class StartPacing:
    """Which starts hold a slot, and whether one more may begin (times in seconds)."""

    per_provider: int
    total: int
    hold_max: float
    #: token -> (provider, since)
    _held: dict[int, tuple[str, float]] = field(default_factory=dict)
    _tokens: itertools.count[int] = field(default_factory=itertools.count)

    def _expire(self, now: float) -> None:
        for token, (_, since) in list(self._held.items()):
            if now - since >= self.hold_max:
                del self._held[token]

    def may_start(self, provider: str, now: float) -> bool:
        """Whether a start on `provider` may begin at `now`."""
        self._expire(now)
        on_provider = sum(1 for p, _ in self._held.values() if p == provider)
        return on_provider < max(1, self.per_provider) and len(self._held) < max(1, self.total)

    def take(self, provider: str, now: float) -> int | None:
        """A slot's token when a start on `provider` may begin now, else None."""
        if not self.may_start(provider, now):
            return None
        token = next(self._tokens)
        self._held[token] = (provider, now)
        return token

    def give_back(self, token: int) -> None:
        """The start of `token` ended (idempotent; an expired token is already gone)."""
        self._held.pop(token, None)

    def next_expiry(self, now: float) -> float | None:
        """Seconds until the oldest held slot stops counting (None: none is held)."""
        if not self._held:
            return None
        oldest = min(since for _, since in self._held.values())
        return max(0.0, oldest + self.hold_max - now)

    def starting(self) -> Counter[str]:
        """provider -> starts holding a slot (for logs and tests)."""
        return Counter(p for p, _ in self._held.values())


class StartSlot:
    """One start's slot; `release()` gives it back (idempotent)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class StartGate:
    """Runners wait here for a start slot (`await gate.slot(provider)`)."""

    def __init__(self, per_provider: int, total: int, hold_max: float) -> None:
        self.pacing = StartPacing(per_provider, total, hold_max)
        self._freed = anyio.Event()

    def _give_back(self, token: int) -> None:
        self.pacing.give_back(token)
        self._freed.set()
        self._freed = anyio.Event()

    async def slot(self, provider: str) -> StartSlot:
        """Until a start on `provider` may begin; the slot must be released."""
        while True:
            now = anyio.current_time()
            token = self.pacing.take(provider, now)
            if token is not None:
                return StartSlot(functools.partial(self._give_back, token))
            freed = self._freed
            wait = self.pacing.next_expiry(now)
            with anyio.move_on_after(wait if wait is not None else 1.0):
                await freed.wait()
