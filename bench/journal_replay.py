"""Journal replay: how long `down` / `status` take to fold a week-long deployment's journal.

    .venv/bin/python bench/journal_replay.py [--debit-notes 100000] [--instances 3] [--rounds 3]

A deployment gains a journal record per accepted debit note (every few seconds per
instance), so a week of one instance at 5-second debit notes is ~120k records. This writes
such a journal (real record shapes, instances replaced now and then, as the supervisor
journals them) and times `journal.load` -- what every `status`, `down` and `up` does --
three ways:

- full: the journal as it would be without compaction (every record);
- compacted: the same journal compacted to its snapshot record;
- live worst case: what the supervisor actually leaves with compaction on, a snapshot plus
  COMPACT_EVERY - 1 newer records, just before the next compaction.

It checks that all three fold to the same Held, and reports sizes and how long one
compaction takes. No daemon, no network: pure file work in a temporary folder.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, load_average, stats

from golem_deploy.supervisor import journal
from golem_deploy.supervisor.journal_compact import COMPACT_EVERY, encode

REPLACE_EVERY = 5_000  # debit notes between two replacements of an instance


def week(debit_notes: int, instances: int) -> list[dict[str, Any]]:
    """The records of a long deployment: start, agreements, debit notes, replacements."""
    ts = 1_700_000_000.0
    records: list[dict[str, Any]] = []
    counter = 0

    def add(kind: str, **fields: Any) -> None:
        nonlocal ts
        ts += 5.0 / instances
        records.append({"ts": ts, "kind": kind, **fields})

    def new_id(prefix: str) -> str:
        nonlocal counter
        counter += 1
        return f"{prefix}{counter:058x}"[:64]

    add(
        "DeploymentStarted",
        name="week",
        network_kind="local",
        budget="100",
        pid=4242,
        services=[{"name": "app", "instances": instances}],
    )
    add(
        "LocalnetStarted",
        state_dir="/home/u/.golem-deploy/week/localnet",
        api_url="http://127.0.0.1:7465",
    )
    add("AllocationCreated", allocation_id=new_id("al"), amount="100")
    live: dict[int, tuple[str, str]] = {}

    def place(index: int) -> None:
        agreement, activity = new_id("ag"), new_id("ac")
        add(
            "AgreementCreated",
            agreement_id=agreement,
            provider_id=new_id("0x")[:42],
            provider_name=f"local-provider-{index % 3 + 1}",
            service="app",
            index=index,
        )
        add(
            "ActivityCreated",
            activity_id=activity,
            agreement_id=agreement,
            service="app",
            index=index,
        )
        add(
            "InstanceStateChanged",
            service="app",
            index=index,
            old="starting",
            new="running",
            reason="started",
        )
        live[index] = (agreement, activity)

    for index in range(instances):
        place(index)
    due: dict[int, Decimal] = dict.fromkeys(range(instances), Decimal(0))
    for n in range(debit_notes):
        index = n % instances
        agreement, activity = live[index]
        due[index] += Decimal("0.000123")
        add(
            "DebitNoteAccepted",
            debit_note_id=new_id("dn"),
            agreement_id=agreement,
            activity_id=activity,
            amount="0.000123",
            total=str(due[index]),
        )
        if n and n % REPLACE_EVERY == 0:
            add("InstanceRestartScheduled", service="app", index=index, attempt=1)
            add(
                "InstanceStateChanged",
                service="app",
                index=index,
                old="running",
                new="unresponsive",
                reason="provider vanished",
            )
            add("ActivityDestroyed", activity_id=activity)
            add("AgreementTerminated", agreement_id=agreement, by="requestor")
            add(
                "InvoiceAccepted",
                invoice_id=new_id("in"),
                agreement_id=agreement,
                amount=str(due[index]),
                new_spend="0",
            )
            due[index] = Decimal(0)
            place(index)
    return records


def write(path: Path, records: list[dict[str, Any]]) -> None:
    """The lines the supervisor's writer would have written (fsync'd one by one there)."""
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(encode(record) + "\n")


def timed_loads(path: Path, rounds: int) -> tuple[list[float], journal.Held]:
    samples, held = [], journal.Held()
    for _ in range(rounds):
        started = time.perf_counter()
        held = journal.load(path)
        samples.append(time.perf_counter() - started)
    return samples, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--debit-notes", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gd-journal-bench-"))
    try:
        records = week(args.debit_notes, args.instances)
        full = folder / "full.jsonl"
        write(full, records)
        full_samples, held_full = timed_loads(full, args.rounds)

        compacted = folder / "compacted.jsonl"
        shutil.copyfile(full, compacted)
        started = time.perf_counter()
        with journal.Journal(compacted, compact_every=None) as writer:
            writer.compact()
        compaction_seconds = time.perf_counter() - started  # includes folding on open
        compacted_samples, held_compacted = timed_loads(compacted, args.rounds)

        # What the supervisor leaves: the last snapshot plus COMPACT_EVERY - 1 records.
        cut = max(len(records) - (COMPACT_EVERY - 1), 0)
        live = folder / "live.jsonl"
        write(live, records[:cut])
        with journal.Journal(live, compact_every=None) as writer:
            writer.compact()
        with live.open("a", encoding="utf-8") as out:
            for record in records[cut:]:
                out.write(encode(record) + "\n")
        live_samples, held_live = timed_loads(live, args.rounds)

        same = held_full == held_compacted == held_live
        emit(
            {
                "benchmark": "journal_replay",
                "records": len(records),
                "debit_notes": args.debit_notes,
                "instances": args.instances,
                "compact_every": COMPACT_EVERY,
                "full_bytes": full.stat().st_size,
                "compacted_bytes": compacted.stat().st_size,
                "live_worst_case_bytes": live.stat().st_size,
                "replay_full_s": stats(full_samples, 4),
                "replay_compacted_s": stats(compacted_samples, 5),
                "replay_live_worst_case_s": stats(live_samples, 4),
                "compaction_s": round(compaction_seconds, 3),
                "same_held": same,
                "spent": str(held_full.spent),
                "load_average": round(load_average(), 2),
            }
        )
        if not same:
            raise SystemExit("the compacted journal does not fold to the same Held")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
