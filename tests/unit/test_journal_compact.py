"""Journal compaction: a compacted journal (snapshot + tail) folds to exactly the same Held
as the full one, and swapping the file never loses a record."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_deploy.supervisor import held as held_module
from golem_deploy.supervisor import journal as jr
from golem_deploy.supervisor import journal_compact
from golem_deploy.supervisor.held import SNAPSHOT_KIND, Held, held_from_plain, held_to_plain

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# ---- realistic record sequences -----------------------------------------------------------

OPS = st.sampled_from(
    [
        "agreement",  # an instance gets an agreement and an activity, and runs
        "debit",  # a debit note of a live agreement is accepted
        "debit",
        "debit",
        "replace",  # an instance is replaced: restart scheduled, old one ended, invoiced
        "network",
        "network_removed",
        "invoice_missing",
        "failed",
        "ended",
        "stopped",
        "restart_run",  # a new DeploymentStarted (after a clean stop)
        "bad_amount",
        "unknown",
    ]
)


class Simulation:
    """Turns drawn operations into the records a supervisor would journal, in order."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.ts = 1_700_000_000.0
        self.counter = 0
        self.live: dict[tuple[str, int], tuple[str, str]] = {}  # instance -> (agr, act)
        self.networks: list[str] = []

    def add(self, kind: str, **fields: Any) -> None:
        self.ts += 1.25
        self.records.append({"ts": self.ts, "kind": kind, **fields})

    def ident(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter:06d}"

    def start(self) -> None:
        self.add(
            "DeploymentStarted",
            name="web",
            network_kind="local",
            budget="1.0",
            pid=4242,
            services=[{"name": "web", "instances": 2}, {"name": "db", "instances": 1}],
        )
        self.add("LocalnetStarting", state_dir="/d/localnet", providers=3)
        self.add("LocalnetStarted", state_dir="/d/localnet", api_url="http://127.0.0.1:7001")
        self.add("AllocationCreated", allocation_id=self.ident("alloc"), amount="1.0")
        self.add("NetworkPlanned", addresses=[["web", 0, "10.0.0.2"], ["db", 0, "10.0.0.3"]])

    def run(self, op: str, pick: int, amount: int) -> None:
        instances = [("web", 0), ("web", 1), ("db", 0)]
        key = instances[pick % len(instances)]
        live = sorted(self.live)
        if op == "agreement" and key not in self.live:
            agreement, activity = self.ident("agr"), self.ident("act")
            provider = f"local-provider-{pick % 3 + 1}"
            self.add(
                "AgreementCreated",
                agreement_id=agreement,
                provider_id=f"0x{pick:040x}",
                provider_name=provider,
                service=key[0],
                index=key[1],
            )
            self.add(
                "ActivityCreated",
                activity_id=activity,
                agreement_id=agreement,
                service=key[0],
                index=key[1],
            )
            self.add(
                "InstanceStateChanged",
                service=key[0],
                index=key[1],
                old="starting",
                new="running",
                reason="started",
            )
            self.live[key] = (agreement, activity)
        elif op == "debit" and live:
            agreement, activity = self.live[live[pick % len(live)]]
            self.add(
                "DebitNoteAccepted",
                debit_note_id=self.ident("dn"),
                agreement_id=agreement,
                activity_id=activity,
                amount=str(Decimal(amount) / Decimal(10**6)),
            )
        elif op == "replace" and live:
            owner = live[pick % len(live)]
            agreement, activity = self.live.pop(owner)
            self.add(
                "InstanceRestartScheduled", service=owner[0], index=owner[1], attempt=pick % 4 + 1
            )
            self.add(
                "InstanceStateChanged",
                service=owner[0],
                index=owner[1],
                old="running",
                new="unresponsive",
                reason="provider vanished",
            )
            self.add("ActivityDestroyed", activity_id=activity)
            self.add("AgreementTerminated", agreement_id=agreement, by="requestor")
            self.add(
                "InvoiceAccepted",
                invoice_id=self.ident("inv"),
                agreement_id=agreement,
                amount=str(amount),
                new_spend=str(Decimal(amount) / Decimal(10**7)),
            )
        elif op == "network":
            network = self.ident("net")
            self.networks.append(network)
            self.add("NetworkCreated", network_id=network, cidr="10.0.0.0/24")
        elif op == "network_removed" and self.networks:
            self.add("NetworkRemoved", network_id=self.networks.pop(pick % len(self.networks)))
        elif op == "invoice_missing":
            self.add("InvoiceMissing", agreement_id=self.ident("agr"), waited=30.0)
        elif op == "failed":
            self.add("DeploymentFailed", reason=f"reason {pick}")
        elif op == "ended":
            self.add("DeploymentEnded", reason="over budget")
        elif op == "stopped":
            self.add("DeploymentStopped", clean=False, still_held=[])
        elif op == "restart_run":
            self.live.clear()
            self.start()
        elif op == "bad_amount":
            self.add("DebitNoteAccepted", agreement_id="agr-x", amount="not a number")
        elif op == "unknown":
            self.add("SomethingNewer", detail=[1, 2, {"x": None}])


@st.composite
def journals(draw: st.DrawFn) -> list[dict[str, Any]]:
    sim = Simulation()
    sim.start()
    steps = draw(
        st.lists(st.tuples(OPS, st.integers(0, 50), st.integers(1, 10**6)), min_size=0, max_size=60)
    )
    for op, pick, amount in steps:
        sim.run(op, pick, amount)
    return sim.records


def through_json(record: dict[str, Any]) -> dict[str, Any]:
    """A record as a reader gets it back from the file."""
    result: dict[str, Any] = json.loads(journal_compact.encode(record))
    return result


def compacted(records: list[dict[str, Any]], at: int) -> list[dict[str, Any]]:
    """The journal compacted after its first `at` records: snapshot + tail."""
    snapshot = journal_compact.snapshot_record(jr.fold(records[:at]))
    return [through_json(snapshot), *records[at:]]


# ---- the exact form ------------------------------------------------------------------------


def test_every_field_of_held_has_a_codec() -> None:
    # A field without one would make compaction fail loudly; this says so before a user does.
    assert {f.name for f in dataclasses.fields(Held)} == set(held_module._CODECS)


@SETTINGS
@given(records=journals())
def test_a_held_survives_its_json_form_exactly(records: list[dict[str, Any]]) -> None:
    held = jr.fold(records)
    back = held_from_plain(json.loads(json.dumps(held_to_plain(held))))
    assert back == held
    assert back.summary() == held.summary()  # same order too: what `down` prints
    assert [type(v) for v in vars(back).values()] == [type(v) for v in vars(held).values()]


@SETTINGS
@given(records=journals(), data=st.data())
def test_a_compacted_journal_folds_to_the_same_held(
    records: list[dict[str, Any]], data: st.DataObject
) -> None:
    full = jr.fold(records)
    at = data.draw(st.integers(0, len(records)), label="compacted after")
    once = compacted(records, at)
    assert jr.fold(once) == full
    # Compacting a compacted journal (the next round) changes nothing either.
    again = data.draw(st.integers(0, len(once)), label="compacted again after")
    assert jr.fold(compacted(once, again)) == full


def test_table_driven_compaction_points_of_a_whole_run() -> None:
    """Every cut of one long realistic run: agreements, debit notes, a replacement, a stop."""
    sim = Simulation()
    sim.start()
    plan = [("agreement", 0), ("agreement", 1), ("agreement", 2), ("network", 0)]
    plan += [("debit", i) for i in range(30)]
    plan += [("replace", 1), ("agreement", 1), ("invoice_missing", 0)]
    plan += [("debit", i) for i in range(30)]
    plan += [("network_removed", 0), ("ended", 0), ("stopped", 0)]
    for op, pick in plan:
        sim.run(op, pick, 1234 + pick)
    full = jr.fold(sim.records)
    assert full.spent > 0 and full.agreements and full.invoices_missing
    for at in range(len(sim.records) + 1):
        assert jr.fold(compacted(sim.records, at)) == full, at


def test_an_unreadable_snapshot_is_an_error_not_an_empty_deployment() -> None:
    bad = {"ts": 1.0, "kind": SNAPSHOT_KIND, "held": {"version": 99}}
    with pytest.raises(held_module.SnapshotUnreadable):
        jr.fold([bad])
    damaged = {"ts": 1.0, "kind": SNAPSHOT_KIND, "held": {"version": 1, "spent": "lots"}}
    with pytest.raises(held_module.SnapshotUnreadable):
        jr.fold([damaged])


# ---- the writer ---------------------------------------------------------------------------


def _write(journal: jr.Journal, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append `records` (the writer stamps its own ts); returns them as written."""
    return [
        through_json(journal.append(r["kind"], **{k: v for k, v in r.items() if k != "ts"}))
        for r in records
    ]


@SETTINGS
@given(records=journals(), every=st.integers(1, 12))
def test_the_writer_compacts_and_the_file_folds_as_the_full_journal(
    tmp_path: Path, records: list[dict[str, Any]], every: int
) -> None:
    path = tmp_path / f"journal-{every}-{len(records)}.jsonl"
    path.unlink(missing_ok=True)
    with jr.Journal(path, compact_every=every) as journal:
        written = _write(journal, records)
        assert journal.held == jr.fold(written)
    lines = path.read_text().splitlines()
    assert len(lines) <= every  # snapshot + fewer than `every` newer records
    if len(records) >= every:
        assert json.loads(lines[0])["kind"] == SNAPSHOT_KIND
    assert jr.load(path) == jr.fold(written)
    assert not list(tmp_path.glob("*.compacting"))


def test_a_reopened_journal_counts_from_its_last_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with jr.Journal(path, compact_every=5) as journal:
        for _ in range(7):  # compacted at 5, then 2 more
            journal.append("DebitNoteAccepted", agreement_id="a", amount="0.1")
    assert len(path.read_text().splitlines()) == 3
    with jr.Journal(path, compact_every=5) as journal:
        for _ in range(3):
            journal.append("DebitNoteAccepted", agreement_id="a", amount="0.1")
    # 2 + 3 = 5 since the snapshot: compacted again, nothing lost.
    assert len(path.read_text().splitlines()) == 1
    assert jr.load(path).spent == Decimal("1.0")


def test_a_journal_past_the_threshold_is_compacted_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with jr.Journal(path, compact_every=None) as journal:
        for _ in range(50):
            journal.append("DebitNoteAccepted", agreement_id="a", amount="0.01")
    with jr.Journal(path, compact_every=20):  # e.g. `down` after a crash
        pass
    assert len(path.read_text().splitlines()) == 1
    assert jr.load(path).spent == Decimal("0.50")


def test_a_torn_record_after_a_snapshot_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with jr.Journal(path, compact_every=3) as journal:
        for _ in range(4):
            journal.append("DebitNoteAccepted", agreement_id="a", amount="1")
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])  # the last record torn mid-write
    assert jr.load(path).spent == Decimal("3")
    with jr.Journal(path, compact_every=3) as journal:
        journal.append("DebitNoteAccepted", agreement_id="a", amount="1")
    assert jr.load(path).spent == Decimal("4")


def test_a_failed_swap_leaves_the_whole_journal_and_appending_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.jsonl"

    def no_space(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_compact.os, "replace", no_space)
    with jr.Journal(path, compact_every=2) as journal:
        for _ in range(5):
            journal.append("DebitNoteAccepted", agreement_id="a", amount="1")
    assert len(path.read_text().splitlines()) == 5  # never compacted, never lost
    assert jr.load(path).spent == Decimal("5")
    assert not list(tmp_path.glob("*.compacting"))


def test_the_writer_stays_thread_safe_across_compactions(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    threads, per_thread = 4, 150
    with jr.Journal(path, compact_every=7) as journal:

        def spend() -> None:
            for _ in range(per_thread):
                journal.append("DebitNoteAccepted", agreement_id="a", amount="0.001")

        workers = [threading.Thread(target=spend) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert jr.load(path).spent == Decimal("0.001") * threads * per_thread
    assert len(path.read_text().splitlines()) < 7


def test_the_compacted_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with jr.Journal(path, compact_every=1) as journal:
        journal.append("DeploymentStarted", name="x")
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_the_threshold_can_be_lowered_from_the_environment_only_sensibly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reliability row 15 compacts a live journal every 40 records; nonsense keeps the
    default rather than compacting on every append."""
    from golem_deploy.supervisor.journal_compact import (
        COMPACT_EVERY,
        COMPACT_EVERY_ENV,
        compact_every,
    )

    monkeypatch.delenv(COMPACT_EVERY_ENV, raising=False)
    assert compact_every() == COMPACT_EVERY
    for value, expected in (("40", 40), ("10", 10), ("9", COMPACT_EVERY), ("x", COMPACT_EVERY)):
        monkeypatch.setenv(COMPACT_EVERY_ENV, value)
        assert compact_every() == expected
