"""Driving a Service handler: run the async generator, execute every Script it yields,
send the results back in, throw a failed command in (so the handler may catch it)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.service import CommandFailed, CommandResult, Script

__all__ = ["drive", "handler_event"]

Execute = Callable[[Script], Awaitable[list[CommandResult]]]


class _Results:
    """What `yield script` sends back into a handler: `await` it for the results list."""

    def __init__(self, results: list[CommandResult]) -> None:
        self.results = results

    def __await__(self) -> Generator[Any, None, list[CommandResult]]:
        if False:  # pragma: no cover - makes this a generator
            yield None
        return self.results


async def drive(gen: object, execute: Execute) -> None:
    """Run handler generator `gen` to its end, executing each yielded Script."""
    if not inspect.isasyncgen(gen):
        raise TypeError("Service handlers must be async generators yielding Scripts")
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        while True:
            try:
                if to_throw is not None:
                    script = await gen.athrow(to_throw)
                else:
                    script = await gen.asend(to_send)
            except StopAsyncIteration:
                return
            to_send, to_throw = None, None
            if not isinstance(script, Script):
                raise TypeError(f"a handler yielded {type(script).__name__}, not a Script")
            try:
                to_send = _Results(await execute(script))
            except CommandFailed as e:
                to_throw = e
    finally:
        await gen.aclose()


def handler_event(name: str, error: str | None) -> lc.Event:
    """The lifecycle event for handler `name` having returned (error None) or raised."""
    if name == "start":
        return lc.StartReturned() if error is None else lc.StartRaised(error)
    if name == "run":
        return lc.RunReturned() if error is None else lc.RunRaised(error)
    return lc.ShutdownReturned() if error is None else lc.ShutdownRaised(error)
