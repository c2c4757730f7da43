"""The agent's loops, written once: long-poll events, retry a call.

yagna's provider-side event endpoints are long polls. The agent polls three of them (offer
subscription, agreements, activities) the same way: poll, hand each event over, and when a
poll fails, log it, back off briefly and poll again, for as long as the agent lives. Two of
them (agreements, activities) return events after a cursor without consuming them, so
polling also means advancing the cursor and skipping what was already handled.

Activity events are polled in staggered lanes (`poll_in_lanes`): yagna answers that long
poll by looking at its database when the request arrives and then only every 750 ms
(YAGNA_CHECK_PERIOD), so one poll sees a CreateActivity up to 0.75 s late -- and the
requestor's POST /activity returns on yagna's next 750 ms check of the activity's state
after the event, so a late sighting plus the ExeUnit's start-up can miss that check and
cost the requestor a whole 0.75 s more. ACTIVITY_POLL_LANES polls, sent 0.25 s apart,
make yagna look every 0.25 s instead; the shared EventCursor hands each event over once.
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

#: How often yagna (0.17.6, core/activity/src/dao/event.rs) looks for new activity events
#: while a long poll waits, counted from the request's arrival.
YAGNA_CHECK_PERIOD = 0.75

#: Activity-event long polls an agent keeps in flight. 3 lanes, 0.25 s apart: an event is
#: seen at most ~0.25 s after yagna records it, leaving ~0.5 s of the requestor's first
#: 750 ms state check for the ExeUnit to report Initialized (it needs ~0.01-0.03 s) even
#: on a loaded machine. Always all 3: the first CreateActivity of a new agreement follows
#: its approval within ~0.1-0.3 s, too soon for lanes started on demand to be in place.
#: The cost: each lane is one request per 3 s long poll when idle, and yagna queries its
#: database every 0.75 s per lane (measured: +0.2 % of a core for the provider node per
#: provider, bench/RESULTS.md).
ACTIVITY_POLL_LANES = 3

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


def slot_delay(now: float, origin: float, lane: int, lanes: int, period: float) -> float:
    """Seconds lane `lane` of `lanes` waits before its next poll so that it is sent at its
    phase, lane * period / lanes after `origin` (mod `period`).

    yagna's checks of a long poll tick `period` apart from the request's arrival, so lanes
    sent at evenly spread phases keep yagna looking every period / lanes. A lane no more
    than half a spacing past its phase goes now (its previous poll just ended on time).
    """
    spacing = period / lanes
    delay = (lane * spacing - (now - origin)) % period
    return 0.0 if period - delay <= spacing / 2 else delay


async def poll_in_lanes(
    what: str,
    poll: Callable[[], Awaitable[Sequence[E]]],
    handle: Callable[[E], None],
    *,
    lanes: int,
    period: float = YAGNA_CHECK_PERIOD,
) -> None:
    """`poll_forever` in `lanes` concurrent loops, each sent at its own phase of `period`
    (slot_delay), until cancelled.

    `poll` is shared: it must drop events another lane already returned (EventCursor).
    """
    origin = anyio.current_time()

    def lane(index: int) -> Callable[[], Awaitable[Sequence[E]]]:
        async def at_its_phase() -> Sequence[E]:
            now = anyio.current_time()
            await anyio.sleep(slot_delay(now, origin, index, lanes, period))
            return await poll()

        return at_its_phase

    async with anyio.create_task_group() as tg:
        for index in range(lanes):
            tg.start_soon(poll_forever, f"{what} (lane {index + 1})", lane(index), handle)


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
