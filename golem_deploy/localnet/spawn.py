"""Starting a child (a sandbox's init, an unsealed activity's command) from the big, busy
host process without fork()ing it.

Why: the local network's host runs on uvloop (golem_deploy/event_loop.py), and uvloop's
``subprocess_exec`` is a fork(): the kernel copies the page tables of the whole host, and its
event loop stands still meanwhile -- 4-10 ms per sandbox, about 10 % of the host's samples
while `up` of 100 instances started 100 sandboxes at once (py-spy). CPython's own
``subprocess.Popen`` uses vfork() (the child borrows the parent's memory until it execs):
~0.5 ms, in a worker thread. So the init is started with Popen, and the loop learns that
it ended through a pidfd (Linux 5.3+), which turns readable then. Where a pidfd cannot be
had, anyio's ``open_process`` is used as before.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from signal import SIGKILL, SIGTERM, Signals

import anyio
import anyio.abc

from golem_deploy.localnet.sandbox_control import PipeStream

__all__ = ["open_process"]


async def open_process(
    argv: Sequence[str],
    *,
    stdin: int,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    start_new_session: bool = False,
) -> anyio.abc.Process:
    """Start `argv` with `stdin` (a descriptor, or subprocess.DEVNULL) as its standard input
    and pipes for its stdout and stderr: anyio.open_process's contract for that case, with
    the same `cwd`, `env` and `start_new_session`."""
    if not _pidfds_work():
        return await anyio.open_process(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=start_new_session,
        )

    # In a worker thread: Popen returns only once the child has exec'd (its error pipe
    # closed), ~5 ms on a busy machine that the host's loop would stand still for. Shielded:
    # a child started for a caller cancelled meanwhile is returned, and the caller's next
    # await, with the process in its hands, ends it (the sandbox kills its init).
    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=start_new_session,
        )

    with anyio.CancelScope(shield=True):
        popen = await anyio.to_thread.run_sync(start)
    try:
        pidfd = os.pidfd_open(popen.pid)
    except BaseException:  # out of descriptors, say: leave nothing behind
        popen.kill()
        popen.communicate()
        raise
    return _Process(popen, pidfd)


@functools.cache
def _pidfds_work() -> bool:
    """Whether this kernel (and its seccomp policy) gives pidfds: Linux 5.3 and later."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


class _Process(anyio.abc.Process):
    """A Popen child as an anyio Process: its exit seen through its pidfd."""

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int) -> None:
        assert popen.stdout is not None and popen.stderr is not None
        self._popen = popen
        self._pidfd = pidfd
        self._stdout = PipeStream(os.dup(popen.stdout.fileno()))
        self._stderr = PipeStream(os.dup(popen.stderr.fileno()))
        popen.stdout.close()  # the streams own duplicates: one owner per descriptor
        popen.stderr.close()

    async def wait(self) -> int:
        while (code := self._popen.poll()) is None:
            await anyio.wait_readable(self._pidfd)
        self._close_pidfd()
        return code

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            fd, self._pidfd = self._pidfd, -1
            anyio.notify_closing(fd)
            os.close(fd)

    def terminate(self) -> None:
        self.send_signal(SIGTERM)

    def kill(self) -> None:
        self.send_signal(SIGKILL)

    def send_signal(self, signal: Signals) -> None:
        if self._popen.poll() is None:  # never a signal to a reaped pid, reused perhaps
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._popen.pid, signal)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    @property
    def stdin(self) -> anyio.abc.ByteSendStream | None:
        return None

    @property
    def stdout(self) -> anyio.abc.ByteReceiveStream | None:
        return self._stdout

    @property
    def stderr(self) -> anyio.abc.ByteReceiveStream | None:
        return self._stderr

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._stdout.aclose()
            await self._stderr.aclose()
            await self.wait()
