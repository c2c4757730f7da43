"""The snapshot's one builder: the live case (engine snapshots) and the journal case give
the same shape, and the plain form read back is the same snapshot."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.service import ImageDownload, InstanceSnapshot
from golem_deploy.supervisor import journal as jr
from golem_deploy.supervisor import snapshot as sn
from golem_deploy.supervisor.pace import runs_out_at
from golem_deploy.supervisor.snapshot_plain import from_plain

STARTED = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


def _engine_view(**changes: object) -> InstanceSnapshot:
    fields: dict[str, object] = {
        "service": "db",
        "index": 0,
        "state": ServiceState.running,
        "provider_id": "0xp",
        "provider_name": "prov-1",
        "agreement_id": "ag",
        "activity_id": "ac",
        "started_at": STARTED,
        "restarts": 1,
        "cost": Decimal("0.25"),
        "last_output": "first\nthe token is s3cr3t\n\n",
        "reason": "",
    }
    fields.update(changes)
    return InstanceSnapshot(**fields)  # type: ignore[arg-type]


def _live(**changes: object) -> sn.DeploymentSnapshot:
    row = sn.live_instance(
        _engine_view(**changes),
        expires_at=STARTED + dt.timedelta(hours=1),
        last_output=None,
        redact=lambda text: text.replace("s3cr3t", "***"),
    )
    return sn.build(
        name="multi",
        state="running",
        reason=None,
        supervisor_pid=42,
        supervisor_alive=True,
        network_kind="local",
        api_url="http://127.0.0.1:7465",
        budget="1",
        spent=Decimal("0.25"),
        services=[("web", 2), ("db", 1)],
        rows={("db", 0): row},
    )


def test_live_rows_come_from_the_engine_snapshot_and_undeclared_ones_are_pending() -> None:
    snap = _live()
    (web, web_rows), (db, db_rows) = snap.services
    assert (web, [r.state for r in web_rows]) == ("web", ["pending", "pending"])
    row = db_rows[0]
    assert (db, row.state, row.provider_name, row.cost) == (
        "db",
        "running",
        "prov-1",
        Decimal("0.25"),
    )
    assert row.last_output == "the token is ***"  # the last non-empty line, redacted
    assert row.started_at == "2030-01-01T12:00:00Z"
    assert row.expires_at == "2030-01-01T13:00:00Z"
    assert row.reason is None
    no_agreement = _live(agreement_id=None).services[1][1][0]
    assert no_agreement.expires_at is None  # nothing expires without an agreement


def test_the_plain_form_reads_back_as_the_same_snapshot() -> None:
    snap = _live()
    assert from_plain(snap.plain()) == snap
    plain = snap.plain()
    assert plain["budget"] == {
        "total": "1",
        "spent": "0.25",
        "remaining": "0.75",
        "burn_rate_per_hour": None,  # not known before an activity had two debit notes
        "runs_out_at": None,
    }
    assert from_plain({"services": [{"instances": [{"cost": "x"}]}]}).name == "?"


def test_a_download_shows_only_while_the_instance_starts() -> None:
    got = ImageDownload(done=10, total=40, bytes_per_s=5.0)
    starting = _live(state=ServiceState.starting, download=got)
    row = starting.services[1][1][0]
    assert row.download == sn.DownloadView(done=10, total=40, bytes_per_s=5.0)
    assert from_plain(starting.plain()) == starting
    running = _live(download=got).services[1][1][0]
    assert running.download is None  # a stale report never outlives the start


def test_status_json_is_cut_to_the_documented_keys() -> None:
    public = sn.public_status(_live())
    assert list(public) == [
        "name",
        "state",
        "reason",
        "supervisor",
        "network",
        "budget",
        "services",
    ]
    services = public["services"]
    assert isinstance(services, list)
    assert set(services[1]["instances"][0]) == set(sn.INSTANCE_KEYS)


def _held(*records: dict[str, object]) -> jr.Held:
    started = {
        "kind": "DeploymentStarted",
        "name": "multi",
        "network_kind": "local",
        "budget": "1",
        "pid": 7,
        "services": [{"name": "web", "instances": 2}, {"name": "db", "instances": 1}],
    }
    return jr.fold([started, *records])


def test_a_journal_snapshot_has_the_live_shape_gone_until_a_clean_down() -> None:
    held = _held(
        {"kind": "AllocationCreated", "allocation_id": "al", "amount": "1"},
        {"kind": "AgreementCreated", "agreement_id": "ag", "service": "db", "index": 0},
        {"kind": "InstanceStateChanged", "service": "db", "index": 0, "new": "running"},
    )
    gone = sn.from_journal(held, name="multi", pid=7)
    assert gone.state == "gone" and "pid 7" in (gone.reason or "")
    assert [len(rows) for _, rows in gone.services] == [2, 1]
    assert gone.services[1][1][0].state == "running"
    assert gone.services[1][1][0].agreement_id == "ag"
    assert gone.held and "1 allocation(s): al" in gone.held
    assert set(gone.plain()) == set(_live().plain()) | {"held"}
    clean = sn.from_journal(
        _held(
            {"kind": "DeploymentEnded", "reason": "budget exhausted"},
            {"kind": "DeploymentStopped"},
        ),
        name="multi",
        pid=7,
    )
    assert (clean.state, clean.reason) == ("stopped", "budget exhausted")
    assert {row.state for _, row in sn.instances(clean)} == {"terminated"}


def test_the_final_picture_keeps_the_live_output_with_the_journal_word() -> None:
    live = _live()
    ended = sn.from_journal(_held({"kind": "DeploymentStopped"}), name="multi", pid=7)
    final = sn.merge_final(live, ended)
    assert final.state == "stopped" and not final.supervisor_alive
    assert final.services[1][1][0].last_output == "the token is ***"
    assert final.services[1][1][0].state == "terminated"


def test_the_burn_rate_says_when_the_budget_runs_out() -> None:
    now = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)
    assert runs_out_at("1", Decimal("0.25"), Decimal("0.5"), now) == "2030-01-01T13:30:00Z"
    assert runs_out_at("1", Decimal("0.25"), None, now) is None  # pace unknown
    assert runs_out_at("1", Decimal("0.25"), Decimal(0), now) is None  # spending nothing
    assert runs_out_at(None, Decimal("0.25"), Decimal("0.5"), now) is None
    assert runs_out_at("1", Decimal("2"), Decimal("0.5"), now) == "2030-01-01T12:00:00Z"
    snap = dataclasses.replace(
        _live(), burn_per_hour=Decimal("0.072"), runs_out_at="2030-01-01T22:25:00Z"
    )
    assert snap.plain()["budget"]["burn_rate_per_hour"] == "0.072"  # type: ignore[index]
    assert from_plain(snap.plain()) == snap
