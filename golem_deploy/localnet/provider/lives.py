"""A provider that dies and comes back: the `come_back_after` fault, one agent per life.

A `ProviderAgent` that vanished (`die_after`, `die_when`) is over: its ExeUnits were killed
and its offer withdrawn, and it never talks to anyone again. A real provider machine that
crashed may reboot: the same node (identity, keys, work folder) starts ya-provider again,
remembers nothing of the agreements it had, publishes a fresh offer and takes new work.
`ProviderLives` is that for one provider slot of the host: it runs an agent and, when the
agent vanished and the faults say `come_back_after`, waits that long, clears the work
folder of the dead life (its activities are over, as the host does at start) and runs a
new agent for the same identity. Without `come_back_after` it is just the one agent.

The host journals each death and return (`provider-died`, `provider-back` in the local
network's journal.jsonl), so a bench can count deaths and comebacks.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import anyio
from anyio.abc import TaskStatus

log = logging.getLogger(__name__)

#: After a life that could not even start (its offer could not be published: yagna busy),
#: wait this long before the next try.
RETRY_START = 5.0


class AgentLike(Protocol):
    """What a life needs of its agent (ProviderAgent; tests use a fake)."""

    @property
    def dead(self) -> bool: ...

    async def run(self, *, task_status: TaskStatus[None] = ...) -> None: ...

    async def shutdown(self, timeout: float = ...) -> None: ...


Event = Callable[[str, int], None]
"""Told `("provider-died", life)` or `("provider-back", life)` (lives count from 1)."""


class ProviderLives:
    """One provider identity across its lives: agent, death, pause, a new agent."""

    def __init__(
        self,
        name: str,
        make_agent: Callable[[], AgentLike],
        *,
        come_back_after: float | None,
        work_root: Path | None = None,
        on_event: Event = lambda event, life: None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.name = name
        self._make_agent = make_agent
        self._come_back_after = come_back_after
        self._work_root = work_root
        self._on_event = on_event
        self._sleep = sleep
        self._stopping = False
        self.agent = make_agent()
        self.life = 1
        self.deaths = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the first agent (report started once its offer is out), then the next ones.

        The first life's start failing propagates (the network cannot start as asked); a
        later life that cannot start is logged and tried again after RETRY_START.
        """
        await self.agent.run(task_status=task_status)
        while self._next_life_due():
            self.deaths += 1
            self._on_event("provider-died", self.life)
            log.warning("%s: comes back in %ss", self.name, self._come_back_after)
            assert self._come_back_after is not None
            await self._sleep(self._come_back_after)
            while not self._stopping:
                if self._work_root is not None:
                    shutil.rmtree(self._work_root, ignore_errors=True)
                self.agent = self._make_agent()
                self.life += 1
                try:
                    async with anyio.create_task_group() as tg:
                        await tg.start(self._run_agent)
                        self._on_event("provider-back", self.life)
                        log.warning("%s: back (life %d)", self.name, self.life)
                except Exception:
                    log.exception("%s: life %d failed to start", self.name, self.life)
                    await self._sleep(RETRY_START)
                    continue
                break

    async def _run_agent(self, *, task_status: TaskStatus[None]) -> None:
        await self.agent.run(task_status=task_status)

    def _next_life_due(self) -> bool:
        return not self._stopping and self.agent.dead and self._come_back_after is not None

    async def shutdown(self) -> None:
        """Stop for good: the current agent ends its activities; no next life."""
        self._stopping = True
        await self.agent.shutdown()
