"""The `golem-deploy` entry point: two quick answers before the full CLI is imported.

Why this module exists: typer, click and rich cost 100-200 ms to import, several times
Python's own start-up. Two commands are run in loops by people and scripts, and deserve to
answer in about Python's start-up time:

- `status --json` of a deployment whose supervisor is alive: one HTTP request over the
  control socket (`GET /status`, already in the documented shape), bytes copied to stdout.
- `--help` (of the root or of a command): the first run renders it with typer and keeps a
  copy under the cache folder; later runs print that copy. The copy is keyed by everything
  the rendering depends on -- the arguments, the CLI's source files, the installed packages,
  the terminal's size and whether stdout is one, and the colour/width environment variables
  rich and typer read -- so a change to any of them renders afresh.

Anything else, and any doubt (no such deployment, a supervisor that does not answer, an
unreadable cache), goes to the full CLI, which gives the proper answer or error. Only the
standard library is imported here.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import site
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from golem_deploy import __version__
from golem_deploy.cli import warm

__all__ = ["help_cache_path", "main", "run", "status_json"]

_RENDERING_ENV = ("COLOR", "TERM", "TTY", "COLUMNS", "LINES", "WIDTH", "TYPER", "GITHUB_ACTIONS")
"""Environment variables whose names contain one of these change how help is rendered."""


def main() -> None:
    """Console entry point: in the warm process when there is one (warm.py), else here."""
    global _exit_code
    argv = sys.argv[1:]
    atexit.register(_skip_teardown, os.getpid())  # first registered: runs last
    try:
        if argv[:1] and argv[0] in warm.COMMANDS and not _quick(argv):
            home = _home()
            path = None if home is None else warm.socket_path(home)
            if path is not None:
                code = warm.run(argv, path)
                if code is not None:
                    sys.exit(code)
                atexit.register(warm.start, path)  # none yet: one for the next command
        run(argv, prestart=True)
    except SystemExit as done:
        _exit_code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        raise
    except BaseException:
        _exit_code = None  # a traceback or Ctrl-C: Python's own way out
        raise
    _exit_code = 0


_exit_code: int | None = None
"""How main() ended: the exit code to leave with, or None to let Python end as usual."""


def _skip_teardown(pid: int) -> None:
    """The last exit handler: once every other one ran (and Python joined the non-daemon
    threads), leave without tearing down the interpreter. Freeing the modules a full CLI
    imported (typer, rich, aiohttp, the engine) costs 50-80 ms on a small machine, at the
    end of every command; nothing of it is ours to keep. Only in the process that ran
    main() (never in a fork of it, e.g. `up`'s supervisor), and only after a normal end or
    a SystemExit."""
    code = _exit_code
    if code is None or os.getpid() != pid:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # what Python exits with when flushing stdout fails
    os._exit(code)


def run(argv: list[str], *, prestart: bool) -> None:
    """Run the command `argv`: a quick answer when there is one, else the full CLI.
    `prestart`: fork an `up`'s supervisor-to-be first (not in the warm process, which has
    everything imported already)."""
    if argv[:1] == ["status"]:
        answer = status_json(argv)
        if answer is not None:
            sys.stdout.buffer.write(answer)
            return
    cache = help_cache_path(argv)
    if cache is not None:
        try:
            sys.stdout.buffer.write(cache.read_bytes())
            return
        except OSError:
            pass
    if prestart and argv[:1] == ["up"] and not {"--dry-run", "--help"} & set(argv):
        from golem_deploy.supervisor import prefork

        prefork.prestart()  # the supervisor's imports run beside the CLI's (prefork.py)
    from golem_deploy.cli import app

    if cache is None:
        app.main()
    else:
        keep_help(cache, app.main)


def _quick(argv: list[str]) -> bool:
    """Answered here as fast as the warm process would: `status --json`, or cached help."""
    return _status_name(argv) is not None or argv[-1] == "--help"


# --- status --json ---------------------------------------------------------------------------


def status_json(argv: list[str]) -> bytes | None:
    """`status --json [-n NAME]` answered by a live supervisor, or None (use the full CLI)."""
    name = _status_name(argv)
    if name is None:
        return None
    home = _home()
    if home is None:
        return None
    root = home / "deployments"
    if name:
        folder = root / name
    else:
        try:
            known = [d for d in root.iterdir() if (d / "journal.jsonl").exists()]
        except OSError:
            return None
        if len(known) != 1:  # which one is meant takes the full CLI's rules
            return None
        folder = known[0]
    path = folder / "control.sock"
    if len(os.fsencode(path)) > 100:  # moved to a temp path (deployments.DeploymentDir)
        return None
    return _get(path, "/status")


def _status_name(argv: list[str]) -> str | None:
    """NAME ("" for the only deployment) when argv is `status --json [-n NAME]`, else None."""
    rest = argv[1:]
    if argv[:1] != ["status"] or "--json" not in rest:
        return None
    rest = [a for a in rest if a != "--json"]
    if not rest:
        return ""
    if len(rest) == 2 and rest[0] in ("-n", "--name") and not rest[1].startswith("-"):
        return rest[1]
    if len(rest) == 1 and rest[0].startswith("--name=") and len(rest[0]) > len("--name="):
        return rest[0][len("--name=") :]
    return None


def _home() -> Path | None:
    """$GOLEM_DEPLOY_HOME as paths.home() finds it, without creating it."""
    explicit = os.environ.get("GOLEM_DEPLOY_HOME")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(xdg) / "golem-deploy"


def _get(sock_path: Path, target: str) -> bytes | None:
    """The body of a 200 answer to `GET target` on the Unix socket, or None."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(sock_path))
            sock.sendall(f"GET {target} HTTP/1.0\r\nHost: supervisor\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or status_line[1] != b"200":
        return None
    return body


# --- --help ----------------------------------------------------------------------------------


def help_cache_path(argv: list[str]) -> Path | None:
    """Where the rendered help for `argv` is kept, when argv asks only for help; else None."""
    if not argv or argv[-1] != "--help" or any(a.startswith("-") for a in argv[:-1]):
        return None
    key = hashlib.sha256()
    for part in (__version__, "\0".join(argv), _terminal(), *_rendering_env(), *_sources()):
        key.update(part.encode(errors="surrogateescape") + b"\n")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "golem-deploy" / f"help-{key.hexdigest()[:32]}.txt"


def _terminal() -> str:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except (OSError, ValueError):
        return "not a terminal"
    return f"{size.columns}x{size.lines}"


def _rendering_env() -> list[str]:
    return sorted(
        f"{name}={value}"
        for name, value in os.environ.items()
        if any(word in name for word in _RENDERING_ENV)
    )


def _sources() -> list[str]:
    """Size and mtime of the CLI's modules, and of the folders packages are installed in."""
    folders = [Path(__file__).parent, *map(Path, site.getsitepackages())]
    stamps = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
            stat = folder.stat()
        except OSError:
            continue
        stamps.append(f"{folder}:{stat.st_mtime_ns}")
        if folder == folders[0]:  # the CLI's own modules, one by one
            for entry in entries:
                if entry.name.endswith(".py"):
                    info = entry.stat()
                    stamps.append(f"{entry.name}:{info.st_size}:{info.st_mtime_ns}")
    return stamps


class HelpRecorder:
    """Wraps stdout while the full CLI renders help, so the text can be kept for next time.

    Everything is delegated to the real stream (rich asks it whether it is a terminal and
    how wide), and every string written is also recorded.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.written: list[str] = []

    def write(self, text: str) -> int:
        if isinstance(text, str):  # click also writes b"" to flush; nothing to keep
            self.written.append(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def keep_help(path: Path, render: Callable[[], None]) -> None:
    """Run `render` (the full CLI printing help) and keep its stdout at `path` if it exits 0."""
    recorder = HelpRecorder(sys.stdout)
    sys.stdout = recorder  # a TextIO in all but name (it delegates the rest)
    code: object = 0
    try:
        render()
    except SystemExit as exit_:
        code = exit_.code
        raise
    finally:
        sys.stdout = recorder._stream
        if code in (0, None):
            _write_atomically(path, "".join(recorder.written).encode())


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError:
        pass  # a cache that cannot be written only costs time
