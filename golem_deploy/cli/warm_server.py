"""The warm process: golem-deploy's commands already imported, one fork per command.

`python -m golem_deploy.cli.warm_server SOCKET` (started by a cold command on its way out,
cli/warm.py says when and why). It imports what `up`, `down`, `status` and `validate` need
and loads the manifest schema once, then listens. For each command it reads the request
(arguments, environment, working directory, umask, signal dispositions and the caller's
stdin, stdout and stderr), forks, and the fork becomes that command: it takes the caller's
file descriptors, folder and environment and runs cli/entry.py's `run`. This process only
forks, tells the caller the fork's pid and, once reaped, its exit status, and kills a fork
whose caller is gone (SIGKILL, as the cold command would have died).

It stays single-threaded: a fork copies only the calling thread, and the forks fork again
(an `up`'s supervisor, supervisor/prefork.py).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import select
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn, TextIO

from golem_deploy.cli.warm import IDLE_EXIT_S, INT, pid_file

__all__ = ["serve"]

PRELOAD = (
    "golem_deploy.cli.app",
    "golem_deploy.cli.up",
    "golem_deploy.cli.down",
    "golem_deploy.cli.status",
    "golem_deploy.cli.validate",
    "golem_deploy.cli.doctor",
    "golem_deploy.preflight.checks",
    "golem_deploy.supervisor.client",
    "golem_deploy.supervisor.control",
    "golem_deploy.supervisor.start",
    "golem_deploy.ui.table",
    "rich.live",
    "anyio._backends._asyncio",  # imported by the first anyio.run: `up`'s checks of yagna
)
"""What the commands import (the supervisor's own imports are prefork.PRELOAD)."""

_LOOK_S = 2.0  # how often an idle warm process checks that its socket is still its own
_UCRED = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid


@dataclass(frozen=True)
class _Request:
    """A command to run, as the typed `golem-deploy` sent it (cli/warm.py)."""

    argv: list[str]
    main_package: str | None  # the caller's __main__.__package__ (click's program name)
    env: dict[str, str]
    cwd: str
    umask: int
    stdio: list[tuple[str, str] | None]  # encoding and errors of stdin, stdout, stderr
    ignored: set[int]  # signals the caller was started with ignored
    fds: list[int]  # the caller's stdin, stdout and stderr

    @classmethod
    def parse(cls, data: bytes, fds: list[int]) -> _Request:
        raw = json.loads(data)
        return cls(
            argv=[str(a) for a in raw["argv"]],
            main_package=None if raw["main_package"] is None else str(raw["main_package"]),
            env={str(k): str(v) for k, v in raw["env"].items()},
            cwd=str(raw["cwd"]),
            umask=int(raw["umask"]),
            stdio=[None if o is None else (str(o[0]), str(o[1])) for o in raw["stdio"]],
            ignored={int(s) for s in raw["ignored"]},
            fds=fds,
        )


def serve(path: Path) -> None:
    """Import, listen on `path`, and run commands until idle, stopped or replaced."""
    record = pid_file(path, os.getpid())
    record.write_text(str(os.getpid()))  # already while importing: `stop` finds it then
    try:
        _serve(path)
    finally:
        record.unlink(missing_ok=True)


def _serve(path: Path) -> None:
    _preload()
    listener: socket.socket | None = _listen(path)
    inode = os.stat(path).st_ino
    # Signals wake the loop through this pipe: SIGCHLD (a fork ended: tell its caller at
    # once) and SIGTERM (stop taking commands; end once the running ones have).
    wake, wake_write = os.pipe()
    os.set_blocking(wake, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    running: dict[int, socket.socket] = {}  # fork's pid -> its caller's connection
    last = time.monotonic()
    try:
        while listener is not None or running:
            watched: list[socket.socket | int] = [wake, *running.values()]
            if listener is not None:
                watched.append(listener)
            ready, _, _ = select.select(watched, [], [], _LOOK_S)
            if wake in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake, 512)
            _reap(running)
            for conn in ready:
                if conn is listener and not stopping:
                    _accept(conn, running, [wake, wake_write])
                    last = time.monotonic()
                elif isinstance(conn, socket.socket) and conn is not listener:
                    _caller_gone(conn, running)
            idle = not running and time.monotonic() - last > IDLE_EXIT_S
            if listener is not None and (stopping or idle or not _still_ours(path, inode)):
                _close(listener, path, inode)
                listener = None
    finally:
        if listener is not None:
            _close(listener, path, inode)


def _preload() -> None:
    from golem_deploy.supervisor import prefork
    from golem_deploy.supervisor.tls_deferred import import_aiohttp_without_ca_store

    import_aiohttp_without_ca_store()  # as the supervisor imports it (tls_deferred.py)
    for module in (*PRELOAD, *prefork.PRELOAD):
        importlib.import_module(module)
    from golem_deploy.manifest import check_manifest

    # The YAML parser and the schema's validator are made on first use: use them once.
    with tempfile.TemporaryDirectory() as folder:
        sample = Path(folder) / "warm-up.yaml"
        sample.write_text("name: warm-up\n")
        check_manifest(sample)


def _listen(path: Path) -> socket.socket:
    """Listen on `path`, replacing whatever socket was there (atomically: a caller finds
    the old one or this one, never none)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    listener.bind(str(partial))
    listener.listen(16)
    os.replace(partial, path)
    return listener


def _still_ours(path: Path, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def _close(listener: socket.socket, path: Path, inode: int) -> None:
    """Stop listening; remove the socket if it is still this process's."""
    listener.close()
    if _still_ours(path, inode):
        with contextlib.suppress(OSError):
            path.unlink()


def _accept(listener: socket.socket, running: dict[int, socket.socket], pipe: list[int]) -> None:
    conn, _ = listener.accept()
    try:
        conn.settimeout(5.0)
        _, uid, _ = _UCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
        if uid != os.getuid():
            raise OSError("a caller of another user")
        request = _read_request(conn)
    except (OSError, ValueError, KeyError, TypeError):
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        _become_command(request, [conn, listener, *running.values()], pipe)
    for fd in request.fds:
        os.close(fd)
    with contextlib.suppress(OSError):  # if its caller is gone, the next look kills the fork
        conn.sendall(INT.pack(pid))
    running[pid] = conn


def _read_request(conn: socket.socket) -> _Request:
    data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("a request without stdin, stdout and stderr")
    while len(data) < INT.size or len(data) < INT.size + INT.unpack(data[: INT.size])[0]:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("a request cut short")
        data += chunk
    try:
        return _Request.parse(data[INT.size :], fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _reap(running: dict[int, socket.socket]) -> None:
    """Tell the callers of the forks that have ended how they ended."""
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = running.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        with conn, contextlib.suppress(OSError):
            conn.sendall(INT.pack(code if code >= 0 else 128 - code))


def _caller_gone(conn: socket.socket, running: dict[int, socket.socket]) -> None:
    """`conn` is readable: its caller sends nothing after the request, so it has ended."""
    try:
        gone = conn.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return
    except OSError:
        gone = True
    if not gone:
        return
    for pid, other in list(running.items()):
        if other is conn:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # what befell the caller, as a cold command


def _become_command(request: _Request, inherited: list[socket.socket], pipe: list[int]) -> NoReturn:
    """The fork: become the caller's command, run it, exit with its status."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sock in inherited:
            sock.close()
        for fd in pipe:
            os.close(fd)
        for target, fd in enumerate(request.fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request.cwd)
        os.umask(request.umask)
        os.environ.clear()
        os.environ.update(request.env)
        sys.argv = request.argv
        main = types.ModuleType("__main__")  # not this server's: click names the program
        main.__package__ = request.main_package  # after the caller's __main__
        sys.modules["__main__"] = main
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGCHLD):
            ignore = signum in request.ignored
            signal.signal(signum, signal.SIG_IGN if ignore else signal.SIG_DFL)
        if signal.SIGINT not in request.ignored:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _take_stdio(request.stdio)
        from golem_deploy.cli import entry

        entry.run(request.argv[1:], prestart=False)
        code = 0
    except SystemExit as end:
        code = _exit_code(end)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(code)


def _take_stdio(options: list[tuple[str, str] | None]) -> None:
    """sys.stdin/stdout/stderr over the caller's descriptors, as Python made them for it."""
    streams: list[TextIO | None] = []
    for fd, (mode, option) in enumerate(zip(("r", "w", "w"), options, strict=True)):
        if option is None:
            streams.append(None)
            continue
        encoding, errors = option
        stream = io.TextIOWrapper(
            open(fd, mode + "b", closefd=False),  # noqa: SIM115 -- sys.* owns it from now on
            encoding=encoding,
            errors=errors,
            line_buffering=mode == "w" and (fd == 2 or os.isatty(fd)),
        )
        streams.append(stream)
    sys.stdin, sys.stdout, sys.stderr = streams


def _exit_code(end: SystemExit) -> int:
    if end.code is None:
        return 0
    if isinstance(end.code, int):
        return end.code
    print(end.code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
