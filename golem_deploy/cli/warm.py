"""A warm golem-deploy process that runs commands for the `golem-deploy` you type.

Why: a cold `golem-deploy up` spends about 0.3 s before its supervisor can ask yagna for
anything -- starting Python and importing typer, rich, jsonschema, aiohttp and the engine --
which is a quarter of the whole `up` of one instance on a local network. Python tools that
are run in loops solve this the same way (dmypy, pantsd, the Gradle daemon): a process
that has everything imported waits on a Unix socket, and the command you type hands it the
work.

How (Linux only):

- `golem-deploy up|down|status|validate ...` connects to the warm process's socket and
  sends its arguments, environment, working directory, umask and its stdin, stdout and
  stderr themselves (file descriptors, SCM_RIGHTS). The warm process forks; the fork
  takes all of that over and runs the command exactly as the cold CLI would (cli/entry.py's
  `run`), writing straight to your terminal or pipe. The warm process answers with the
  fork's pid and, when it has ended, its exit status, which the typed command exits with.
- Ctrl-C, SIGTERM and SIGHUP the typed command receives are passed on to the fork, which
  handles them as the cold CLI does (cli/signals.py); a signal the typed command was
  started with ignored (`nohup`) is ignored in the fork too. If the typed command is
  killed outright (SIGKILL), the warm process kills the fork the same way.
- There is none yet (or it was stopped): the command runs cold, and on its way out starts
  one for next time, in the background. It ends itself after `IDLE_EXIT_S` without a
  command, or as soon as its socket is removed or replaced.
- One warm process per golem-deploy home, installation (every file of golem_deploy and
  the folders packages are installed in), Python, user and namespaces (network, mount,
  pid, user): a command never runs in another network namespace or against other code
  than the one typed. The socket's folder is private to the user (0700) and the warm
  process also checks each caller's uid.

What is not carried over: resource limits, the cgroup and the nice value are the warm
process's (those of the first command that started it). `GOLEM_DEPLOY_WARM=0` runs every
command cold and starts no warm process. Ctrl-Z stops the typed command, not its fork.

This module is the typed command's side and imports only the standard library (`entry.py`
must stay quick); the warm process is :mod:`warm_server`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import site
import socket
import struct
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TextIO

__all__ = [
    "COMMANDS",
    "IDLE_EXIT_S",
    "INT",
    "SWITCH",
    "pid_file",
    "run",
    "socket_path",
    "start",
    "stop",
    "stop_all",
]

COMMANDS = frozenset({"up", "down", "status", "validate"})
"""The commands that run in the warm process (the others import little or run for long)."""

IDLE_EXIT_S = 600.0
"""The warm process ends after this long without a command."""

SWITCH = "GOLEM_DEPLOY_WARM"
INT = struct.Struct("!i")  # the warm process's answers: the fork's pid, then its exit status
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_NAMESPACES = ("net", "mnt", "pid", "user")


# --- the typed command's side -----------------------------------------------------------------


def socket_path(home: Path, stamps: list[str] | None = None) -> Path | None:
    """Where the warm process for this home, installation, user and namespaces listens;
    None where there can be none (off Linux, switched off, a path too long for a socket).
    `stamps` say which installation this is (default: `installation_stamps()`)."""
    if sys.platform != "linux" or os.environ.get(SWITCH, "1") == "0":
        return None
    if stamps is None:
        stamps = installation_stamps()
    key = hashlib.sha256()
    parts = [sys.executable, sys.prefix, f"{os.getuid()}:{os.getgid()}", *stamps]
    for name in _NAMESPACES:
        try:
            parts.append(f"{name}:{os.stat(f'/proc/self/ns/{name}').st_ino}")
        except OSError:
            return None
    for part in parts:
        key.update(part.encode(errors="surrogateescape") + b"\n")
    path = home / "warm" / f"{key.hexdigest()[:16]}.sock"
    return path if len(os.fsencode(path)) < 108 else None  # sockaddr_un's sun_path


def installation_stamps() -> list[str]:
    """Size and mtime of every file of golem_deploy (an edit anywhere, e.g. in the engine
    of an editable install, means other code) and of the folders packages are installed
    in (an upgrade of a dependency). About 1 ms."""
    package = Path(__file__).resolve().parents[1]
    stamps = []
    for folder, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")  # the same order every time
        for name in sorted(files):
            with contextlib.suppress(OSError):
                info = os.stat(os.path.join(folder, name))
                stamps.append(f"{folder}/{name}:{info.st_size}:{info.st_mtime_ns}")
    for folder in site.getsitepackages():
        with contextlib.suppress(OSError):
            stamps.append(f"{folder}:{os.stat(folder).st_mtime_ns}")
    return stamps


def run(argv: list[str], path: Path) -> int | None:
    """Run `argv` in the warm process at `path`: its exit status. None when there is no
    warm process: the command is to be run here (and `start` one for next time)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None
    forward = _Forwarder()  # from here on a signal is for the command, wherever it runs
    try:
        _send_request(conn, argv)
        pid = _receive_int(conn)
    except OSError:
        pid = None
    if pid is None:  # nothing ran: the command is still to be run, here
        conn.close()
        forward.restore()
        return None
    with conn:
        forward.to(pid)
        status = _receive_int(conn)
    if status is None:
        sys.stderr.write(
            "golem-deploy: lost the warm process running this command; it may have run "
            f"in part (`{SWITCH}=0` runs commands without it)\n"
        )
        return 1
    return status


def _send_request(conn: socket.socket, argv: list[str]) -> None:
    umask = os.umask(0o22)
    os.umask(umask)
    request = {
        "argv": [sys.argv[0], *argv],
        # how click names the program in usage lines (`golem-deploy`, `python -m ...`)
        "main_package": getattr(sys.modules["__main__"], "__package__", None),
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "umask": umask,
        "stdio": [_stream_options(s) for s in (sys.stdin, sys.stdout, sys.stderr)],
        "ignored": [int(s) for s in _FORWARDED if signal.getsignal(s) == signal.SIG_IGN],
    }
    data = json.dumps(request).encode()
    first = INT.pack(len(data)) + data
    sent = socket.send_fds(conn, [first], [0, 1, 2])
    conn.sendall(first[sent:])


def _stream_options(stream: TextIO | None) -> list[str] | None:
    if stream is None:
        return None
    return [getattr(stream, "encoding", "utf-8"), getattr(stream, "errors", "strict")]


def _receive_int(conn: socket.socket) -> int | None:
    data = b""
    while len(data) < INT.size:
        chunk = conn.recv(INT.size - len(data))
        if not chunk:
            return None
        data += chunk
    value: int = INT.unpack(data)[0]
    return value


class _Forwarder:
    """Passes Ctrl-C, SIGTERM and SIGHUP on to the fork running the command; one that
    comes before the fork's pid is known is passed on once it is (or, should the command
    run here after all, raised here as it would have been)."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._pending: list[int] = []
        self._before = {s: signal.getsignal(s) for s in _FORWARDED}
        for signum, handler in self._before.items():
            if handler != signal.SIG_IGN:
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._pid is None:
            self._pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signum)

    def to(self, pid: int) -> None:
        self._pid = pid
        pending, self._pending = self._pending, []
        for signum in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def restore(self) -> None:
        for signal_, handler in self._before.items():
            signal.signal(signal_, handler)
        for signum in self._pending:
            signal.raise_signal(signum)


def start(path: Path) -> None:
    """Start a warm process for `path` in the background, for the next command."""
    import subprocess  # only now: it costs an import the quick path does not need

    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = os.open(path.with_suffix(".log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        return
    try:
        subprocess.Popen(
            # -P: not the starting folder first on sys.path (a cold `golem-deploy` script
            # has its own folder there); cwd "/": it holds no user folder busy
            [sys.executable, "-P", "-m", "golem_deploy.cli.warm_server", str(path)],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    except OSError:
        pass
    finally:
        os.close(log)


def pid_file(path: Path, pid: int) -> Path:
    """Where the warm process `pid` of the socket `path` records itself (one file each:
    two commands may start two at once; the later one takes the socket, the other ends)."""
    return path.with_name(f"{path.stem}.{pid}.pid")


def stop(path: Path) -> bool:
    """End every warm process of the socket `path` (SIGTERM to the pids they recorded)
    and wait for them; whether there was one. For tests and benchmarks that must leave no
    process behind."""
    stopped = []
    for record in path.parent.glob(f"{path.stem}.*.pid"):
        try:
            pid = int(record.read_text())
            # only a warm process of this socket: a pid file left by a killed one may
            # name another process by now
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if os.fsencode(path) not in cmdline.read().split(b"\0"):
                    raise ProcessLookupError(pid)
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        except (OSError, ValueError):
            record.unlink(missing_ok=True)  # its process is gone
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(_ended(pid) for pid in stopped):
        time.sleep(0.01)
    return bool(stopped)


def _ended(pid: int) -> bool:
    """Gone, or a zombie (ended; only its parent's wait is missing)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return "\nState:\tZ" in status.read()
    except OSError:
        return True


def stop_all(home: Path) -> int:
    """End every warm process of the golem-deploy home `home`; how many there were."""
    folder = home / "warm"
    if not folder.is_dir():
        return 0
    # by socket, and by pid file: one still importing has no socket yet
    keys = {
        entry.name.split(".")[0] for entry in folder.iterdir() if entry.suffix in (".sock", ".pid")
    }
    return sum(stop(folder / f"{key}.sock") for key in sorted(keys))
