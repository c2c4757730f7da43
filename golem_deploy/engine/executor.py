"""Script execution on one activity: exec over REST, live output over SSE, results polled.

A ScriptExecutor needs only a YagnaClient and callbacks, not a Golem, so it can be tested
on its own. The poll is authoritative (SSE is best effort: output it missed is emitted from
the final results). A batch of plain `run` commands opens its stream only after
`Timings.stream_after` seconds, so the usual short periodic step costs yagna no stream at
all (engine/batch_output.py says why). Errors are classified by type: ActivityGone (and
an activity yagna reports Unresponsive/Terminated) raise ProviderGone; an unreachable yagna
is waited for (bounded) rather than blamed on the provider; anything else is retried a few
times, then raised for the lifecycle to judge.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.engine.batch_output import (
    DownloadRate,
    exit_code,
    only_terminate_left,
    unseen_output,
)
from golem_deploy.engine.script import UploadSourceError
from golem_deploy.engine.service import (
    BatchTimeoutError,
    CommandFailed,
    CommandResult,
    ImageDownload,
    Script,
    Storage,
    _Step,
)
from golem_deploy.engine.timing import Timings
from golem_deploy.errors import GolemDeployError
from golem_deploy.yagna.client import YagnaClient
from golem_deploy.yagna.errors import ActivityGone, YagnaError, YagnaUnreachable
from golem_deploy.yagna.models import ExeResult

__all__ = ["ProviderGone", "ScriptExecutor", "exit_code"]

log = logging.getLogger(__name__)


class ProviderGone(GolemDeployError):
    """The activity was terminated/lost on the provider side."""


class ScriptExecutor:
    """Runs the Scripts of one instance, one batch at a time (`lock` is shared with the
    health check command, which must not run while a script does)."""

    def __init__(
        self,
        client: YagnaClient,
        *,
        storage: Storage | None,
        emit: Callable[[ev.EngineEvent], None],
        service: str,
        index: int,
        timings: Timings,
        on_stdout: Callable[[str], None] = lambda line: None,
        on_download: Callable[[ImageDownload | None], None] = lambda download: None,
        reports_deploy_progress: Callable[[], bool] = lambda: False,
    ) -> None:
        self.client = client
        self.storage = storage
        self.emit = emit
        self.service = service
        self.index = index
        self.timings = timings
        self.on_stdout = on_stdout
        self.on_download = on_download
        self.reports_deploy_progress = reports_deploy_progress
        # (taken without a trip through the event loop when free, as it is for most batches)
        self.lock = anyio.Lock(fast_acquire=True)
        self.last_batch: str | None = None  # of the current activity
        #: (activity id, anyio clock) of the last batch results the ExeUnit answered:
        #: proof of life the watcher uses instead of asking for the activity's state.
        self._answered: tuple[str, float] | None = None

    async def execute(self, activity_id: str | None, script: Script) -> list[CommandResult]:
        """Execute one script on the activity; results in order; CommandFailed on failure."""
        steps = script.steps
        if not steps:
            return []
        if activity_id is None:
            raise ProviderGone("the activity is gone")
        try:
            for number, step in enumerate(steps):
                if step.before is not None:
                    if self.storage is None:
                        raise GolemDeployError(
                            f"`{step.describe}` needs file transfer, which is not available",
                            hint="see docs/engine.md (GFTP over yagna's gsb-api)",
                        )
                    try:
                        await step.before(self.storage)
                    except UploadSourceError as e:  # the step fails before it is sent
                        unread = CommandResult(number, step.describe, -1, None, None, e.message)
                        error = CommandFailed(unread, self.service, self.index)
                        for each in steps:
                            each.future._fail(error)
                        raise error from e
            # a script that does not wait for its results (yapapi's wait_for_results=False)
            # must not hold up the ones after it: it runs beside them, as in yapapi
            lock = self.lock if script.wait_for_results else contextlib.nullcontext()
            async with lock:
                if script.timeout is None:  # (no cancel scope: most batches have no timeout)
                    results, timed_out = await self._run_batch(activity_id, steps), False
                else:
                    with anyio.move_on_after(script.timeout) as deadline:
                        results = await self._run_batch(activity_id, steps)
                    timed_out = deadline.cancelled_caught
            if timed_out:
                # thrown into the handler like a failed command (yapapi's BatchTimeoutError)
                timeout = BatchTimeoutError(
                    f"{self.service}[{self.index}]: the script did not finish within "
                    f"{script.timeout:g} s (new_script(timeout=...))"
                )
                for step in steps:
                    if not step.future.done():
                        step.future._fail(timeout)
                raise timeout
            failed: CommandResult | None = None
            for step, result in zip(steps, results, strict=False):
                if result.success and failed is None:
                    if step.after is not None:
                        await step.after(result)
                    step.future._set(result)
                else:
                    failed = failed or result
            if failed is None and len(results) < len(steps):
                failed = CommandResult(
                    len(results),
                    steps[len(results)].describe,
                    -1,
                    None,
                    None,
                    "the batch ended early",
                )
            if failed is not None:
                error = CommandFailed(failed, self.service, self.index)
                for step in steps:
                    if not step.future.done():
                        step.future._fail(error)
                raise error
            return results
        finally:
            releases = [release for step in steps for release in step.cleanup]
            if releases:
                with anyio.CancelScope(shield=True):
                    for release in releases:
                        with contextlib.suppress(Exception):
                            await release()

    async def _run_batch(self, activity_id: str, steps: list[_Step]) -> list[CommandResult]:
        client, t = self.client, self.timings
        for tries_left in range(t.exec_tries - 1, -1, -1):
            try:
                batch_id = await client.exec(activity_id, self._commands(steps))
                self.last_batch = batch_id
                break
            except YagnaError as e:
                if not tries_left:
                    raise
                await self._check_gone(activity_id, e)
        streamed: dict[int, dict[str, str]] = {}
        started: set[int] = set()  # the commands whose CommandStarted was emitted
        download = DownloadRate()

        async def stream(stream_done: anyio.Event) -> None:
            """Live output over SSE; best effort (the poll below is authoritative)."""
            try:
                async for rt in client.stream_exec(activity_id, batch_id):
                    if rt.batch_id != batch_id or not 0 <= rt.index < len(steps):
                        continue
                    if rt.index not in started:  # its start, or the first word of one
                        self._started(rt.index, steps, started)  # begun before we joined
                    if rt.kind == "progress" and rt.progress is not None:
                        if "deploy" in steps[rt.index].command:
                            self.on_download(download.update(*rt.progress))
                    elif rt.kind in ("stdout", "stderr") and rt.text:
                        self._output(rt.kind, rt.text)
                        buf = streamed.setdefault(rt.index, {})
                        buf[rt.kind] = buf.get(rt.kind, "") + rt.text
                    elif rt.kind == "finished" and (
                        rt.index == len(steps) - 1 or rt.return_code != 0
                    ):
                        return
            except YagnaError as e:
                log.debug("exec stream %s: %s", batch_id, e)
            finally:
                if download.started is not None:  # a report was shown: the deploy is over
                    self.on_download(None)
                stream_done.set()

        results: list[ExeResult] = []
        try:
            results = await self._poll(activity_id, batch_id, steps, stream, t.stream_after)
        except BaseExceptionGroup as group:
            # The task group wraps what the poll raised (ProviderGone, a YagnaError): the
            # handler and the lifecycle must see that error itself, not "unhandled errors in
            # a TaskGroup", or a vanished provider passes for a failed run step.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        return [self._result(r, steps, streamed, started) for r in results if r.index < len(steps)]

    def _started(self, index: int, steps: list[_Step], started: set[int]) -> None:
        """CommandStarted for `steps[index]` (once per batch)."""
        started.add(index)
        self.emit(
            ev.CommandStarted(service=self.service, index=self.index, command=steps[index].describe)
        )

    def _commands(self, steps: list[_Step]) -> list[dict[str, Any]]:
        """The batch as sent: a deploy asks for progress reports (once a second) when the
        provider's offer says it sends them and the script did not ask itself."""
        commands = [s.command for s in steps]
        if not self.reports_deploy_progress():
            return commands
        return [
            {"deploy": {"progress": {"updateInterval": "1s"}, **c["deploy"]}}
            if isinstance(c.get("deploy"), dict)
            else c
            for c in commands
        ]

    async def _poll(
        self,
        activity_id: str,
        batch_id: str,
        steps: list[_Step],
        stream: Callable[[anyio.Event], Coroutine[Any, Any, None]],
        delay: float,
    ) -> list[ExeResult]:
        """Poll the batch's results until it finished, while `stream` relays its output
        (until it sets the event it is given). The stream is started `delay` seconds after
        the batch was sent (`Timings.stream_after`, see batch_output.py; at once when <= 0):
        the results' first long poll lasts that long at most, so a batch done sooner never
        starts it, and one still running starts it then.

        Until the stream is due there is no task group: the usual periodic step is done
        by then, and 20 of them a second (100 instances) paid for a task group each."""
        t = self.timings
        polled = _Polled(steps)
        began = time.monotonic()
        while (left := delay - (time.monotonic() - began)) > 0:
            if await self._poll_once(activity_id, batch_id, polled, min(t.exec_poll, left)):
                return polled.results
        stream_done = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream, stream_done)
            while not await self._poll_once(activity_id, batch_id, polled, t.exec_poll):
                pass
            # Let trailing output events arrive: the stream ends at the last command's
            # "finished". (Waiting for output from every command instead cost a full 0.5 s
            # per batch whenever a command printed nothing, e.g. deploy and start.)
            with anyio.move_on_after(t.output_grace):
                await stream_done.wait()
            tg.cancel_scope.cancel()
        return polled.results

    async def _poll_once(
        self, activity_id: str, batch_id: str, polled: _Polled, wait: float
    ) -> bool:
        """One long poll (at most `wait` s) of the batch's results into `polled`; whether
        the batch is finished. Errors are retried up to `exec_poll_failures` in a row."""
        steps = polled.steps
        try:
            polled.results = await self.client.exec_results(activity_id, batch_id, timeout=wait)
        except YagnaError as e:
            polled.failures += 1
            if polled.failures >= self.timings.exec_poll_failures:
                raise
            try:
                await self._check_gone(activity_id, e)
            except ProviderGone:
                if not only_terminate_left(steps, polled.results):
                    raise
                # The ExeUnit ended because this batch told it to (a shutdown's
                # `terminate`, which yagna accepted): the batch succeeded. Taking it for a
                # vanished provider avoided that provider and skipped its invoice.
                polled.results = [*polled.results, ExeResult(len(steps) - 1, "Ok", True)]
                return True
            return False
        self.saw_answer(activity_id)
        polled.failures = 0
        results = polled.results
        return bool(results) and (results[-1].is_batch_finished or len(results) == len(steps))

    def _result(
        self,
        r: ExeResult,
        steps: list[_Step],
        streamed: dict[int, dict[str, str]],
        started: set[int],
    ) -> CommandResult:
        if r.index not in started:  # the stream never saw it (or was never opened)
            self._started(r.index, steps, started)
        for kind, full in (("stdout", r.stdout), ("stderr", r.stderr)):
            missed = unseen_output(full, streamed.get(r.index, {}).get(kind, ""))
            if missed:
                self._output(kind, missed)  # output the stream missed
        code = 0 if r.result == "Ok" else exit_code(r.message)
        result = CommandResult(
            index=r.index,
            command=steps[r.index].describe,
            return_code=code,
            stdout=r.stdout,
            stderr=r.stderr,
            message=r.message if r.result == "Error" else None,
        )
        self.emit(
            ev.CommandFinished(
                service=self.service,
                index=self.index,
                command=result.command,
                return_code=code,
                message=result.message,
            )
        )
        return result

    def saw_answer(self, activity_id: str) -> None:
        """The ExeUnit of `activity_id` just answered a batch's results."""
        self._answered = (activity_id, time.monotonic())

    def answered_within(self, activity_id: str, seconds: float) -> bool:
        """Whether the ExeUnit of `activity_id` answered a batch's results in the last
        `seconds`: only the ExeUnit answers those (yagna answers ActivityGone when it is off
        the bus), so it was alive then."""
        if self._answered is None or self._answered[0] != activity_id:
            return False
        return time.monotonic() - self._answered[1] < seconds

    async def _check_gone(self, activity_id: str, error: YagnaError) -> None:
        """After an exec error: raise ProviderGone if the activity is lost, else pause.

        ActivityGone is yagna saying the provider's ExeUnit is no longer on the bus. When
        yagna itself did not answer, that says nothing about the provider: wait for yagna to
        come back (bounded) instead of spending the caller's few retries within a second of
        a yagna restart."""
        if isinstance(error, ActivityGone):
            raise ProviderGone(f"the provider's ExeUnit is gone ({error.detail})") from error
        if isinstance(error, YagnaUnreachable):
            await self.wait_for_yagna()
        state = None
        with contextlib.suppress(YagnaError), anyio.move_on_after(self.timings.state_check_timeout):
            state = await self.client.activity_state(activity_id)
        if state is not None and state.lost:
            raise ProviderGone(f"activity {state.state.lower()} on the provider") from error
        await anyio.sleep(self.timings.retry_pause)

    async def wait_for_yagna(self) -> bool:
        """Until yagna answers again (any answer), at most `yagna_outage_grace` seconds;
        whether it answered."""
        with anyio.move_on_after(self.timings.yagna_outage_grace):
            while True:
                try:
                    await self.client.me()
                    return True
                except YagnaUnreachable:
                    pass
                except YagnaError:
                    return True  # it answers, if only with an error
                await anyio.sleep(self.timings.retry_pause)
        return False

    def _output(self, stream: str, text: str) -> None:
        self.emit(
            ev.CommandOutput(service=self.service, index=self.index, stream=stream, text=text)
        )
        if stream == "stdout":
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if lines:
                self.on_stdout(lines[-1][-200:])


@dataclass
class _Polled:
    """What the polls of one batch found so far (`failures`: errors in a row)."""

    steps: list[_Step]
    results: list[ExeResult] = field(default_factory=list)
    failures: int = 0
