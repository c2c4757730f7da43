"""Driving a Service handler: run the async generator, execute every Script it yields,
send the results back in, throw a failed batch in (so the handler may catch it).

A script with `wait_for_results=False` runs in a task of its own while the handler goes on
(yapapi's semantics): the handler gets back an awaitable of the results at once, and any
error of that script surfaces where it is awaited (a vanished provider is noticed by the
watcher anyway). The task runs where `background` puts it: the runner gives it the
provider attempt's lifetime, so a handler that returns does not wait for it (yapapi's
handlers do not either); without `background` the handler's own end waits for it."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Generator
from functools import partial
from typing import Any

import anyio

from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.service import BatchError, CommandResult, Script

__all__ = ["PendingResults", "drive", "handler_event"]

log = logging.getLogger(__name__)
Execute = Callable[[Script], Awaitable[list[CommandResult]]]
Background = Callable[[Callable[[], Awaitable[None]]], None]


class _Results:
    """What `yield script` sends back into a handler: `await` it for the results list."""

    def __init__(self, results: list[CommandResult]) -> None:
        self.results = results

    def __await__(self) -> Generator[Any, None, list[CommandResult]]:
        if False:  # pragma: no cover - makes this a generator
            yield None
        return self.results


class PendingResults:
    """The results of a script still running (`wait_for_results=False`): `await` them;
    the script's error (a BatchError, or what ended its execution) is raised there."""

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._results: list[CommandResult] = []
        self._error: Exception | None = None

    def done(self) -> bool:
        return self._done.is_set()

    def _finish(self, results: list[CommandResult], error: Exception | None) -> None:
        self._results, self._error = results, error
        self._done.set()

    def __await__(self) -> Generator[Any, None, list[CommandResult]]:
        yield from self._done.wait().__await__()
        if self._error is not None:
            raise self._error
        return self._results


async def drive(gen: object, execute: Execute, background: Background | None = None) -> None:
    """Run handler generator `gen` to its end, executing each yielded Script (those with
    `wait_for_results=False` as tasks started by `background`)."""
    if not inspect.isasyncgen(gen):
        raise TypeError("Service handlers must be async generators yielding Scripts")

    async def in_background(script: Script, pending: PendingResults) -> None:
        try:
            results = await execute(script)
        except Exception as e:  # the awaiter's to handle, as a yielded script's would be
            if not isinstance(e, BatchError):
                log.info("a script that did not wait for its results failed: %s", e)
            pending._finish([], e)
            return
        pending._finish(results, None)

    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            while True:
                try:
                    if to_throw is not None:
                        script = await gen.athrow(to_throw)
                    else:
                        script = await gen.asend(to_send)
                except StopAsyncIteration:
                    break
                to_send, to_throw = None, None
                if not isinstance(script, Script):
                    raise TypeError(f"a handler yielded {type(script).__name__}, not a Script")
                if not script.wait_for_results:
                    to_send = PendingResults()
                    (background or tg.start_soon)(partial(in_background, script, to_send))
                    continue
                try:
                    to_send = _Results(await execute(script))
                except BatchError as e:
                    to_throw = e
    except BaseExceptionGroup as group:
        # the runner judges the error itself (a vanished provider, a failed handler), not
        # "unhandled errors in a TaskGroup"
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        await gen.aclose()


def handler_event(name: str, error: str | None) -> lc.Event:
    """The lifecycle event for handler `name` having returned (error None) or raised."""
    if name == "start":
        return lc.StartReturned() if error is None else lc.StartRaised(error)
    if name == "run":
        return lc.RunReturned() if error is None else lc.RunRaised(error)
    return lc.ShutdownReturned() if error is None else lc.ShutdownRaised(error)
