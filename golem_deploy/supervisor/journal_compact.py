"""Journal compaction: one snapshot record of what the journal folds to, replacing the rest.

Why: the journal gains a record per accepted debit note (every few seconds per instance),
so a deployment meant to run for weeks would fill a disk, and `down` / `status` after a
crash would replay all of it. Past a threshold of records since the last snapshot, the
writer swaps the file for one holding a single JournalSnapshot record -- the `Held` the old
file folds to, in its exact JSON form (held.held_to_plain) -- and appends on after it, so
the journal is always "snapshot + tail" and folds to exactly what the full journal would.

The swap is atomic: the new file is written beside the journal, fsync'd, renamed over it,
and the folder fsync'd. A crash at any point leaves either the old journal or the new one,
each complete. A reader that opened the old file finishes reading the old one, which is
whole. Only the journal's single writer compacts (the deployment's lock holder: the
supervisor, or `down` once the supervisor is gone), so no append is lost to the rename.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from golem_deploy.supervisor.held import SNAPSHOT_KIND, Held, held_to_plain

COMPACT_EVERY = 10_000
"""Records since the last snapshot that trigger a compaction: about 14 hours of one
instance's 5-second debit notes, a few MB of journal; folding that many takes ~0.1 s."""

COMPACT_EVERY_ENV = "GOLEM_DEPLOY_JOURNAL_COMPACT_EVERY"
"""Overrides COMPACT_EVERY for the supervisor (at least 10): the reliability row that
compacts a live deployment's journal many times a minute sets it; users have no need to."""


def compact_every() -> int:
    """COMPACT_EVERY, or the environment's override when it is a number >= 10."""
    try:
        value = int(os.environ.get(COMPACT_EVERY_ENV, ""))
    except ValueError:
        return COMPACT_EVERY
    return value if value >= 10 else COMPACT_EVERY


def snapshot_record(held: Held) -> dict[str, Any]:
    """The record that stands for every record folded into `held`."""
    return {"ts": time.time(), "kind": SNAPSHOT_KIND, "held": held_to_plain(held)}


def encode(record: dict[str, Any]) -> str:
    """One journal line (without its newline), as every writer writes it."""
    return json.dumps(record, separators=(",", ":"), sort_keys=False)


def replace_atomically(path: Path, lines: list[str]) -> None:
    """Make `path` hold exactly `lines`, all or nothing, durably (see the module doc)."""
    staging = path.with_name(path.name + ".compacting")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for line in lines:
                out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself must survive a power loss
    finally:
        os.close(folder)
