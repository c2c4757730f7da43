"""One Exec of the local ExeUnit: its commands, their results and runtime events.

Shared by the ExeUnit's bus side (:mod:`exeunit`, which answers GetExecBatchResults and
StreamExecBatchResults from a batch) and its command side (:mod:`exeunit_commands`, which
fills it); :class:`CommandError` is how any command step fails with a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio

from golem_deploy.localnet.exeunit_capture import Output

__all__ = ["Batch", "CommandError", "Outcome"]


class CommandError(Exception):
    """A command failed before or instead of running: return code -1 and this message."""


@dataclass
class Outcome:
    code: int
    message: str | None = None
    stdout: Output = None
    stderr: Output = None


@dataclass
class Batch:
    """One Exec: its commands, finished results (a prefix) and every runtime event."""

    batch_id: str
    commands: list[dict[str, Any]]
    results: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    running: dict[str, Any] | None = None  # the command being executed
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        """Wake everyone waiting for news of this batch."""
        self.changed.set()
        self.changed = anyio.Event()
