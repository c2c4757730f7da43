"""Running commands in a sandbox, and measuring them: the process side of :class:`Sandbox`.

:class:`SandboxCommands` is a base class of :class:`~golem_deploy.localnet.sandbox.Sandbox`,
which creates the sandbox (directories, the init process) and sets every attribute listed
below. A sealed sandbox's init starts each command inside (:mod:`sandbox_control`); an
unsealed one (``--unsafe-host-exec``) runs it through ``exeunit_init.py --exec``, which
lowers its resource limits and measures its CPU time. Output is pumped to callbacks, and
pipes a background process inherited are drained until the activity ends. CPU usage is read
from /proc (and the unsealed wrappers' reports).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from subprocess import DEVNULL

import anyio
import anyio.abc

from golem_deploy.localnet import spawn
from golem_deploy.localnet.limits import CgroupLimits
from golem_deploy.localnet.rootfs import RootFs
from golem_deploy.localnet.sandbox_control import InitControl
from golem_deploy.localnet.sandbox_paths import VOLUMES, SandboxError

DRAIN_GRACE = 0.2
"""How long to keep reading a finished command's output pipes for what it wrote last.

Output that arrives later comes from a background process that inherited the pipes; it is
read and discarded until the activity ends (so that process never dies of SIGPIPE)."""

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

OutputCallback = Callable[[bytes], Awaitable[None]]

INIT_SCRIPT = Path(__file__).with_name("exeunit_init.py")
"""The sandbox's pid 1, and (with --exec) the wrapper of an unsealed activity's commands."""

INIT_COMMAND = (
    sys.executable,
    "-I",
    "-S",
    "-c",
    "import sys; sys.path.append(sys.argv.pop(1)); import exeunit_init; exeunit_init.main()",
    str(INIT_SCRIPT.parent),
)
"""How a fresh interpreter runs INIT_SCRIPT (its arguments follow): imported from its
folder, not run by path, because a script run by path is compiled at every start and an
imported module's bytecode is cached -- a third of each init's start-up CPU, and `up` of
100 instances starts 100 inits at once. Appended to sys.path, so no file beside it can
stand in for a standard module; nothing else of golem_deploy is imported."""


class CommandTimeout(SandboxError):
    """A command ran longer than its timeout and was killed."""


class SandboxCommands:
    """Commands and CPU usage of one sandbox; :class:`Sandbox` sets these attributes."""

    work_dir: Path
    root: Path
    rootfs: RootFs
    isolated: bool
    _cgroups: CgroupLimits | None
    _init_pid: int | None
    _control: InitControl | None
    _groups: set[int]
    _commands: int
    _cpu_finished: float
    _tg: anyio.abc.TaskGroup | None
    _drainers: list[anyio.Event]
    _closed: anyio.Event

    # ---- commands ----

    def command_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A clean environment (nothing of the provider agent's leaks in) plus ``extra``."""
        env = {"PATH": DEFAULT_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
        if self.isolated:
            env.update(self.rootfs.env)  # the image's Env, as in the VM
        else:
            for sub in VOLUMES:
                env[f"GOLEM_{sub.upper()}"] = str(self.root / sub)
        env.update(extra or {})
        return env

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> int:
        """Run ``argv`` in the sandbox; return its exit code (negative: killed by a signal).

        Raises CommandTimeout when ``timeout`` passes (the command and its process group
        are killed). Cancellation kills them too. Processes the command leaves in the
        background keep running until the sandbox closes.
        """
        if self._closed.is_set() or self._tg is None:
            raise SandboxError("the sandbox is closed")
        if not argv:
            raise SandboxError("empty command")
        if not self.isolated:
            return await self._run_unsealed(argv, env, timeout, on_stdout, on_stderr)
        control = self._control
        assert control is not None
        try:
            command, stdout, stderr = await control.start(argv, self.command_env(env))
        except OSError as exc:
            raise SandboxError(f"cannot execute {argv[0]}: the sandbox has ended") from exc
        return await self._supervise(
            lambda: control.wait(command),
            lambda: control.kill(command),
            stdout,
            stderr,
            timeout,
            on_stdout,
            on_stderr,
        )

    async def _run_unsealed(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        timeout: float | None,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
    ) -> int:
        """--unsafe-host-exec: the command as our child, through the ``--exec`` wrapper
        (which measures its CPU time and lowers its hard limits), in its own process group."""
        self._commands += 1
        cpu_file = self.work_dir / "cpu" / str(self._commands)
        cpu_file.parent.mkdir(parents=True, exist_ok=True)
        command = [*INIT_COMMAND, "--exec", str(cpu_file)]
        for cgroup in self._cgroups.dirs if self._cgroups is not None else []:
            command += ["--cgroup", str(cgroup)]
        command += ["--", *argv]
        try:
            process = await spawn.open_process(  # no fork() of the host: spawn.py
                command,
                stdin=DEVNULL,
                cwd=self.root / "work",
                env=self.command_env(env),
                start_new_session=True,  # its own process group: killable as a whole
            )
        except OSError as exc:
            raise SandboxError(f"cannot execute {argv[0]}: {exc.strerror or exc}") from exc
        self._groups.add(process.pid)

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

        assert process.stdout is not None and process.stderr is not None
        try:
            return await self._supervise(
                process.wait, kill, process.stdout, process.stderr, timeout, on_stdout, on_stderr
            )
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._cpu_finished += float(cpu_file.read_text())
                cpu_file.unlink()

    async def _supervise(
        self,
        wait: Callable[[], Awaitable[int]],
        kill: Callable[[], None],
        stdout: anyio.abc.ByteReceiveStream,
        stderr: anyio.abc.ByteReceiveStream,
        timeout: float | None,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
    ) -> int:
        """Pump a started command's output to the callbacks until it ends; kill it (and its
        group) on timeout or cancellation."""
        finished = False
        try:
            done = [anyio.Event(), anyio.Event()]
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pump, stdout, on_stdout, done[0])
                tg.start_soon(_pump, stderr, on_stderr, done[1])
                with anyio.move_on_after(timeout):
                    code = await wait()
                    finished = True
                if finished:
                    with anyio.move_on_after(DRAIN_GRACE):
                        for event in done:
                            await event.wait()
                tg.cancel_scope.cancel()
            if not finished:
                raise CommandTimeout(f"command timed out after {timeout:g} s and was killed")
            # Pipes still open belong to background processes: keep them drained.
            for stream, event in ((stdout, done[0]), (stderr, done[1])):
                if not event.is_set() and self._tg is not None:
                    drained = anyio.Event()
                    self._drainers.append(drained)
                    self._tg.start_soon(_pump, stream, None, drained, True)
                else:
                    await stream.aclose()
            return code
        finally:
            if not finished:
                # Timeout or cancellation: the command and its whole group go.
                kill()
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(5):
                        await wait()
                    for pipe in (stdout, stderr):
                        await drain_and_close(pipe)

    # ---- usage ----

    def cpu_seconds(self) -> float:
        """CPU time used by the activity's processes so far.

        Exact for commands that ended (their wrapper's wait4) and for background processes
        the init reaped (its children's times); processes still running are sampled from
        /proc. The ExeUnit keeps the maximum it reported, so the counter never goes down.
        """
        try:
            tick = os.sysconf("SC_CLK_TCK")
        except (ValueError, OSError):
            return self._cpu_finished
        total = self._cpu_finished
        if self.isolated:
            # The namespace's own /proc (mounted by unshare --mount-proc) lists exactly the
            # activity's processes, with pid 1 = the init: no scan of the host's /proc.
            proc = f"/proc/{self._init_pid}/root/proc"
            for pid in _pids(proc):
                stat = read_stat(pid, proc)
                if stat is not None:
                    total += (stat[11] + stat[12]) / tick  # utime + stime
                    if pid == 1:
                        total += (stat[13] + stat[14]) / tick  # reaped orphans
        else:
            for pid in _pids("/proc"):
                stat = read_stat(pid)
                if stat is not None and stat[2] in self._groups:  # pgid: one of our commands
                    total += (stat[11] + stat[12]) / tick
        return total


def _pids(proc: str) -> list[int]:
    try:
        return [int(p) for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return []


async def _pump(
    stream: anyio.abc.ByteReceiveStream,
    callback: OutputCallback | None,
    done: anyio.Event,
    close: bool = False,
) -> None:
    try:
        async for chunk in stream:
            if callback is not None:
                await callback(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    finally:
        done.set()
        if close:
            with anyio.CancelScope(shield=True):
                await stream.aclose()


async def drain_and_close(stream: anyio.abc.ByteReceiveStream) -> None:
    """Read a dead process's pipe to EOF, so asyncio closes it before the loop ends."""
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(1), contextlib.suppress(Exception):
            async for _ in stream:
                pass
        with contextlib.suppress(Exception):
            await stream.aclose()


def read_stat(pid: int, proc: str = "/proc") -> list[int] | None:
    """/proc/<pid>/stat fields after the command name: [state, ppid, pgrp, ...] as ints.

    Index 0 is the state letter (as 0); index i is proc(5)'s field i + 3.
    """
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rfind(b")") + 2 :].split()
    values = [0]
    for item in rest[1:]:
        try:
            values.append(int(item))
        except ValueError:
            values.append(0)
    return values
