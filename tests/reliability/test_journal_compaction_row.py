"""Fault matrix row 15: the journal is compacted again and again under a live deployment.

A long-running deployment's journal is compacted past a threshold of records (a snapshot
record of everything it folds to, then the tail; supervisor/journal_compact.py). At the
default, 10,000 records, that takes hours; this row lowers the threshold for the
supervisor (GOLEM_DEPLOY_JOURNAL_COMPACT_EVERY=40) and loads the journal: five instances
whose health check always fails (retries far away, so each failure is a journaled record
and nothing restarts) while their debit notes are accepted. Then:

- the journal stays bounded (a snapshot record, then fewer than 2 thresholds of records)
  while it is compacted several times;
- what it folds to is what the live supervisor says: every agreement held, and the GLM
  spent (status from the journal after the supervisor is SIGKILLed: not less than the live
  figure before, never 0);
- `down` recovers from the compacted journal and releases everything: the shared audit,
  where the agreements a compaction folded into its snapshot count as journaled.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from _cli_helpers import Cli, wait_until
from _harness import Scenario, service

from golem_deploy.supervisor import journal
from golem_deploy.supervisor.held import SNAPSHOT_KIND
from golem_deploy.supervisor.journal_compact import COMPACT_EVERY_ENV

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(420)]

THRESHOLD = 40
COMPACTIONS = 3  # seen happen, each a new snapshot record at the head of the journal
FAILING_CHECK = {"run": ["/bin/false"], "interval": "1s", "retries": 100000}


def test_row15_journal_compaction_under_load(cli: Cli, tmp_path: Path) -> None:
    cli.env[COMPACT_EVERY_ENV] = str(THRESHOLD)
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row15",
        {"app": service(instances=5, healthcheck=FAILING_CHECK)},
        payment={"debit_note_interval": "5s"},  # accepted notes: spending to compact
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    path = scenario.folder / "journal.jsonl"

    snapshots: list[float] = []
    longest = 0

    def compacted_enough() -> bool:
        nonlocal longest
        records = list(journal.read(path))
        longest = max(longest, len(records))
        head = records[0] if records else {}
        if head.get("kind") == SNAPSHOT_KIND and head["ts"] not in snapshots:
            snapshots.append(head["ts"])
        return len(snapshots) >= COMPACTIONS

    wait_until(compacted_enough, 240, f"{COMPACTIONS} compactions of the journal")
    # Bounded: the head snapshot plus at most a threshold of records (a few more may land
    # between a compaction and this read).
    assert longest < 2 * THRESHOLD, longest

    live = scenario.status()
    assert live["state"] == "running"
    live_spent = Decimal(live["budget"]["spent"])
    assert live_spent > 0
    held = journal.fold(journal.read(path))
    instances = [i for s in live["services"] for i in s["instances"]]
    assert {i["agreement_id"] for i in instances} <= set(held.agreements), held.summary()
    assert held.spent >= live_spent - max(Decimal(i["cost"]) for i in instances), (
        held.spent,
        live_spent,
    )  # the live figure may be ahead by the one acceptance being journaled

    # The supervisor dies: status is read from the compacted journal, and keeps the money.
    scenario.kill_supervisor()
    gone = scenario.status()
    assert gone["state"] == "gone"
    assert Decimal(gone["budget"]["spent"]) >= live_spent > 0

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "everything released" in down.stdout, down.stdout
    audit = scenario.audit()
    assert audit.compacted_agreements(), "the audit saw no compaction snapshot"
    print(f"row15: {len(snapshots)} compactions seen, at most {longest} records in the journal")
