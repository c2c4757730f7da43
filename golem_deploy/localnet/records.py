"""What the local network records in its state dir: journal, pid files, and ending processes.

Every process we start is recorded in a pid file under the state dir together with a marker
(e.g. the daemon's data dir). A later start or stop ends exactly what those files record,
after checking that the pid still runs a command line carrying that marker, so a recycled
pid is never signalled and nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The host process's pid file name, and the file it writes once the network is ready.
HOST = "host"
READY_FILE = "ready.json"


def host_marker(state_dir: Path) -> str:
    """The host's `--state-dir=...` argument: unique to the host of this state dir."""
    return f"--state-dir={state_dir}"


def journal(state_dir: Path, event: str, **fields: Any) -> None:
    """Append one line to the state dir's journal: what was started or stopped, and when."""
    record = {"ts": datetime.now(UTC).isoformat(), "event": event, **fields}
    with open(state_dir / "journal.jsonl", "a", encoding="utf-8") as out:
        out.write(json.dumps(record, default=str) + "\n")


def pid_dir(state_dir: Path) -> Path:
    path = state_dir / "pids"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_pid_file(state_dir: Path, name: str, pid: int, marker: str) -> None:
    """Record a process we started; `marker` must appear in its command line."""
    path = pid_dir(state_dir) / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": pid, "marker": marker}), encoding="utf-8")
    os.replace(tmp, path)


def read_pid_file(state_dir: Path, name: str) -> tuple[int, str] | None:
    path = state_dir / "pids" / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return int(data["pid"]), str(data["marker"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_pid_file(state_dir: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "pids" / f"{name}.json").unlink()


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def process_matches(pid: int, marker: str) -> bool:
    """True while `pid` is alive (not a zombie) and its command line contains `marker`."""
    _reap(pid)
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return any(marker.encode() in arg for arg in args)
    if sys.platform == "linux":
        return False
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(
            ["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return False
    return bool(out) and not out.startswith("Z") and marker in out


def end_process(pid: int, marker: str, *, timeout: float, first: int = signal.SIGINT) -> bool:
    """Signal `pid` (only if it still carries `marker`), escalate to SIGKILL after `timeout`.

    Returns True when the process is gone (or was never ours to begin with).
    """
    if not process_matches(pid, marker):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first)
    if _wait_gone(pid, marker, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return _wait_gone(pid, marker, 5.0)


def _wait_gone(pid: int, marker: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_matches(pid, marker):
            return True
        time.sleep(0.02)
    return not process_matches(pid, marker)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
