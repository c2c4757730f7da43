"""Fault matrix row 15d: power loss mid-write tears the journal's last record.

The unit and hypothesis tests truncate a journal at every byte offset of its last record;
this row does it to a live deployment's journal, end to end. A deployment is up, its
supervisor is SIGKILLed (as a power loss would end it), and the journal's last record is
cut in the middle of its line, without its newline. Then `status` and `down` run as a
user would run them (the CLI as a subprocess):

- both say, on stderr, which file and which line is torn, and that it was skipped; neither
  prints a traceback;
- `down` recovers from the rest of the journal and releases everything: the shared audit
  (nothing leaked, nothing beyond budget), which reads the journal with the torn line
  still in it (the recovery's writer ended it with a newline and appended after it).

The torn record must not be an acquisition: fsync per record means the engine never went
on past a record it was still writing, so what a power loss can tear is the newest
record, and after `up -d` has returned and every instance runs, that is a state change or
a payment, never the only record of something held. The row asserts that premise.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from _cli_helpers import Cli
from _harness import REPORT_ENV, Scenario, service

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(300)]

ACQUISITIONS = {"AllocationCreated", "AgreementCreated", "ActivityCreated", "NetworkCreated"}


def tear_last_record(path: Path) -> tuple[int, str]:
    """Cut the journal's last line in the middle (dropping its newline); returns that
    line's number and the kind of the record it held."""
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    last = lines[-1]
    kind = str(json.loads(last)["kind"])
    start = len(data) - len(last)
    with path.open("r+b") as handle:
        handle.truncate(start + len(last) // 2)
    return len(lines), kind


def test_row15d_torn_last_journal_record(cli: Cli, tmp_path: Path) -> None:
    scenario = Scenario.create(cli, tmp_path, "torn", {"app": service(instances=2)})
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    scenario.wait_for_status(
        "both instances running",
        lambda s: all(i["state"] == "running" for i in s["services"][0]["instances"]),
    )
    scenario.kill_supervisor()
    path = scenario.folder / "journal.jsonl"
    line, kind = tear_last_record(path)
    assert kind not in ACQUISITIONS, f"the newest record is an acquisition ({kind})"
    assert not path.read_bytes().endswith(b"\n")
    warning = f"{path}: line {line} is torn"

    status = cli("status", "-n", scenario.name)
    assert status.returncode == 0, status.stdout + status.stderr
    assert warning in status.stderr, status.stderr
    assert "Traceback" not in status.stdout + status.stderr
    as_json = cli("status", "-n", scenario.name, "--json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    assert json.loads(as_json.stdout)["supervisor"]["alive"] is False
    assert "Traceback" not in as_json.stderr

    started = time.monotonic()
    down = scenario.down()
    down_seconds = round(time.monotonic() - started, 1)
    assert down.returncode == 0, down.stdout + down.stderr
    assert warning in down.stderr, down.stderr
    assert "Traceback" not in down.stdout + down.stderr
    assert "releasing what the journal says is still held" in down.stdout + down.stderr
    # The torn line stays, ended, in the middle of the journal; every record after it is
    # whole (the recovery's), and the audit reads past it.
    assert path.read_bytes().endswith(b"\n")
    scenario.audit()
    _report(line=line, torn_kind=kind, down_seconds=down_seconds)  # after its asserts


def _report(**figures: object) -> None:
    """bench/reliability.py's summary lists the row's figures (`torn_journal`)."""
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"torn_journal": figures}) + "\n")
