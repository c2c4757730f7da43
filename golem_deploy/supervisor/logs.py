"""Per-instance log files and the merged, prefixed view `golem-deploy logs` prints.

Why files (not only the socket): logs must outlive the supervisor, so a user can read what
happened after a crash. One file per instance, `logs/<service>.<index>.log`, one line per
record: `<ISO-8601 UTC time> <stream> <text>` where stream is stdout, stderr, state or cmd.
Reading merges the files by time, like compose does.

A chatty service must not fill the disk over weeks, so each file is rotated as compose's
json-file driver does (the service's `logs: {max_size, max_files}`): once the next line
would take it past max_size, `x.log` becomes `x.log.1` (`.1` becomes `.2`, and so on) and a
new `x.log` starts; at most max_files files are kept, the current one included. Reading
and following take the rotated files in, so the recent lines show across a rotation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from golem_deploy.manifest.model import LogRotation
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

    def __init__(
        self,
        folder: Path,
        *,
        redactor: Redactor | None = None,
        rotation: Mapping[str, LogRotation] | None = None,
    ) -> None:
        self.folder = folder
        self._redactor = redactor or Redactor()
        self._rotation = dict(rotation or {})  # service -> its limits (default: LogRotation())
        self._files: dict[tuple[str, int], IO[str]] = {}
        self._sizes: dict[tuple[str, int], int] = {}  # bytes in each open file
        self._partial: dict[tuple[str, int, str], str] = {}
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _file(self, service: str, index: int) -> IO[str]:
        key = (service, index)
        handle = self._files.get(key)
        if handle is None:
            path = self.folder / f"{service}.{index}.log"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._sizes[key] = os.fstat(fd).st_size
            handle = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
            self._files[key] = handle
        return handle

    def _append(self, service: str, index: int, line: str) -> None:
        """Write one line, rotating the file first when the line would overfill it."""
        key = (service, index)
        size = len(line.encode("utf-8"))
        handle = self._file(service, index)
        limits = self._rotation.get(service, DEFAULT_ROTATION)
        if self._sizes[key] and self._sizes[key] + size > limits.max_size:
            handle.close()
            del self._files[key]
            rotate(self.folder / f"{service}.{index}.log", limits.max_files)
            handle = self._file(service, index)
        handle.write(line)
        self._sizes[key] += size

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
            for line in lines:
                text = self._redactor.text(line.rstrip(chr(13)))
                self._append(service, index, f"{stamp} {stream} {text}\n")

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


DEFAULT_ROTATION = LogRotation()


def rotated(path: Path, number: int) -> Path:
    """The `number`th rotated file of `path` (1: the newest)."""
    return path.with_name(f"{path.name}.{number}")


def rotate(path: Path, max_files: int) -> None:
    """Shift path -> path.1 -> path.2 ...; the file beyond max_files - 1 rotated ones goes.

    `path` itself never goes missing, not even for a moment (a reader such as `logs` may
    look at any time): its content gets its rotated name through a hard link, then an
    empty file replaces it in one rename."""
    for number in range(max_files - 1, 1, -1):
        source = rotated(path, number - 1)
        if source.exists():
            os.replace(source, rotated(path, number))  # replaces (drops) the oldest
    if not path.exists():
        return
    if max_files > 1:
        staged = path.with_name(f".{path.name}.rotating")
        staged.unlink(missing_ok=True)
        os.link(path, staged)
        os.replace(staged, rotated(path, 1))
    fresh = path.with_name(f".{path.name}.new")
    os.close(os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    os.replace(fresh, path)


def with_rotated(path: Path) -> list[Path]:
    """`path`'s rotated files, oldest first, then `path` itself."""
    older: list[tuple[int, Path]] = []
    for sibling in path.parent.glob(f"{glob.escape(path.name)}.*"):
        suffix = sibling.name[len(path.name) + 1 :]
        if suffix.isdigit():
            older.append((int(suffix), sibling))
    return [p for _, p in sorted(older, reverse=True)] + [path]


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
        if head and tail.isascii() and tail.isdigit():
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
    for service, index, current in files:
        for path in with_rotated(current):
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
    """Yield the lines appended from now on (also from instances that appear later).

    A file rotated since the last look is finished first (under its rotated name), then the
    new file is read from its start. Ends once `alive()` says the writer is gone and
    everything it wrote was yielded. Where "now" is, is taken at the call."""
    seen: dict[Path, tuple[_FileId, int]] = {}  # current path -> (which file, bytes read)
    for _, _, path in log_files(folder, selector):
        with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
            seen[path] = (_identity(handle), os.fstat(handle.fileno()).st_size)
    return _follow(folder, selector, seen, poll, alive)


def _follow(
    folder: Path,
    selector: str | None,
    seen: dict[Path, tuple[_FileId, int]],
    poll: float,
    alive: Callable[[], bool] | None,
) -> Iterator[LogLine]:
    writer_gone = False
    while True:
        batch: list[LogLine] = []
        for service, index, path in log_files(folder, selector):
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                continue
            with handle:  # what is read, not what was there a moment ago
                now = _identity(handle)
                known, start = seen.get(path, (now, 0))
                if not _same(known, now):  # rotated: what was left of the old file, then anew
                    for older, offset in _since_rotation(path, known, start):
                        batch += _read_file(older, offset, service, index)
                    start = 0
                lines, start = _read_from(handle, start, service, index)
            batch += lines
            seen[path] = (now, start)
        batch.sort(key=lambda line: line.ts)
        yield from batch
        if batch:
            continue
        if writer_gone:
            return
        time.sleep(poll)
        # Check after the sleep, then read once more: lines written just before the end count.
        writer_gone = alive is not None and not alive()


_FileId = tuple[int, bytes]
"""Which file: its inode and first bytes. The inode alone is not enough: a file system
gives the inode of the rotated file just dropped to the next new one."""

_HEAD = 64  # the first line's time stamp (to the microsecond) and the start of its text


def _identity(handle: BinaryIO) -> _FileId:
    return os.fstat(handle.fileno()).st_ino, os.pread(handle.fileno(), _HEAD, 0)


def _same(known: _FileId, now: _FileId) -> bool:
    """The same file, maybe grown since (its head then was shorter)."""
    return known[0] == now[0] and now[1].startswith(known[1])


def _since_rotation(path: Path, known: _FileId, offset: int) -> list[tuple[Path, int]]:
    """The rotated files written since `path` was the file `known` (read up to `offset`):
    that file from `offset`, then every newer rotated file whole, oldest first."""
    older = with_rotated(path)[:-1]
    for position, candidate in enumerate(older):
        try:
            with candidate.open("rb") as handle:
                found = _same(known, _identity(handle))
        except FileNotFoundError:
            continue
        if found:
            return [(candidate, offset)] + [(p, 0) for p in older[position + 1 :]]
    return [(p, 0) for p in older]  # the old file was dropped: every rotated one is newer


def _read_file(path: Path, start: int, service: str, index: int) -> list[LogLine]:
    try:
        with path.open("rb") as handle:
            return _read_from(handle, start, service, index)[0]
    except FileNotFoundError:
        return []


def _read_from(handle: BinaryIO, start: int, service: str, index: int) -> tuple[list[LogLine], int]:
    """The whole lines from byte `start` of an open file, and the offset after them."""
    handle.seek(start)
    chunk = handle.read()
    complete = chunk.rfind(b"\n") + 1  # only whole lines; the rest next time
    lines = []
    for raw in chunk[:complete].decode("utf-8", errors="replace").splitlines():
        parsed = parse_line(service, index, raw)
        if parsed is not None:
            lines.append(parsed)
    return lines, start + complete
