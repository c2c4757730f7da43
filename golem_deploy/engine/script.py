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
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from golem_deploy.engine.script_args import (
    CaptureContext,
    CaptureSpec,
    ProgressArgs,
    capture_dict,
    progress_dict,
)
from golem_deploy.errors import GolemDeployError

if TYPE_CHECKING:
    from golem_deploy.engine.service import WorkContext

__all__ = [
    "BatchError",
    "BatchTimeoutError",
    "CaptureContext",
    "CommandExecutionError",
    "CommandFailed",
    "CommandResult",
    "ProgressArgs",
    "Script",
    "StepFuture",
    "Storage",
    "UploadSourceError",
    "timeout_seconds",
]

DOWNLOAD_BYTES_LIMIT_DEFAULT = 1024 * 1024


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


class UploadSourceError(GolemDeployError):
    """A local file to upload could not be read when its script executed (the executor
    fails that step with it, so the handler gets a CommandFailed it can catch)."""


Release = Callable[[], Awaitable[None]]


class Storage(Protocol):
    """Moves files between this machine and a provider (GFTP over the bus)."""

    async def publish(self, data: bytes) -> tuple[str, Release]:
        """Make `data` fetchable by the provider; returns (url, release)."""
        ...

    async def publish_file(self, path: Path) -> tuple[str, Release]:
        """Make the file at `path` fetchable, read chunk by chunk as the provider asks for
        it; returns (url, release). OSError when it cannot be opened."""
        ...

    async def receive_file(self, path: Path) -> tuple[str, Callable[[], Awaitable[int]], Release]:
        """A URL the provider can upload to; what arrives is written to `path`, which
        exists (complete and verified) once `wait()` returned its size."""
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

    def deploy(self, progress_args: ProgressArgs | None = None, **kwargs: object) -> StepFuture:
        """Deploy the image; `progress_args` asks for download progress reports."""
        return self._add({"deploy": {**kwargs, **progress_dict(progress_args)}}, "deploy").future

    def start(self, *args: str) -> StepFuture:
        return self._add({"start": {"args": list(args)}}, "start").future

    def terminate(self) -> StepFuture:
        return self._add({"terminate": {}}, "terminate").future

    def run(
        self,
        cmd: str,
        *args: str,
        env: dict[str, str] | None = None,
        stderr: CaptureSpec | None = None,
        stdout: CaptureSpec | None = None,
    ) -> StepFuture:
        """Run `cmd args...` on the provider; stdout/stderr are streamed and kept unless a
        `CaptureContext` says otherwise (yapapi's `stdout=`/`stderr=`).

        `env` is applied portably by wrapping the command in /usr/bin/env (yapapi accepts but
        silently drops it)."""
        argv = [cmd, *args]
        if env:
            argv = ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), *argv]
        body = {"entry_point": argv[0], "args": argv[1:], "capture": capture_dict(stdout, stderr)}
        return self._add({"run": body}, "run " + shlex.join(argv)).future

    # --------------------------------------------------------------------- transfers
    # yapapi's names and semantics: files are read when the script executes, streamed to
    # the provider chunk by chunk, and downloads go to disk as they arrive.

    def upload_bytes(
        self, data: bytes, dst_path: str, progress_args: ProgressArgs | None = None
    ) -> StepFuture:
        """Send `data` to `dst_path` on the provider."""

        async def publish(storage: Storage) -> tuple[str, Release]:
            return await storage.publish(data)

        return self._upload(publish, dst_path, progress_args)

    def upload_file(
        self, src_path: str | Path, dst_path: str, progress_args: ProgressArgs | None = None
    ) -> StepFuture:
        """Send the local file `src_path` to `dst_path` on the provider. The file is read
        when the script executes, chunk by chunk as the provider fetches it; one that
        cannot be read then fails this step (a CommandFailed thrown into the handler)."""
        path = Path(src_path)

        async def publish(storage: Storage) -> tuple[str, Release]:
            try:
                return await storage.publish_file(path)
            except OSError as e:
                raise UploadSourceError(
                    f"cannot read {path} for upload: {e.strerror}",
                    hint="check the upload's src_path",
                ) from e

        return self._upload(publish, dst_path, progress_args)

    def upload_json(
        self, data: object, dst_path: str, progress_args: ProgressArgs | None = None
    ) -> StepFuture:
        return self.upload_bytes(json.dumps(data).encode("utf-8"), dst_path, progress_args)

    def download_from_url(
        self, src_url: str, dst_path: str, progress_args: ProgressArgs | None = None
    ) -> StepFuture:
        """The provider fetches `src_url` itself (from the internet, if its offer allows
        outbound traffic) into `dst_path`; nothing passes through this machine."""
        command = _transfer(src_url, f"container:{dst_path}", progress_args)
        return self._add(command, f"download {src_url} to {dst_path}").future

    def download_file(
        self, src_path: str, dst_path: str | Path, progress_args: ProgressArgs | None = None
    ) -> StepFuture:
        """Fetch `src_path` from the provider into the local file `dst_path`, written as it
        arrives (never whole in memory); the file appears complete or not at all."""
        return self._download(src_path, Path(dst_path), None, progress_args)

    def download_bytes(
        self,
        src_path: str,
        on_download: Callable[[bytes], Awaitable[None] | None] | None = None,
        limit: int = DOWNLOAD_BYTES_LIMIT_DEFAULT,
        progress_args: ProgressArgs | None = None,
    ) -> StepFuture:
        """Fetch `src_path` and call `on_download` with its first `limit` bytes (a longer
        file is cut there, as yapapi does); only those bytes are ever held in memory."""

        async def deliver(received: Path) -> None:
            data = await anyio.to_thread.run_sync(_read_head, received, limit)
            if on_download is not None:
                maybe = on_download(data)
                if maybe is not None:
                    await maybe

        return self._download(src_path, None, deliver, progress_args)

    def download_json(
        self,
        src_path: str,
        on_download: Callable[[object], Awaitable[None] | None],
        limit: int = DOWNLOAD_BYTES_LIMIT_DEFAULT,
        progress_args: ProgressArgs | None = None,
    ) -> StepFuture:
        def parse(data: bytes) -> Awaitable[None] | None:
            return on_download(json.loads(data))

        return self.download_bytes(src_path, parse, limit, progress_args)

    def _upload(
        self,
        publish: Callable[[Storage], Awaitable[tuple[str, Release]]],
        dst_path: str,
        progress_args: ProgressArgs | None,
    ) -> StepFuture:
        step = self._add(
            _transfer("", f"container:{dst_path}", progress_args), f"upload {dst_path}"
        )

        async def before(storage: Storage) -> None:
            url, release = await publish(storage)
            step.cleanup.append(release)
            step.command["transfer"]["from"] = url

        step.before = before
        return step.future

    def _download(
        self,
        src_path: str,
        into: Path | None,
        deliver: Callable[[Path], Awaitable[None]] | None,
        progress_args: ProgressArgs | None,
    ) -> StepFuture:
        """A download into `into`, or (None) into a scratch file handed to `deliver`."""
        command = _transfer(f"container:{src_path}", "", progress_args)
        step = self._add(command, f"download {src_path}")
        received: list[tuple[Path, Callable[[], Awaitable[int]]]] = []

        async def before(storage: Storage) -> None:
            target = into
            if target is None:
                scratch = Path(tempfile.mkdtemp(prefix="golem-deploy-download-"))
                step.cleanup.append(partial(_remove_tree, scratch))
                target = scratch / "data"
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
            url, wait, release = await storage.receive_file(target)
            step.cleanup.insert(0, release)  # stop receiving before the scratch goes
            step.command["transfer"]["to"] = url
            received.append((target, wait))

        async def after(result: CommandResult) -> None:
            target, wait = received[0]
            await wait()
            if deliver is not None:
                await deliver(target)

        step.before = before
        step.after = after
        return step.future


def _transfer(src: str, dst: str, progress_args: ProgressArgs | None) -> dict[str, Any]:
    return {"transfer": {"from": src, "to": dst, **progress_dict(progress_args)}}


def _read_head(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        return f.read(max(limit, 0))


async def _remove_tree(path: Path) -> None:
    await anyio.to_thread.run_sync(partial(shutil.rmtree, path, ignore_errors=True))
