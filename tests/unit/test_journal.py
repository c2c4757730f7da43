"""The journal is the truth after a crash: what it folds to is what `down` releases."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import stat
from decimal import Decimal
from pathlib import Path

import pytest

from golem_deploy.supervisor import journal as jr


@dataclasses.dataclass(frozen=True)
class AgreementCreated:  # shaped like the engine's events: the class name is the kind
    agreement_id: str
    provider_id: str
    provider_name: str
    service: str
    index: int


class State(enum.Enum):
    running = "running"


@dataclasses.dataclass(frozen=True)
class InstanceStateChanged:
    service: str
    index: int
    old: State
    new: State
    reason: str | None


def test_records_are_durable_lines_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with jr.Journal(path) as journal:
        journal.append("AllocationCreated", allocation_id="a-1", amount=Decimal("1.5"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    (line,) = path.read_text().splitlines()
    record = json.loads(line)
    assert record["kind"] == "AllocationCreated"
    assert record["allocation_id"] == "a-1"
    assert record["amount"] == "1.5"  # money stays a decimal string, never a float


def test_fold_tracks_acquired_minus_released(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with jr.Journal(path) as journal:
        journal.append("DeploymentStarted", name="web", network_kind="local", pid=42)
        journal.append("LocalnetStarted", state_dir="/x/localnet", api_url="http://127.0.0.1:1")
        journal.append("AllocationCreated", allocation_id="al", amount="1")
        journal.append_event(AgreementCreated("ag1", "0xp1", "local-provider-1", "web", 0))
        journal.append_event(AgreementCreated("ag2", "0xp2", "local-provider-2", "web", 1))
        journal.append("ActivityCreated", activity_id="ac1", agreement_id="ag1")
        journal.append("ActivityCreated", activity_id="ac2", agreement_id="ag2")
        journal.append("ActivityDestroyed", activity_id="ac1")
        journal.append("AgreementTerminated", agreement_id="ag1", reason="done")
    held = jr.load(path)
    assert held.name == "web"
    assert held.supervisor_pid == 42
    assert held.network_kind == "local"
    assert held.api_url == "http://127.0.0.1:1"
    assert set(held.allocations) == {"al"}
    assert set(held.agreements) == {"ag2"}
    assert held.agreements["ag2"].provider_name == "local-provider-2"
    assert held.activities == {"ac2": "ag2"}
    assert held.localnet_dir == "/x/localnet"
    assert not held.empty


def test_a_changed_budget_is_the_journals_budget(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with jr.Journal(path) as journal:
        journal.append("DeploymentStarted", name="web", budget="1", pid=42)
        journal.append("AllocationCreated", allocation_id="al", amount="1")
        journal.append("AllocationAmended", allocation_id="al", amount="3")
    held = jr.load(path)
    assert held.budget == "3" and held.allocations == {"al": {"amount": "3"}}
    with jr.Journal(path) as journal:
        journal.append("AllocationReleased", allocation_id="al")
    assert jr.load(path).allocations == {}


def test_fold_after_clean_down_holds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with jr.Journal(path) as journal:
        journal.append("LocalnetStarted", state_dir="/x/localnet")
        journal.append("AllocationCreated", allocation_id="al")
        journal.append("AgreementCreated", agreement_id="ag")
        journal.append("ActivityCreated", activity_id="ac", agreement_id="ag")
        journal.append("AgreementTerminated", agreement_id="ag")
        journal.append("ActivityDestroyed", activity_id="ac")
        journal.append("AllocationReleased", allocation_id="al")
        journal.append("LocalnetStopped", state_dir="/x/localnet")
        journal.append("DeploymentStopped")
    held = jr.load(path)
    assert held.empty
    assert held.stopped
    assert held.summary() == []


def test_torn_last_line_after_a_crash_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with jr.Journal(path) as journal:
        journal.append("AgreementCreated", agreement_id="ag")
    with path.open("a") as handle:
        handle.write('{"ts": 1, "kind": "AgreementTermin')  # SIGKILL mid-write
    held = jr.load(path)
    assert set(held.agreements) == {"ag"}


def test_missing_journal_holds_nothing(tmp_path: Path) -> None:
    assert jr.load(tmp_path / "nope.jsonl").empty


def test_instance_states_follow_state_changes(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with jr.Journal(path) as journal:
        journal.append_event(InstanceStateChanged("db", 0, State.running, State.running, None))
        journal.append("InstanceStateChanged", service="db", index=0, old="running", new="stopping")
    assert jr.load(path).instance_states == {("db", 0): "stopping"}


def test_spent_adds_what_each_acceptance_newly_spent() -> None:
    records = [
        {"kind": "DebitNoteAccepted", "agreement_id": "a", "amount": "0.1", "total_due": "0.1"},
        {"kind": "DebitNoteAccepted", "agreement_id": "a", "amount": "0.2", "total_due": "0.3"},
        {"kind": "InvoiceAccepted", "agreement_id": "a", "amount": "0.35", "new_spend": "0.05"},
        {"kind": "DebitNoteAccepted", "agreement_id": "b", "amount": "0.2", "total_due": "0.2"},
    ]
    assert jr.fold(records).spent == Decimal("0.55")


def test_cost_is_attributed_to_the_instance_that_held_the_agreement() -> None:
    records = [
        {"kind": "AgreementCreated", "agreement_id": "a", "service": "web", "index": 1},
        {"kind": "DebitNoteAccepted", "agreement_id": "a", "amount": "0.1"},
        {"kind": "InvoiceAccepted", "agreement_id": "a", "amount": "0.15", "new_spend": "0.05"},
        {"kind": "DebitNoteAccepted", "agreement_id": "unknown", "amount": "0.2"},
    ]
    held = jr.fold(records)
    assert held.instance_cost == {("web", 1): Decimal("0.15")}
    assert held.spent == Decimal("0.35")


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    app_key = "f00dcafe1234appkey"
    secret_env = "hunter2-secret"
    with jr.Journal(path, secrets=[app_key, secret_env]) as journal:
        journal.append("NetworkReady", api_url="http://127.0.0.1:7465", app_key=app_key)
        journal.append(
            "CommandFinished",
            argv=["/usr/bin/env", "TOKEN=" + secret_env, "LEVEL=1", "/bin/echo", "hi"],
            stdout=f"the key is {app_key}",
        )
        journal.append("Note", nested={"list": [f"x{secret_env}y"]})
    text = path.read_text()
    assert app_key not in text
    assert secret_env not in text
    # short env values are hidden inside `env K=V` prefixes too
    assert "LEVEL=1" not in text
    assert "LEVEL=***" in text
    assert "/bin/echo" in text  # the command itself stays readable


def test_unknown_kinds_and_odd_records_do_not_break_fold() -> None:
    held = jr.fold(
        [
            {"kind": "SomethingNew", "x": 1},
            {"kind": "AgreementCreated"},  # no id: nothing to release
            {"kind": "InstanceStateChanged", "service": "a"},
        ]
    )
    assert held.empty


def test_agreements_with_work_but_no_accepted_invoice_are_known() -> None:
    records = [
        {"kind": "AgreementCreated", "agreement_id": "a", "service": "web", "index": 0},
        {"kind": "AgreementCreated", "agreement_id": "b", "service": "web", "index": 1},
        {"kind": "AgreementCreated", "agreement_id": "c", "service": "web", "index": 2},
        {"kind": "ActivityCreated", "activity_id": "x", "agreement_id": "a"},
        {"kind": "ActivityCreated", "activity_id": "y", "agreement_id": "b"},
        {"kind": "DebitNoteAccepted", "agreement_id": "a", "amount": "0.1"},
        {"kind": "InvoiceAccepted", "agreement_id": "b", "amount": "0.2", "new_spend": "0.2"},
    ]
    held = jr.fold(records)
    assert held.worked - held.invoiced == {"a"}  # c never worked: no invoice is due
    assert held.accepted_by_agreement == {"a": Decimal("0.1"), "b": Decimal("0.2")}


def _journal_with_a_last_record(path: Path) -> bytes:
    with jr.Journal(path) as journal:
        journal.append("DeploymentStarted", name="d", services=[{"name": "db", "instances": 1}])
        journal.append("AllocationCreated", allocation_id="al", amount="1")
        journal.append(
            "AgreementCreated", agreement_id="ag", service="db", index=0, provider_id="0xp"
        )
    return path.read_bytes()


def test_a_journal_torn_at_any_byte_of_its_last_record_replays_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Power loss mid-write: whatever prefix of the last record reached the disk, replay
    skips it with a warning, keeps everything before it, and the next writer's records
    are read again (not glued onto the torn line)."""
    path = tmp_path / "journal.jsonl"
    whole = _journal_with_a_last_record(path)
    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    for cut in range(last_start, len(whole) + 1):
        path.write_bytes(whole[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="golem_deploy.supervisor.journal"):
            held = jr.load(path)
        complete = cut >= len(whole) - 1  # the record is whole (its newline may be missing)
        assert set(held.allocations) == {"al"}, cut
        assert set(held.agreements) == ({"ag"} if complete else set()), cut
        torn = last_start < cut < len(whole) - 1
        assert bool(caplog.records) == torn, cut
        if torn:
            assert "torn" in caplog.records[0].getMessage()
        with jr.Journal(path) as journal:  # recovery appends to the same journal
            journal.append("AllocationReleased", allocation_id="al")
        assert jr.load(path).allocations == {}, cut


def test_restarts_count_when_a_scheduled_restart_happens() -> None:
    def changed(new: str) -> dict[str, object]:
        return {"kind": "InstanceStateChanged", "service": "db", "index": 0, "new": new}

    scheduled = {
        "kind": "InstanceRestartScheduled",
        "service": "db",
        "index": 0,
        "attempt": 1,
        "delay": 5.0,
        "reason": "run failed",
    }
    records = [changed("running"), changed("terminated"), scheduled, changed("pending")]
    assert jr.fold(records).instance_restarts == {("db", 0): 1}
    # a restart cancelled by a stop before it happened is not a restart
    assert jr.fold(records[:3]).instance_restarts == {}
    second = dict(scheduled, attempt=2)
    records += [changed("running"), changed("unresponsive"), second, changed("pending")]
    assert jr.fold(records).instance_restarts == {("db", 0): 2}


def test_short_values_are_redacted_when_their_name_says_secret() -> None:
    redactor = jr.Redactor()
    for name, value in {"db_password": "pw", "API_KEY": "k1", "Token": "t", "LEVEL": "1"}.items():
        redactor.add(value, named_secret=jr.secret_name(name))
    assert redactor.text("pw k1 t 1") == "*** *** *** 1"
    assert [jr.secret_name(n) for n in ("MY_SECRET_X", "passwordfile", "name", "level")] == [
        True,
        True,
        False,
        False,
    ]
    plain = jr.to_plain({"access_token": "x", "user": "bob", "nested": {"PASSWORD": "y"}})
    assert plain == {"access_token": "***", "user": "bob", "nested": {"PASSWORD": "***"}}
