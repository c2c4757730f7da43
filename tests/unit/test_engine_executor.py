"""Script execution on its own: no Golem, no network, a scripted stand-in for the client.

The stand-in is not yagna: it answers exec / results / stream / state calls with what the
case needs (results, an ActivityGone, an outage), so each rule of the executor is checked
once. The protocol itself is exercised against real yagna in tests/integration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from golem_deploy.engine import events as ev
from golem_deploy.engine.executor import ProviderGone, ScriptExecutor
from golem_deploy.engine.service import CommandFailed, WorkContext
from golem_deploy.engine.timing import Timings
from golem_deploy.yagna.errors import ActivityGone, YagnaUnreachable
from golem_deploy.yagna.models import ActivityState, ExeResult, Identity, RuntimeEvent

pytestmark = pytest.mark.anyio
#: Every batch streams from its start, as before `stream_after` (the cases below that are
#: about deferring the stream say so).
FAST = Timings(retry_pause=0.0, output_grace=0.0, exec_poll=0.0, stream_after=0.0)


class Client:
    """Answers like yagna would for one activity; `exec_errors` are raised first."""

    def __init__(
        self,
        results: list[ExeResult],
        *,
        exec_errors: list[Exception] | None = None,
        results_errors: list[Exception] | None = None,
        stream: list[RuntimeEvent] | None = None,
        state: str = "Ready",
    ) -> None:
        self.results = results
        self.exec_errors = list(exec_errors or [])
        self.results_errors = list(results_errors or [])
        self.stream = stream or []
        self.state = state
        self.calls: list[str] = []
        self.opened = anyio.Event()  # set when the stream is opened

    async def exec(self, activity_id: str, commands: list[dict[str, Any]]) -> str:
        self.calls.append("exec")
        if self.exec_errors:
            raise self.exec_errors.pop(0)
        return "b1"

    async def exec_results(self, activity_id: str, batch_id: str, *, timeout: float = 5.0) -> Any:
        self.calls.append("results")
        if self.results_errors:
            raise self.results_errors.pop(0)
        return self.results

    async def stream_exec(self, activity_id: str, batch_id: str) -> AsyncIterator[RuntimeEvent]:
        self.calls.append("stream")
        self.opened.set()
        for event in self.stream:
            yield event

    async def activity_state(self, activity_id: str, timeout: float = 5.0) -> ActivityState:
        self.calls.append("state")
        return ActivityState(self.state, None)

    async def me(self) -> Identity:
        self.calls.append("me")
        return Identity(node_id="0xr", name="r")


def executor(
    client: Client, events: list[ev.EngineEvent], timings: Timings = FAST
) -> ScriptExecutor:
    return ScriptExecutor(
        client,  # type: ignore[arg-type]  # a stand-in with the methods the executor uses
        storage=None,
        emit=events.append,
        service="svc",
        index=0,
        timings=timings,
    )


def script() -> Any:
    ctx = WorkContext(activity_id="a1", agreement_id="g", provider_id="p", provider_name="n")
    s = ctx.new_script()
    s.run("/bin/echo", "one")
    s.run("/bin/echo", "two")
    return s


def ok(index: int, stdout: str, last: bool = False) -> ExeResult:
    return ExeResult(index, "Ok", last, stdout=stdout)


async def test_results_come_back_in_order_with_the_output_the_stream_missed() -> None:
    events: list[ev.EngineEvent] = []
    streamed = [RuntimeEvent("b1", 0, "stdout", text="one\n")]
    client = Client([ok(0, "one\n"), ok(1, "two\n", last=True)], stream=streamed)
    s = script()
    results = await executor(client, events).execute("a1", s)
    assert [r.stdout for r in results] == ["one\n", "two\n"]
    outputs = [e.text for e in events if isinstance(e, ev.CommandOutput)]
    assert outputs == ["one\n", "two\n"]  # "one" from the stream, "two" from the results
    assert (await s.steps[1].future).stdout == "two\n"


async def test_a_failed_command_is_thrown_with_its_exit_code() -> None:
    failed = ExeResult(1, "Error", True, message="ExeScript command exited with code 3")
    client = Client([ok(0, ""), failed])
    with pytest.raises(CommandFailed) as error:
        await executor(client, []).execute("a1", script())
    assert error.value.result.return_code == 3


async def test_activity_gone_is_the_provider_gone_at_once() -> None:
    gone = ActivityGone(500, "GSB error: endpoint address not found", "POST /exec")
    client = Client([], exec_errors=[gone])
    with pytest.raises(ProviderGone, match="ExeUnit is gone"):
        await executor(client, []).execute("a1", script())
    assert client.calls == ["exec"]  # no retry, no guessing from the text


async def test_an_unresponsive_activity_is_the_provider_gone() -> None:
    client = Client(
        [], exec_errors=[YagnaUnreachable("dropped", "POST /exec")], state="Unresponsive"
    )
    with pytest.raises(ProviderGone, match="unresponsive"):
        await executor(client, []).execute("a1", script())


async def test_an_unreachable_yagna_is_waited_for_not_blamed_on_the_provider() -> None:
    outage = YagnaUnreachable("connection refused", "POST /exec")
    client = Client([ok(0, ""), ok(1, "", last=True)], exec_errors=[outage])
    results = await executor(client, []).execute("a1", script())
    assert len(results) == 2
    assert client.calls[:4] == ["exec", "me", "state", "exec"]


async def test_no_activity_means_the_provider_is_gone() -> None:
    with pytest.raises(ProviderGone):
        await executor(Client([]), []).execute(None, script())


def shutdown_script(*before: str) -> Any:
    ctx = WorkContext(activity_id="a1", agreement_id="g", provider_id="p", provider_name="n")
    s = ctx.new_script()
    for word in before:
        s.run("/bin/echo", word)
    s.terminate()
    return s


GONE_AFTER_EXEC = ActivityGone(
    500, "GSB error: GetExecBatchResults: endpoint address not found", "GET /exec"
)


async def test_an_exeunit_gone_after_its_terminate_is_the_terminate_done() -> None:
    """A shutdown's `terminate` ends the ExeUnit, sometimes before its result is polled:
    that is the batch succeeding, not the provider vanishing."""
    client = Client([], results_errors=[GONE_AFTER_EXEC])
    s = shutdown_script()
    results = await executor(client, []).execute("a1", s)
    assert [r.return_code for r in results] == [0]
    assert (await s.steps[0].future).return_code == 0


async def test_an_exeunit_gone_before_the_commands_ahead_of_terminate_is_the_provider_gone() -> (
    None
):
    client = Client([], results_errors=[GONE_AFTER_EXEC])
    with pytest.raises(ProviderGone, match="ExeUnit is gone"):
        await executor(client, []).execute("a1", shutdown_script("bye"))


async def test_an_exeunit_gone_after_the_commands_ahead_of_terminate_is_the_terminate_done() -> (
    None
):
    client = Client([])

    async def then_gone(activity_id: str, batch_id: str, *, timeout: float = 5.0) -> Any:
        client.calls.append("results")
        if client.calls.count("results") == 1:
            return [ok(0, "bye\n")]  # the first poll sees the echo's result ...
        raise GONE_AFTER_EXEC  # ... the next finds the ExeUnit ended by the terminate

    client.exec_results = then_gone  # type: ignore[method-assign]
    results = await executor(client, []).execute("a1", shutdown_script("bye"))
    assert [r.stdout for r in results] == ["bye\n", None]


DEFERRED = Timings(retry_pause=0.0, output_grace=0.0, exec_poll=5.0, stream_after=0.01)


def told(events: list[ev.EngineEvent]) -> list[str]:
    """The events as `kind:command-or-text`, in order."""
    out = []
    for e in events:
        if isinstance(e, ev.CommandStarted):
            out.append(f"started:{e.command}")
        elif isinstance(e, ev.CommandOutput):
            out.append(f"{e.stream}:{e.text}")
        elif isinstance(e, ev.CommandFinished):
            out.append(f"finished:{e.command}")
    return out


async def test_a_short_batch_of_runs_opens_no_stream_and_tells_everything_from_its_results() -> (
    None
):
    events: list[ev.EngineEvent] = []
    client = Client([ok(0, "one\n"), ok(1, "two\n", last=True)])
    slow = Timings(retry_pause=0.0, output_grace=0.0, exec_poll=0.0, stream_after=3600)
    await executor(client, events, slow).execute("a1", script())
    assert client.calls == ["exec", "results"]  # no stream: 1 request and 1 connection less
    first, second = "run /bin/echo one", "run /bin/echo two"
    assert told(events) == [
        f"started:{first}",
        "stdout:one\n",
        f"finished:{first}",
        f"started:{second}",
        "stdout:two\n",
        f"finished:{second}",
    ]


async def test_a_quick_deploy_and_start_opens_no_stream_either() -> None:
    # a deploy of a cached image is done in milliseconds, and a download reports its
    # progress once a second: a stream opened after `stream_after` still shows it
    ctx = WorkContext(activity_id="a1", agreement_id="g", provider_id="p", provider_name="n")
    s = ctx.new_script()
    s.deploy()
    s.start()
    client = Client([ExeResult(0, "Ok", False), ExeResult(1, "Ok", True)])
    slow = Timings(retry_pause=0.0, output_grace=0.0, exec_poll=0.0, stream_after=3600)
    await executor(client, [], slow).execute("a1", s)
    assert client.calls == ["exec", "results"]


async def test_a_batch_still_running_after_stream_after_streams_its_output() -> None:
    events: list[ev.EngineEvent] = []
    first = [RuntimeEvent("b1", 0, "started"), RuntimeEvent("b1", 0, "stdout", text="one\n")]
    client = Client([ok(0, "one\n"), ok(1, "two\n", last=True)], stream=first)

    waits: list[float] = []

    async def when_streamed(activity_id: str, batch_id: str, *, timeout: float = 5.0) -> Any:
        client.calls.append("results")
        waits.append(timeout)
        if len(waits) == 1:
            await anyio.sleep(timeout)  # yagna's long poll: nothing finished in that time
            return []
        await client.opened.wait()  # still running when the stream opens
        return client.results

    client.exec_results = when_streamed  # type: ignore[method-assign]
    await executor(client, events, DEFERRED).execute("a1", script())
    # the stream is started when the first poll comes back unfinished, beside the second
    assert client.calls[:2] == ["exec", "results"]
    assert sorted(client.calls[2:]) == ["results", "stream"]
    assert 0 < waits[0] <= DEFERRED.stream_after  # the first poll lasts until the stream is due
    assert waits[1] == DEFERRED.exec_poll
    outputs = [e.text for e in events if isinstance(e, ev.CommandOutput)]
    assert outputs == ["one\n", "two\n"]  # "one" streamed, "two" from the results, once each


async def test_a_stream_joining_late_still_tells_the_start_and_the_output_it_missed() -> None:
    """Real yagna does not replay a stream: one opened while the second command runs sees
    only the end of its output. Its start is told when the stream first names it; the
    output printed before is told from the results, after the live part (not lost)."""
    events: list[ev.EngineEvent] = []
    tail = [RuntimeEvent("b1", 1, "stdout", text="two-b\n")]
    client = Client([ok(0, "one\n"), ok(1, "two-a\ntwo-b\n", last=True)], stream=tail)
    await executor(client, events, FAST).execute("a1", script())
    first, second = "run /bin/echo one", "run /bin/echo two"
    assert told(events) == [
        f"started:{second}",
        "stdout:two-b\n",
        f"started:{first}",
        "stdout:one\n",
        f"finished:{first}",
        "stdout:two-a\n",
        f"finished:{second}",
    ]
