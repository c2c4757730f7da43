"""The agent's loops, written once: long-poll events, retry a call.

yagna's provider-side event endpoints are long polls. The agent polls three of them (offer
subscription, agreements, activities) the same way: poll, hand each event over, and when a
poll fails, log it, back off briefly and poll again, for as long as the agent lives. Two of
them (agreements, activities) return events after a cursor without consuming them, so
polling also means advancing the cursor and skipping what was already handled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Protocol, TypeVar

import anyio

from golem_deploy.localnet.provider.api import ProviderApiError
from golem_deploy.localnet.provider.events import now_cursor

log = logging.getLogger(__name__)

#: Pause after a failed poll: long enough not to spin on a dead node, short enough that
#: a brief outage costs nothing.
POLL_BACKOFF = 0.5

E = TypeVar("E")
T = TypeVar("T")


def _never() -> bool:
    return False


async def poll_forever(
    what: str,
    poll: Callable[[], Awaitable[Sequence[E]]],
    handle: Callable[[E], None],
    *,
    until: Callable[[], bool] = _never,
) -> None:
    """Call `poll` again and again and pass each event it returns to `handle`.

    Runs until `until()` is true before a poll, or the caller's scope is cancelled. A
    failed poll is logged (as `what`) and retried after POLL_BACKOFF. `handle` must not
    block: it decides, or starts a task.
    """
    while not until():
        try:
            events = await poll()
        except ProviderApiError as error:
            log.warning("%s: %s", what, error)
            await anyio.sleep(POLL_BACKOFF)
            continue
        for event in events:
            handle(event)


class Dated(Protocol):
    @property
    def event_date(self) -> str: ...


D = TypeVar("D", bound=Dated)


class EventCursor:
    """Where a poll over a non-consuming event list stands.

    yagna returns every event after `after` on each poll; the cursor moves to the latest
    event date seen, and `fresh` drops events already handled (same key), since events of
    one timestamp may straddle two polls.
    """

    def __init__(self) -> None:
        self.after = now_cursor()
        self._seen: set[Hashable] = set()

    def fresh(self, events: Sequence[D], key: Callable[[D], Hashable]) -> list[D]:
        new = []
        for event in events:
            self.after = max(self.after, event.event_date)
            identity = key(event)
            if identity not in self._seen:
                self._seen.add(identity)
                new.append(event)
        return new


async def retried(
    what: str,
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    delay: Callable[[int], float],
) -> T:
    """`call()`, tried up to `attempts` times; `delay(n)` seconds after failed try n (0-based).

    Failed tries are logged (as `what`); the last one's ProviderApiError propagates.
    """
    for attempt in range(attempts - 1):
        try:
            return await call()
        except ProviderApiError as error:
            log.info("%s: attempt %d failed: %s", what, attempt + 1, error)
            await anyio.sleep(delay(attempt))
    return await call()
