"""localnet/disk_bound.py on real SQLite WAL databases (as yagna keeps them) and log files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from golem_deploy.localnet import disk_bound


def _wal_db(folder: Path, name: str, rows: int) -> sqlite3.Connection:
    """A WAL database with `rows` rows, its connection left open (yagna keeps a pool) and
    SQLite's own checkpoints off, so everything is still in the -wal file."""
    db = sqlite3.connect(folder / name, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT)")
    for i in range(rows):
        db.execute("INSERT INTO note (body) VALUES (?)", (f"debit note {i} " + "x" * 200,))
    return db


def test_a_checkpoint_truncates_the_wal_and_keeps_every_row(tmp_path: Path) -> None:
    db = _wal_db(tmp_path, "payment.db", 500)
    wal = tmp_path / "payment.db-wal"
    assert wal.stat().st_size > 100_000
    result = disk_bound.checkpoint_all([tmp_path])
    assert (result.truncated, result.busy) == (1, 0)
    assert wal.stat().st_size == 0 and result.bytes_freed > 100_000
    assert db.execute("SELECT count(*) FROM note").fetchone() == (500,)  # yagna's view
    db.execute("INSERT INTO note (body) VALUES ('after')")  # and it writes on
    fresh = sqlite3.connect(tmp_path / "payment.db")
    assert fresh.execute("SELECT count(*) FROM note").fetchone() == (501,)
    fresh.close()
    db.close()


def test_a_database_being_written_is_left_for_the_next_round_without_waiting(
    tmp_path: Path,
) -> None:
    db = _wal_db(tmp_path, "market.db", 50)
    db.execute("BEGIN IMMEDIATE")  # yagna in the middle of a write
    db.execute("INSERT INTO note (body) VALUES ('in flight')")
    result = disk_bound.checkpoint_all([tmp_path])
    assert result.busy == 1 and result.truncated == 0
    db.execute("COMMIT")
    assert disk_bound.checkpoint_all([tmp_path]).truncated == 1
    db.close()


def test_only_wal_databases_at_the_top_of_a_data_dir_are_touched(tmp_path: Path) -> None:
    (tmp_path / "notes.txt-wal").write_text("not sqlite")  # garbage next to a database
    (tmp_path / "missing").mkdir()
    result = disk_bound.checkpoint_all([tmp_path, tmp_path / "missing", tmp_path / "nowhere"])
    assert result.truncated == 0 and result.busy == 1  # refused, never created
    assert not (tmp_path / "notes.txt").exists()


def test_a_daemon_log_past_its_limit_is_copied_and_truncated_in_place(tmp_path: Path) -> None:
    log = tmp_path / "requestor.log"
    with open(log, "ab") as daemon:  # the daemon's own O_APPEND handle stays open
        daemon.write(b"old line\n" * 200)
        daemon.flush()
        (tmp_path / "host.log").write_text("small\n")
        assert disk_bound.rotate_logs(tmp_path, max_bytes=1000) == 1
        daemon.write(b"new line\n")
        daemon.flush()
    assert log.read_bytes() == b"new line\n"  # written at the start, no hole of zeros
    assert (tmp_path / "requestor.log.1").read_bytes() == b"old line\n" * 200
    assert (tmp_path / "host.log").read_text() == "small\n"
    assert not (tmp_path / "host.log.1").exists()
