"""The deployment journal: append-only JSON lines, fsync'd per record.

Why: the supervisor can be SIGKILLed at any moment. Whatever it had acquired on the market
(allocation, agreements, activities) and locally (the private local network) keeps costing
money or CPU until someone releases it. So every acquisition and every release is appended
here *before the engine proceeds* (the engine calls its event consumer synchronously), and
`fold()` turns the journal back into "what is still held" -- the truth after a crash that
`golem-deploy down` uses to clean up.

One record per line: {"ts": <unix seconds>, "kind": <event name>, ...plain fields}. The kinds
written by the engine are its event class names (AllocationCreated, AgreementTerminated, ...);
the supervisor adds its own (DeploymentStarted, LocalnetStarted, LocalnetStopped,
SupervisorStopped, DeploymentStopped). Secrets never reach the file: the writer redacts the
app key and every manifest env value from every string it writes.

What the records mean is held.py's (`fold` -> `Held`); past COMPACT_EVERY records the
writer compacts the file to one snapshot record plus what follows (journal_compact.py), so
the journal stays small and quick to replay however long a deployment runs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from golem_deploy.supervisor import journal_compact
from golem_deploy.supervisor.held import SNAPSHOT_KIND, Held, HeldAgreement, apply, fold
from golem_deploy.supervisor.redact import (
    MIN_SECRET_LENGTH,
    REDACTED,
    Redactor,
    secret_name,
    to_plain,
)

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "Held",
    "HeldAgreement",
    "Journal",
    "Redactor",
    "apply",
    "fold",
    "load",
    "read",
    "secret_name",
    "to_plain",
]

log = logging.getLogger(__name__)


# Field names that carry credentials; dropped entirely, whatever the event.
_SECRET_FIELDS = frozenset({"app_key", "appkey", "api_key", "token", "env", "password"})


class Journal:
    """Appends records to one file; each record is flushed and fsync'd before `append` returns.

    Thread-safe (the daemon writes from the event loop and, rarely, from worker threads).
    It also keeps what the journal folds to (`held`), so compacting needs no re-read:
    every `compact_every` records since the last snapshot (None: never) the file is
    swapped for a snapshot of it (journal_compact.py). Only one Journal may write a file
    at a time -- the deployment's lock holder.
    """

    def __init__(
        self,
        path: Path,
        *,
        secrets: Iterable[str] = (),
        redactor: Redactor | None = None,
        compact_every: int | None = journal_compact.COMPACT_EVERY,
    ) -> None:
        self.path = path
        self._redactor = redactor if redactor is not None else Redactor(secrets)
        self._lock = threading.Lock()
        self._compact_every = compact_every
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        _end_torn_line(fd)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._held = Held()
        self._since_snapshot = 0
        for record in read(path):
            self._held = apply(self._held, record)
            snapshot = record["kind"] == SNAPSHOT_KIND
            self._since_snapshot = 0 if snapshot else self._since_snapshot + 1
        self._compact_if_due()

    @property
    def held(self) -> Held:
        """What the journal folds to now (a copy: the writer keeps folding its own)."""
        with self._lock:
            return copy.deepcopy(self._held)

    def append(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Write one record durably and return it (as written, secrets redacted).

        A field named like a record key (`ts`, `kind`: e.g. PaymentRejected.kind, the kind of
        document) is written as `event_<name>`, so it never replaces the record's own."""
        record: dict[str, Any] = {"ts": time.time(), "kind": kind}
        for name, value in fields.items():
            if name.lower() in _SECRET_FIELDS:
                continue
            key = f"event_{name}" if name in record else name
            record[key] = to_plain(value, self._redactor)
        line = journal_compact.encode(record)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            # Fold what a reader will read back (JSON has no tuples, for one), not `record`.
            self._held = apply(self._held, json.loads(line))
            self._since_snapshot += 1
            self._compact_if_due()
        return record

    def compact(self) -> None:
        """Swap the file for one snapshot record of what it folds to (atomically)."""
        with self._lock:
            self._compact()

    def _compact_if_due(self) -> None:
        if self._compact_every is not None and self._since_snapshot >= self._compact_every:
            self._compact()

    def _compact(self) -> None:
        snapshot = journal_compact.snapshot_record(self._held)
        try:
            journal_compact.replace_atomically(self.path, [journal_compact.encode(snapshot)])
        except OSError as error:
            # The full journal is still whole and still appended to: only bigger. Retry
            # after another round of records rather than on every append.
            log.warning("%s: compaction failed (%s); the journal stays whole", self.path, error)
            self._since_snapshot = 0
            return
        # The old file is gone from the folder: append to the new one from now on.
        self._file.close()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._since_snapshot = 0
        log.info("%s: compacted to a snapshot", self.path)

    def append_event(self, event: Any) -> dict[str, Any]:
        """Journal an engine event (a frozen dataclass): kind = class name, fields as data."""
        fields: dict[str, Any] = {}
        if dataclasses.is_dataclass(event) and not isinstance(event, type):
            fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        return self.append(type(event).__name__, **fields)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _end_torn_line(fd: int) -> None:
    """A power loss mid-write leaves a last line without its newline: end it, so the next
    record starts a line of its own instead of being glued to (and lost with) the torn one."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")
        os.fsync(fd)


def read(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a journal; a torn line (crash mid-write) is skipped with a warning.

    Only a last line can be torn (fsync made the rest whole); once a writer reopened the
    journal the torn line is ended with a newline and stays, skipped, in the middle."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                log.warning("%s: line %d is torn (a crash mid-write?); skipped", path, number)
                continue
            if isinstance(record, dict) and isinstance(record.get("kind"), str):
                yield record


def load(path: Path) -> Held:
    """Fold the journal file at `path` (an absent file holds nothing)."""
    return fold(read(path))
