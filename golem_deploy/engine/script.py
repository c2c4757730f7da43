"""Scripts: the batches of commands a Service handler yields, and what comes back.

`self._ctx.new_script()` makes a Script; every step method returns a `StepFuture` whose
await gives that step's `CommandResult` once the script was yielded and executed. A batch
that fails (a command's non-zero exit or ExeUnit error: CommandFailed; a script past its
timeout: BatchTimeoutError) is thrown into the handler as a BatchError it may catch, as in
yapapi. Transfers publish/receive through a `Storage` (GFTP over yagna's bus) just around
their step.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from golem_deploy.errors import GolemDeployError

if TYPE_CHECKING:
    from golem_deploy.engine.service import WorkContext

__all__ = [
    "BatchError",
    "BatchTimeoutError",
    "CommandExecutionError",
    "CommandFailed",
    "CommandResult",
    "Script",
    "StepFuture",
    "Storage",
    "timeout_seconds",
]

DOWNLOAD_BYTES_LIMIT_DEFAULT = 1024 * 1024
_STREAM: dict[str, Any] = {"stdout": {"stream": {}}, "stderr": {"stream": {}}}


@dataclass(frozen=True)
class CommandResult:
    """What one step of a script produced."""

    index: int
    command: str
    return_code: int
    stdout: str | None = None
    stderr: str | None = None
    message: str | None = None

    @property
    def success(self) -> bool:
        return self.return_code == 0 and self.message is None


class BatchError(GolemDeployError):
    """A script (one batch of commands) did not complete; thrown INTO the handler generator
    at its `yield`, so the handler may catch it and carry on (yapapi's BatchError)."""


class BatchTimeoutError(BatchError):
    """The script ran longer than its `new_script(timeout=...)` (yapapi's name)."""


class CommandFailed(BatchError):
    """A step of a script failed on the provider (thrown into the handler generator)."""

    def __init__(self, result: CommandResult, service: str = "", index: int = -1) -> None:
        where = f"{service}[{index}]: " if service else ""
        detail = result.message or f"exited with code {result.return_code}"
        stderr = (result.stderr or "").strip()
        tail = f"\n  stderr: {stderr[-500:]}" if stderr else ""
        super().__init__(f"{where}`{result.command}` failed: {detail}{tail}")
        self.result = result

    @property
    def command(self) -> str:
        """The step that failed (yapapi's CommandExecutionError.command)."""
        return self.result.command

    @property
    def stderr(self) -> str | None:
        """What the failed step wrote to stderr (yapapi's CommandExecutionError.stderr)."""
        return self.result.stderr


#: yapapi's name for a failed command; `.message` here is the whole error text, the
#: ExeUnit's own message is `.result.message`.
CommandExecutionError = CommandFailed


class StepFuture:
    """The eventual result of one script step; `await step` gives its CommandResult."""

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._result: CommandResult | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done.is_set()

    def result(self) -> CommandResult:
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise RuntimeError("the step has not finished yet (yield its script first)")
        return self._result

    def _set(self, result: CommandResult) -> None:
        self._result = result
        self._done.set()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def __await__(self) -> Generator[Any, None, CommandResult]:
        yield from self._done.wait().__await__()
        return self.result()


class Storage(Protocol):
    """Moves files between this machine and a provider (GFTP over the bus)."""

    async def publish(self, data: bytes) -> tuple[str, Callable[[], Awaitable[None]]]:
        """Make `data` fetchable by the provider; returns (url, release)."""
        ...

    async def receive(
        self,
    ) -> tuple[str, Callable[[], Awaitable[bytes]], Callable[[], Awaitable[None]]]:
        """A URL the provider can upload to; returns (url, wait_for_data, release)."""
        ...


@dataclass
class _Step:
    """One command of a script plus hooks that run before/after it (transfers)."""

    command: dict[str, Any]
    describe: str
    future: StepFuture = field(default_factory=StepFuture)
    before: Callable[[Storage], Awaitable[None]] | None = None
    after: Callable[[CommandResult], Awaitable[None]] | None = None
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def timeout_seconds(timeout: timedelta | float | None) -> float | None:
    """A script timeout as seconds: yapapi passes a timedelta, seconds are accepted too."""
    if timeout is None:
        return None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not seconds > 0 or seconds == float("inf"):
        raise GolemDeployError(
            f"a script timeout must be a positive duration, got {timeout!r}",
            hint="pass e.g. new_script(timeout=timedelta(minutes=5)) or timeout=300",
        )
    return seconds


class Script:
    """An ordered batch of commands executed on one activity in one exec call.

    `timeout` (a timedelta or seconds) bounds the whole batch: past it the handler gets a
    BatchTimeoutError thrown in at its `yield`. With `wait_for_results=False` the handler
    resumes at once and the batch runs meanwhile (yapapi's semantics): what `yield` gives
    back is awaitable for the results, and a failure surfaces when it is awaited."""

    def __init__(
        self,
        ctx: WorkContext,
        timeout: timedelta | float | None = None,
        wait_for_results: bool = True,
    ) -> None:
        self._ctx = ctx
        self.timeout: float | None = timeout_seconds(timeout)
        self.wait_for_results = wait_for_results
        self._steps: list[_Step] = []

    @property
    def steps(self) -> list[_Step]:
        return self._steps

    def _add(self, command: dict[str, Any], describe: str) -> _Step:
        step = _Step(command=command, describe=describe)
        self._steps.append(step)
        return step

    # ------------------------------------------------------------------- plain commands

    def deploy(self, **kwargs: object) -> StepFuture:
        return self._add({"deploy": kwargs}, "deploy").future

    def start(self, *args: str) -> StepFuture:
        return self._add({"start": {"args": list(args)}}, "start").future

    def terminate(self) -> StepFuture:
        return self._add({"terminate": {}}, "terminate").future

    def run(self, cmd: str, *args: str, env: dict[str, str] | None = None) -> StepFuture:
        """Run `cmd args...` on the provider; stdout/stderr are streamed and kept.

        `env` is applied portably by wrapping the command in /usr/bin/env (yapapi accepts but
        silently drops it)."""
        argv = [cmd, *args]
        if env:
            argv = ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), *argv]
        body = {"entry_point": argv[0], "args": argv[1:], "capture": _STREAM}
        return self._add({"run": body}, "run " + shlex.join(argv)).future

    # --------------------------------------------------------------------- transfers

    def upload_bytes(self, data: bytes, dst: str) -> StepFuture:
        step = self._add({"transfer": {"from": "", "to": f"container:{dst}"}}, f"upload {dst}")

        async def before(storage: Storage) -> None:
            url, release = await storage.publish(data)
            step.command["transfer"]["from"] = url
            step.cleanup.append(release)

        step.before = before
        return step.future

    def upload_file(self, src: str | Path, dst: str) -> StepFuture:
        path = Path(src)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise GolemDeployError(
                f"cannot read {path} for upload: {e.strerror}", hint="check the upload's src"
            ) from e
        return self.upload_bytes(data, dst)

    def upload_json(self, data: object, dst: str) -> StepFuture:
        return self.upload_bytes(json.dumps(data).encode(), dst)

    def download_bytes(
        self,
        src: str,
        on_download: Callable[[bytes], Awaitable[None] | None] | None = None,
        limit: int = DOWNLOAD_BYTES_LIMIT_DEFAULT,
    ) -> StepFuture:
        step = self._add({"transfer": {"from": f"container:{src}", "to": ""}}, f"download {src}")
        wait_data: list[Callable[[], Awaitable[bytes]]] = []

        async def before(storage: Storage) -> None:
            url, wait, release = await storage.receive()
            step.command["transfer"]["to"] = url
            wait_data.append(wait)
            step.cleanup.append(release)

        async def after(result: CommandResult) -> None:
            data = await wait_data[0]()
            if len(data) > limit:
                raise GolemDeployError(
                    f"download of {src} is {len(data)} bytes, over the limit of {limit}"
                )
            if on_download is not None:
                maybe = on_download(data)
                if maybe is not None:
                    await maybe

        step.before = before
        step.after = after
        return step.future

    def download_file(self, src: str, dst: str | Path) -> StepFuture:
        target = Path(dst)

        def write(data: bytes) -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

        return self.download_bytes(src, write, limit=1 << 40)

    def download_json(
        self,
        src: str,
        on_download: Callable[[object], Awaitable[None] | None],
        limit: int = DOWNLOAD_BYTES_LIMIT_DEFAULT,
    ) -> StepFuture:
        def parse(data: bytes) -> Awaitable[None] | None:
            return on_download(json.loads(data))

        return self.download_bytes(src, parse, limit)
