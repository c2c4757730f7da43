"""The supervisor of an `up`, forked before the CLI has even parsed its arguments.

Why: `golem-deploy up` waits for its supervisor, and a supervisor's first 0.15-0.3 s go to
importing the engine (anyio, aiohttp, the lifecycle and market code). The CLI meanwhile
imports typer, loads and validates the manifest and, on your yagna, runs the doctor's
checks: as long again, on one core while the other idles. So `cli/entry.py` calls
`prestart()` first thing for an `up`: the forked child imports the engine on the other
core, then blocks on a pipe. `start.spawn` hands it the validated manifest through that
pipe and it becomes the supervisor; when `up` ends any other way (a bad manifest, a failed
check, a change to a running deployment, `--dry-run`, Ctrl-C) the pipe closes unused and
the child exits without having touched anything.

Only on Linux, and only in a process with one thread (`start.py` says why). Only the
standard library is imported here: entry.py must stay quick.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from golem_deploy import event_loop

if TYPE_CHECKING:
    from golem_deploy.manifest.model import Manifest

__all__ = ["Order", "cancel", "claim", "fork_is_safe", "fork_now", "prestart"]


PRELOAD = (
    "golem_deploy.supervisor.__main__",
    # imported by the supervisor only once it runs (python -X importtime of its log):
    "anyio._core._sockets",
    "golem_deploy.supervisor.api",
    "golem_deploy.compiler",
    "golem_deploy.supervisor.reconcile",
    "golem_deploy.supervisor.vpn",
    "golem_deploy.preflight.images",
)
"""What the waiting child imports: everything a supervisor imports before its first agreement."""


@dataclass(frozen=True)
class Order:
    """What the CLI hands its supervisor: everything `python -m golem_deploy.supervisor`
    gets on its command line, with the manifest already loaded and validated."""

    manifest: Manifest
    providers: int
    faults: Path | None
    log: Path
    #: The CLI's environment as it is when it hands the order over (a fresh interpreter
    #: would inherit it then): the CLI sets some after the fork, e.g. --unsafe-host-exec.
    env: dict[str, str]


@dataclass(frozen=True)
class _Waiting:
    pid: int
    pipe: int  # the write end; closing it unused tells the child to exit


_waiting: _Waiting | None = None


def fork_is_safe() -> bool:
    """A fork copies only the calling thread: a lock another thread held stays held."""
    return sys.platform == "linux" and threading.active_count() == 1


def prestart() -> None:
    """Fork the supervisor-to-be now, if this platform and process allow a fork."""
    global _waiting
    if _waiting is not None or not fork_is_safe():
        return
    read, write = os.pipe()
    pid = _fork()
    if pid == 0:
        os.close(write)
        _wait_for_order(read)
    os.close(read)
    _waiting = _Waiting(pid, write)


def fork_now(order: Order) -> int:
    """Fork the supervisor of `order` from this process now (none was prestarted, or it
    died); its pid. Only where `fork_is_safe()`."""
    pid = _fork()
    if pid == 0:
        _detach()
        _serve_order(order)
    return pid


def _fork() -> int:
    for stream in (sys.stdout, sys.stderr):  # else the child could write them out again
        stream.flush()
    return os.fork()


def claim(order: Order) -> int | None:
    """Hand `order` to the prestarted child; its pid, or None when there is none (or it
    died), and the caller starts a supervisor itself."""
    global _waiting
    waiting, _waiting = _waiting, None
    if waiting is None:
        return None
    data = memoryview(pickle.dumps(order))
    try:
        while data:
            data = data[os.write(waiting.pipe, data) :]
    except BrokenPipeError:
        os.waitpid(waiting.pid, 0)
        return None
    finally:
        os.close(waiting.pipe)
    return waiting.pid


def cancel() -> None:
    """This `up` needs no new supervisor (a change, a dry run): let the child go now
    rather than at this process's exit."""
    global _waiting
    waiting, _waiting = _waiting, None
    if waiting is not None:
        os.close(waiting.pipe)


def _detach() -> None:
    """Become a daemon's child: own session, stdin from /dev/null, the CLI's Python signal
    handlers gone (a fresh interpreter would not have them either)."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if callable(signal.getsignal(signum)):
            signal.signal(signum, signal.SIG_DFL)
    if callable(signal.getsignal(signal.SIGINT)):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _serve_order(order: Order) -> NoReturn:
    """Run the supervisor of `order` in this (forked, detached) process; never returns
    into the CLI's code, whose atexit handlers and buffers are not the supervisor's."""
    code = 1
    try:
        log = os.open(order.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.chdir(Path(order.manifest.path).resolve().parent)
        if os.environ != order.env:
            os.environ.clear()
            os.environ.update(order.env)
        from golem_deploy.supervisor.__main__ import serve

        code = serve(order.manifest, providers=order.providers, faults=order.faults)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # the log is the only place left to say it
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait_for_order(pipe: int) -> NoReturn:
    """The prestarted child: import the engine, then wait for the order (or the end)."""
    try:
        _detach()
        null = os.open(os.devnull, os.O_WRONLY)  # until the order names the log
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        for module in PRELOAD:  # the point: import meanwhile
            importlib.import_module(module)
        if event_loop.uses_uvloop():
            importlib.import_module("uvloop")

        chunks = []
        while chunk := os.read(pipe, 65536):
            chunks.append(chunk)
        os.close(pipe)
        order = pickle.loads(b"".join(chunks)) if chunks else None
    except BaseException:
        os._exit(1)
    if not isinstance(order, Order):
        os._exit(0)  # the CLI did not need a supervisor after all
    _serve_order(order)
