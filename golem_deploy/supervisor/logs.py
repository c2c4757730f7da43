"""Per-instance log files and the merged, prefixed view `golem-deploy logs` prints.

Why files (not only the socket): logs must outlive the supervisor, so a user can read what
happened after a crash. One file per instance, `logs/<service>.<index>.log`, one line per
record: `<ISO-8601 UTC time> <stream> <text>` where stream is stdout, stderr, state or cmd.
Reading merges the files by time, like compose does.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from golem_deploy.supervisor.journal import Redactor

_FILE = re.compile(r"^(?P<service>.+)\.(?P<index>\d+)\.log$")


@dataclass(frozen=True, order=True)
class LogLine:
    ts: str  # ISO-8601 UTC; sorts chronologically as a string
    service: str
    index: int
    stream: str
    text: str

    def format(self, *, width: int = 0) -> str:
        """`service.index | text`, the prefix padded to `width` so columns line up."""
        prefix = f"{self.service}.{self.index}".ljust(width)
        if self.stream == "state":
            return f"{prefix} | [{self.text}]"
        if self.stream == "cmd":
            return f"{prefix} | $ {self.text}"
        return f"{prefix} | {self.text}"


def _stamp(at: float | dt.datetime | None = None) -> str:
    if isinstance(at, dt.datetime):
        moment = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    else:
        moment = dt.datetime.fromtimestamp(time.time() if at is None else at, tz=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class InstanceLogs:
    """Writes the log files of one deployment (owned by the supervisor)."""

    def __init__(self, folder: Path, *, redactor: Redactor | None = None) -> None:
        self.folder = folder
        self._redactor = redactor or Redactor()
        self._files: dict[tuple[str, int], IO[str]] = {}
        self._partial: dict[tuple[str, int, str], str] = {}
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _file(self, service: str, index: int) -> IO[str]:
        key = (service, index)
        handle = self._files.get(key)
        if handle is None:
            path = self.folder / f"{service}.{index}.log"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            handle = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
            self._files[key] = handle
        return handle

    def write(
        self,
        service: str,
        index: int,
        stream: str,
        text: str,
        at: float | dt.datetime | None = None,
    ) -> None:
        """Append whole lines; output chunks are split on newlines (a partial tail waits)."""
        with self._lock:
            key = (service, index, stream)
            if stream in ("stdout", "stderr"):
                text = self._partial.pop(key, "") + text
                *lines, rest = text.split("\n")
                if rest:
                    self._partial[key] = rest
            else:
                lines = text.splitlines() or [""]
            if not lines:
                return
            stamp = _stamp(at)
            handle = self._file(service, index)
            for line in lines:
                handle.write(f"{stamp} {stream} {self._redactor.text(line.rstrip(chr(13)))}\n")

    def flush_partial(self) -> None:
        """Write out output that never got its newline (at stop)."""
        with self._lock:
            pending = list(self._partial.items())
            self._partial.clear()
        for (service, index, stream), text in pending:
            self.write(service, index, stream, text + "\n")

    def close(self) -> None:
        self.flush_partial()
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()


def parse_line(service: str, index: int, line: str) -> LogLine | None:
    parts = line.rstrip("\n").split(" ", 2)
    if len(parts) < 2:
        return None
    return LogLine(parts[0], service, index, parts[1], parts[2] if len(parts) > 2 else "")


def log_files(folder: Path, selector: str | None = None) -> list[tuple[str, int, Path]]:
    """The (service, index, path) of every log file, filtered by `service` or `service.N`."""
    service_filter, index_filter = None, None
    if selector:
        head, _, tail = selector.rpartition(".")
        if head and tail.isdigit():
            service_filter, index_filter = head, int(tail)
        else:
            service_filter = selector
    found = []
    if not folder.is_dir():
        return []
    for path in sorted(folder.iterdir()):
        match = _FILE.match(path.name)
        if not match:
            continue
        service, index = match["service"], int(match["index"])
        if service_filter is not None and service != service_filter:
            continue
        if index_filter is not None and index != index_filter:
            continue
        found.append((service, index, path))
    return found


def read_merged(files: Iterable[tuple[str, int, Path]], tail: int | None = None) -> list[LogLine]:
    """All lines of the given files, merged by time; only the last `tail` when set."""
    lines: list[LogLine] = []
    for service, index, path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        for raw in text.splitlines():
            parsed = parse_line(service, index, raw)
            if parsed is not None:
                lines.append(parsed)
    lines.sort(key=lambda line: line.ts)
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    return lines


def follow(
    folder: Path,
    selector: str | None,
    *,
    poll: float = 0.25,
    alive: Callable[[], bool] | None = None,
) -> Iterator[LogLine]:
    """Yield new lines as they are appended (also from instances that appear later).

    Ends once `alive()` says the writer is gone and everything it wrote was yielded.
    """
    offsets: dict[Path, int] = {}
    for _, _, path in log_files(folder, selector):
        offsets[path] = path.stat().st_size
    writer_gone = False
    while True:
        batch: list[LogLine] = []
        for service, index, path in log_files(folder, selector):
            start = offsets.get(path, 0)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size <= start:
                continue
            with path.open("rb") as handle:
                handle.seek(start)
                chunk = handle.read(size - start)
            complete = chunk.rfind(b"\n") + 1  # only whole lines; the rest next time
            offsets[path] = start + complete
            for raw in chunk[:complete].decode("utf-8", errors="replace").splitlines():
                parsed = parse_line(service, index, raw)
                if parsed is not None:
                    batch.append(parsed)
        batch.sort(key=lambda line: line.ts)
        yield from batch
        if batch:
            continue
        if writer_gone:
            return
        time.sleep(poll)
        # Check after the sleep, then read once more: lines written just before the end count.
        writer_gone = alive is not None and not alive()
