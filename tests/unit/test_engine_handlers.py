"""Driving handlers and script options (no network): timeouts as yapapi takes them, batch
errors thrown into the handler, scripts that do not wait for their results."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest

from golem_deploy.engine import (
    BatchError,
    BatchTimeoutError,
    CommandExecutionError,
    CommandFailed,
)
from golem_deploy.engine.executor import ScriptExecutor
from golem_deploy.engine.handlers import PendingResults, drive
from golem_deploy.engine.service import CommandResult, Script, WorkContext
from golem_deploy.engine.timing import Timings
from golem_deploy.errors import GolemDeployError
from golem_deploy.yagna.models import RuntimeEvent

pytestmark = pytest.mark.anyio


def ctx() -> WorkContext:
    return WorkContext(activity_id="a", agreement_id="g", provider_id="p", provider_name="n")


def test_a_timeout_is_a_timedelta_or_seconds() -> None:
    assert ctx().new_script(timeout=timedelta(minutes=2)).timeout == 120.0
    assert ctx().new_script(timeout=1.5).timeout == 1.5
    assert ctx().new_script().timeout is None
    assert ctx().new_script(wait_for_results=False).wait_for_results is False


@pytest.mark.parametrize("bad", [0, -1, timedelta(0), float("nan"), float("inf")])
def test_a_timeout_that_is_no_duration_is_refused_where_it_is_written(bad: Any) -> None:
    with pytest.raises(GolemDeployError, match="positive duration"):
        ctx().new_script(timeout=bad)


def test_batch_errors_are_yapapis_hierarchy() -> None:
    assert issubclass(BatchTimeoutError, BatchError)
    assert issubclass(CommandFailed, BatchError)
    assert CommandExecutionError is CommandFailed
    error = CommandExecutionError(CommandResult(1, "run /bin/false", 1, None, "oops"))
    assert (error.command, error.stderr) == ("run /bin/false", "oops")


class SlowClient:
    """A batch that never finishes: results stay empty (each poll takes a moment)."""

    async def exec(self, activity_id: str, commands: list[dict[str, Any]]) -> str:
        return "b1"

    async def exec_results(self, activity_id: str, batch_id: str, *, timeout: float = 5.0) -> Any:
        await anyio.sleep(0.01)
        return []

    async def stream_exec(self, activity_id: str, batch_id: str) -> AsyncIterator[RuntimeEvent]:
        await anyio.sleep_forever()
        yield RuntimeEvent(batch_id, 0, "started")  # pragma: no cover


async def test_a_script_past_its_timeout_raises_batch_timeout_and_fails_its_steps() -> None:
    executor = ScriptExecutor(
        SlowClient(),  # type: ignore[arg-type]  # a stand-in with the methods used
        storage=None,
        emit=lambda event: None,
        service="svc",
        index=0,
        timings=Timings(exec_poll=0.0),
    )
    script = ctx().new_script(timeout=timedelta(milliseconds=50))
    step = script.run("/bin/sleep", "1000")
    with pytest.raises(BatchTimeoutError, match=r"svc\[0\]: the script did not finish within"):
        await executor.execute("a", script)
    with pytest.raises(BatchTimeoutError):
        await step
    assert not executor.lock.locked()


def done(script: Script) -> list[CommandResult]:
    return [CommandResult(0, s.describe, 0, "out") for s in script.steps]


async def test_a_batch_error_is_thrown_into_the_handler_which_may_carry_on() -> None:
    seen: list[str] = []

    async def handler() -> AsyncIterator[Script]:
        script = ctx().new_script(timeout=1)
        script.run("/bin/sleep", "9")
        try:
            yield script
        except BatchTimeoutError as e:
            seen.append(f"caught {type(e).__name__}")
        script = ctx().new_script()
        script.run("/bin/true")
        results = await (yield script)
        seen.append(f"then {results[0].stdout}")

    async def execute(script: Script) -> list[CommandResult]:
        if script.timeout is not None:
            raise BatchTimeoutError("too slow")
        return done(script)

    await drive(handler(), execute)
    assert seen == ["caught BatchTimeoutError", "then out"]


async def test_a_handler_that_does_not_catch_the_batch_error_fails_with_it() -> None:
    async def handler() -> AsyncIterator[Script]:
        yield ctx().new_script(timeout=1)

    async def execute(script: Script) -> list[CommandResult]:
        raise BatchTimeoutError("too slow")

    with pytest.raises(BatchTimeoutError, match="too slow"):
        await drive(handler(), execute)


async def test_without_waiting_the_handler_goes_on_while_the_script_runs() -> None:
    release = anyio.Event()
    order: list[str] = []

    async def handler() -> AsyncIterator[Script]:
        script = ctx().new_script(wait_for_results=False)
        script.run("/bin/echo")
        pending = yield script
        assert isinstance(pending, PendingResults) and not pending.done()
        order.append("handler went on")
        release.set()
        results = await pending
        order.append(f"results {results[0].stdout}")

    async def execute(script: Script) -> list[CommandResult]:
        await release.wait()
        order.append("script finished")
        return done(script)

    await drive(handler(), execute)
    assert order == ["handler went on", "script finished", "results out"]


async def test_without_waiting_a_batch_error_surfaces_where_the_results_are_awaited() -> None:
    caught: list[BaseException] = []

    async def handler() -> AsyncIterator[Script]:
        pending = yield ctx().new_script(wait_for_results=False)
        try:
            await pending
        except BatchError as e:
            caught.append(e)

    async def execute(script: Script) -> list[CommandResult]:
        raise BatchTimeoutError("late")

    await drive(handler(), execute)
    assert [str(e) for e in caught] == ["late"]


async def test_without_waiting_any_error_is_the_awaiters_and_none_fails_the_handler() -> None:
    class Gone(Exception):
        pass

    caught: list[BaseException] = []

    async def handler() -> AsyncIterator[Script]:
        yield ctx().new_script(wait_for_results=False)  # never awaited: not our business
        pending = yield ctx().new_script(wait_for_results=False)
        try:
            await pending
        except Gone as e:
            caught.append(e)

    async def execute(script: Script) -> list[CommandResult]:
        raise Gone("provider gone")

    await drive(handler(), execute)
    assert [str(e) for e in caught] == ["provider gone"]


async def test_a_handler_does_not_wait_for_scripts_run_elsewhere() -> None:
    started: list[Any] = []

    async def handler() -> AsyncIterator[Script]:
        yield ctx().new_script(wait_for_results=False)

    async def execute(script: Script) -> list[CommandResult]:
        raise AssertionError("not run: the background only collected it")

    await drive(handler(), execute, background=started.append)
    assert len(started) == 1  # handed over; the handler returned without it
