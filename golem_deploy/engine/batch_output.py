"""What a batch's output needs from yagna, and what the results must still supply.

A batch's live output comes over yagna's server-sent-event stream, which costs a request
and a TCP connection of its own (the stream never ends, so its connection is closed after
the batch and opened again for the next). Most periodic steps finish in well under a
second, and their results carry the whole output anyway (`stream` capture accumulates it
for the result): for them the stream adds nothing a user sees, only 1 request and 1 new
connection per batch (at 100 instances of hello-world, 20 of each a second). So every batch
opens its stream only once it has run `Timings.stream_after` seconds. A deploy too: with
the image already cached it is done in milliseconds (an instance's first batch, so one
stream per instance less while a deployment comes up, each a streaming call through both
yagna daemons to the ExeUnit), and a real download reports its progress once a second, so
the stream opening after a second loses no more than the first report.

The executor then fills in, from the results, what the stream did not say: the start of a
command it never saw begin, and output it missed (all of it for a batch that finished
before the stream opened; the beginning of a command running when it opened, as real yagna
does not replay a stream, which the local network's ExeUnit does).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from golem_deploy.engine.service import ImageDownload, _Step
from golem_deploy.yagna.models import ExeResult

__all__ = ["DownloadRate", "exit_code", "only_terminate_left", "unseen_output"]


def unseen_output(full: str | None, seen: str) -> str:
    """What of a command's whole output (`full`, from its result) the stream did not
    deliver (`seen`): the rest after what it saw; or, when the stream joined while the
    command ran and so saw only its end, the beginning it missed (written after the live
    part rather than lost). "" when there is nothing more, or `seen` is not part of it."""
    if not full or len(full) <= len(seen):
        return ""
    if full.startswith(seen):
        return full[len(seen) :]
    if full.endswith(seen):
        return full[: len(full) - len(seen)]
    return ""


class DownloadRate:
    """Turns a deploy's (done, total) reports into ImageDownload with the mean rate since
    the first report."""

    def __init__(self) -> None:
        self.started: float | None = None
        self._first_done = 0

    def update(self, done: int, total: int | None) -> ImageDownload:
        now = time.monotonic()
        if self.started is None:
            self.started, self._first_done = now, done
        elapsed = now - self.started
        rate = (done - self._first_done) / elapsed if elapsed > 0 else 0.0
        return ImageDownload(done=done, total=total, bytes_per_s=max(rate, 0.0))


def exit_code(message: str | None) -> int:
    """yagna reports non-zero exits as "ExeScript command exited with code <n>"."""
    if message:
        tail = message.rsplit(" ", 1)[-1]
        if tail.lstrip("-").isdigit():
            return int(tail)
    return -1


def only_terminate_left(steps: Sequence[_Step], results: Sequence[ExeResult]) -> bool:
    """Whether the batch's last command is `terminate` and every command before it has
    its result already (so the ExeUnit's end can only be that terminate's doing)."""
    last = steps[-1].command if steps else {}
    return "terminate" in last and len(results) >= len(steps) - 1
