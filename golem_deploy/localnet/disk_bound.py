"""Keep what the local network writes to disk bounded: yagna's WAL files and log files.

Two things grow in a local network's state folder that no setting of yagna 0.17.6 bounds:
its SQLite write-ahead logs and its own log files (RUST_LOG=info: ~50 KB a minute per
daemon with one idle instance). The host process runs `keep_bounded` every
CHECKPOINT_EVERY seconds.

WAL files. yagna keeps its state in about ten SQLite databases per daemon (market, activity,
payment, identity, the erc20 driver), all in WAL mode with SQLite's defaults. A write
lands in the `-wal` file; SQLite copies it into the database every 1000 pages (~4 MB of
WAL) but never shrinks the file, so every busy database keeps a WAL of up to ~4 MB
however little it holds: an idle hello-world deployment's folder grew by ~3 MB a minute
for its first minutes, nearly all of it WAL (bench/state_growth.py). yagna 0.17.6 has no
setting for this (no journal_size_limit, no checkpoint interval).

SQLite lets another process checkpoint a WAL database: `PRAGMA wal_checkpoint(TRUNCATE)`
copies the WAL into the database and truncates the file to zero. The host process runs
that on every `*-wal` file of its daemons every CHECKPOINT_EVERY seconds. It never waits
on yagna: a database yagna is writing to at that moment answers SQLITE_BUSY at once
(busy timeout 0) and is simply tried again on the next round. A checkpoint never loses
data (it is what SQLite itself does at 1000 pages), and yagna's own connections see
nothing but a shorter file.

Log files. A daemon's log (`logs/<node>.log`, its stdout and stderr) past LOG_MAX_BYTES is
copied to `<node>.log.1` (replacing the previous one) and truncated: the daemon writes
with O_APPEND, so it goes on at the start of the emptied file. Lines written between the
copy and the truncation (microseconds) are lost; at most 2 x LOG_MAX_BYTES per daemon stay.

Only the local network's own daemons are touched; a user's yagna is theirs.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 20.0
"""Seconds between rounds. An idle deployment writes ~50 KB of WAL a minute per database
it touches, 20 instances a few MB a minute in all (bench/soak.py); a round costs a few
milliseconds. Every 60 s let the WAL files of 20 instances swing by ~10 MB between two
rounds, more than the whole folder should grow in an hour."""
LOG_MAX_BYTES = 10 * 1024 * 1024
"""A daemon's log file past this is rotated (one previous file kept), like an instance's
default `logs: {max_size: 10MB}`."""


@dataclass
class Round:
    """What one round did: databases truncated, busy ones (left for the next round)."""

    truncated: int = 0
    busy: int = 0
    bytes_freed: int = 0


def wal_databases(data_dirs: Iterable[Path]) -> list[Path]:
    """The databases (the `-wal` file's stem) in WAL mode under each data dir (top level)."""
    found = []
    for folder in data_dirs:
        with contextlib.suppress(OSError):
            for wal in sorted(folder.glob("*-wal")):
                found.append(wal.with_name(wal.name[: -len("-wal")]))
    return found


def checkpoint(database: Path) -> tuple[bool, int]:
    """TRUNCATE-checkpoint one database; (done, bytes the WAL file lost)."""
    wal = database.with_name(database.name + "-wal")
    try:
        before = wal.stat().st_size
    except OSError:
        return True, 0
    if before == 0:
        return True, 0
    try:
        # uri=True + mode=rw: never create a database that is not there.
        with contextlib.closing(
            sqlite3.connect(f"file:{database}?mode=rw", uri=True, timeout=0, isolation_level=None)
        ) as db:
            busy, _frames, _moved = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error as error:  # locked, gone, not a database: the next round retries
        log.debug("checkpoint of %s: %s", database, error)
        return False, 0
    try:
        after = wal.stat().st_size
    except OSError:
        after = 0
    return busy == 0, max(0, before - after)


def checkpoint_all(data_dirs: Iterable[Path]) -> Round:
    """One round over every WAL database of the given yagna data dirs."""
    result = Round()
    for database in wal_databases(data_dirs):
        done, freed = checkpoint(database)
        result.bytes_freed += freed
        if done:
            result.truncated += 1
        else:
            result.busy += 1
    return result


def rotate_logs(folder: Path, max_bytes: int = LOG_MAX_BYTES) -> int:
    """Copy-and-truncate every `*.log` in `folder` larger than `max_bytes`; how many."""
    rotated = 0
    with contextlib.suppress(OSError):
        for log_file in sorted(folder.glob("*.log")):
            try:
                if log_file.stat().st_size <= max_bytes:
                    continue
                shutil.copyfile(log_file, log_file.with_name(log_file.name + ".1"))
                with open(log_file, "r+b") as handle:
                    handle.truncate(0)
            except OSError as error:
                log.debug("rotating %s: %s", log_file, error)
                continue
            rotated += 1
    return rotated


def keep_bounded(data_dirs: Iterable[Path], logs: Path) -> Round:
    """One round: truncate the WAL files, rotate the daemons' logs."""
    result = checkpoint_all(data_dirs)
    rotate_logs(logs)
    return result
