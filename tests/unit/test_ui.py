"""The live table: what a user reads while a deployment starts, runs and stops."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

from rich.console import Console

from golem_deploy.supervisor.snapshot import DeploymentSnapshot, DownloadView, iso, public_status
from golem_deploy.supervisor.snapshot_plain import from_plain
from golem_deploy.ui import table as ui

NOW = 1_800_000_000.0


def _instance(index: int, state: str = "running", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "index": index,
        "state": state,
        "provider_id": f"0x{index:040x}",
        "provider_name": f"local-provider-{index % 3 + 1}",
        "agreement_id": f"{index:064x}",
        "activity_id": f"{index:032x}",
        "started_at": iso(NOW - 125) if state == "running" else None,
        "restarts": 1 if index == 0 else 0,
        "cost": "0.001234",
        "last_output": f"line one\nobservation {index}\n",
        "expires_at": iso(NOW + 3600 * 2 + 60),
    }
    base.update(extra)
    return base


def _snapshot(n_web: int = 2, states: dict[int, str] | None = None) -> dict[str, Any]:
    states = states or {}
    return {
        "name": "simple-service",
        "state": "running",
        "supervisor": {"pid": 123, "alive": True},
        "network": {"kind": "local", "api_url": "http://127.0.0.1:7465"},
        "budget": {"total": "1.0", "spent": "0.0123456", "remaining": "0.9876544"},
        "services": [
            {"name": "db", "instances": [_instance(0)]},
            {
                "name": "web",
                "instances": [_instance(i, states.get(i, "running")) for i in range(n_web)],
            },
        ],
    }


def _typed(snap: dict[str, Any]) -> DeploymentSnapshot:
    """The snapshot as the CLI reads it off the control socket (plain JSON -> typed)."""
    return from_plain(snap)


def _render(renderable: Any, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def test_one_row_per_instance_with_the_columns_users_read() -> None:
    text = _render(ui.deployment_table(_typed(_snapshot()), now=NOW), 120)
    assert "simple-service" in text and "running" in text and "local network" in text
    assert "budget 0.0123/1 GLM" in text
    assert "db.0" in text and "web.0" in text and "web.1" in text
    web1 = next(line for line in text.splitlines() if "web.1" in line)
    assert "local-provider-2" in web1
    assert "2m05s" in web1  # uptime
    assert "2h01m" in web1  # agreement expires in
    assert "0.0012" in web1  # cost so far
    assert "observation 1" in web1  # last output line, not the first


def test_fits_80_columns_with_100_instances() -> None:
    snap = _snapshot(n_web=100, states={7: "starting", 50: "unresponsive"})
    text = _render(ui.deployment_table(_typed(snap), now=NOW), 80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert sum(1 for line in lines if line.startswith("web.")) == 100
    # every row still names its instance and state in full
    assert any(line.startswith("web.99") and "running" in line for line in lines)
    assert any("web.50" in line and "unresponsive" in line for line in lines)


def test_long_output_is_cut_not_the_other_columns() -> None:
    snap = _snapshot(n_web=2)
    snap["services"][1]["instances"][1]["last_output"] = "x" * 300
    text = _render(ui.deployment_table(_typed(snap), now=NOW), 80)
    row = next(line for line in text.splitlines() if line.startswith("web.1"))
    assert len(row) <= 80
    assert "running" in row and "local-provider-2" in row and "2m05s" in row
    assert row.rstrip().endswith("…")


def test_rows_beyond_the_screen_keep_the_unhealthy_ones_and_say_what_is_hidden() -> None:
    snap = _snapshot(n_web=100, states={7: "starting", 88: "unresponsive"})
    text = _render(ui.deployment_table(_typed(snap), now=NOW, max_rows=20), 80)
    rows = [line for line in text.splitlines() if line.startswith(("web.", "db."))]
    assert len(rows) == 19
    assert any(line.startswith("web.7 ") for line in rows)
    assert any(line.startswith("web.88 ") for line in rows)
    assert "… 82 more instances not shown (82 running)" in text


def test_header_counts_states() -> None:
    text = _render(ui.header(_typed(_snapshot(n_web=3, states={2: "starting"}))), 120)
    assert "3 running · 1 starting" in text


def test_plain_lines_for_pipes() -> None:
    lines = ui.plain_lines(_typed(_snapshot()), now=NOW)
    assert lines[0] == "deployment simple-service state=running network=local budget=0.0123/1 GLM"
    assert lines[2].startswith("web.0 running provider=local-provider-1 up=2m05s restarts=1")
    assert lines[2].endswith("| observation 0")


def test_a_degraded_deployment_shows_why_and_keeps_its_costs() -> None:
    """The local network died: the table and the plain lines say `degraded` and why, and
    the GLM accepted so far is still shown (issue 14: it used to read 0)."""
    snap = _snapshot(states={0: "unresponsive", 1: "unresponsive"})
    why = "the local network's requestor yagna daemon (pid 42) died; restarting the local network"
    snap.update(state="degraded", reason=why)
    text = _render(ui.deployment_table(_typed(snap), now=NOW), 200)
    assert "degraded" in text and why in text and "budget 0.0123/1 GLM" in text
    lines = ui.plain_lines(_typed(snap), now=NOW)
    assert lines[0].startswith("deployment simple-service state=degraded")
    assert "budget=0.0123/1 GLM" in lines[0]
    assert lines[1] == f"reason: {why}"
    assert public_status(_typed(snap))["reason"] == why
    assert ui.DEPLOYMENT_STYLES["degraded"]


def test_gone_supervisor_lists_what_is_held() -> None:
    snap = _snapshot()
    snap.update(state="gone", held=["1 agreement(s): abc"], reason="supervisor pid 123 is gone")
    text = _render(ui.deployment_table(_typed(snap), now=NOW), 100)
    assert "supervisor pid 123 is gone" in text
    assert "still held" in text and "1 agreement(s): abc" in text


def test_durations_and_amounts() -> None:
    assert [ui.duration(s) for s in (None, 5, 65, 3600 + 120, 86400 * 2 + 3600)] == [
        "-",
        "5s",
        "1m05s",
        "1h02m",
        "2d01h",
    ]
    assert ui.amount("0.00001") == "0"
    assert ui.amount("1.50000") == "1.5"
    assert ui.amount(None) == "-"


def test_status_json_has_exactly_the_documented_keys() -> None:
    snap = _snapshot()
    snap["held"] = ["x"]
    public = public_status(_typed(snap))
    assert set(public) == {"name", "state", "reason", "supervisor", "network", "budget", "services"}
    assert set(public["supervisor"]) == {"pid", "alive"}
    # vpn: null without a VPN; outage: null while yagna answers
    assert set(public["network"]) == {"kind", "api_url", "vpn", "outage"}
    assert public["network"]["vpn"] is None
    assert public["network"]["outage"] is None
    assert set(public["budget"]) == {
        "total",
        "spent",
        "remaining",
        "burn_rate_per_hour",
        "runs_out_at",
    }
    assert set(public["services"][0]) == {"name", "ports", "instances"}
    assert set(public["services"][1]["instances"][0]) == {
        "index",
        "state",
        "ip",
        "provider_id",
        "provider_name",
        "agreement_id",
        "activity_id",
        "started_at",
        "restarts",
        "renewals",
        "cost",
        "last_output",
        "download",
    }


def test_a_starting_instance_shows_its_image_download() -> None:
    snap = _typed(_snapshot())
    (name, rows), *rest = snap.services
    downloading = dataclasses.replace(
        rows[0],
        state="starting",
        download=DownloadView(done=45_000_000, total=100_000_000, bytes_per_s=12_300_000),
    )
    unknown_size = dataclasses.replace(
        downloading, download=DownloadView(done=3_000_000, total=None, bytes_per_s=0)
    )
    assert ui.state_text(downloading) == "starting (image 45 %, 12.3 MB/s)"
    assert ui.state_text(unknown_size) == "starting (image 3.0 MB)"
    assert ui.state_text(dataclasses.replace(downloading, state="running")) == "running"
    snap = dataclasses.replace(snap, services=((name, (downloading, *rows[1:])), *rest))
    assert "starting (image 45 %, 12.3 MB/s)" in _render(ui.deployment_table(snap, now=NOW), 100)
    assert any("starting (image 45 %, 12.3 MB/s)" in line for line in ui.plain_lines(snap))


def test_the_header_shows_the_burn_rate_and_how_long_the_budget_lasts() -> None:
    snap = _snapshot()
    assert "GLM/h" not in _render(ui.header(_typed(snap)), 200)  # unknown yet: nothing shown
    snap["budget"]["burn_rate_per_hour"] = "0.072"
    snap["budget"]["runs_out_at"] = iso(NOW + 13 * 3600 + 52 * 60)
    typed = _typed(snap)
    assert ui.burn_text(typed, NOW) == "0.072 GLM/h, lasts 13h52m"
    assert "0.072 GLM/h" in _render(ui.header(typed), 200)
    assert "burn=0.072 GLM/h, lasts 13h52m" in ui.plain_lines(typed, now=NOW)[0]


def test_a_yagna_outage_shows_under_the_header_and_in_status_json() -> None:
    snap = _snapshot()
    snap["network"]["outage"] = {
        "since": iso(NOW - 12),
        "seconds": 10.0,
        "error": "connection refused",
    }
    typed = _typed(snap)
    assert typed.outage is not None and typed.outage.api_url == snap["network"]["api_url"]
    # Counted to the renderer's clock (a live table keeps counting), not the snapshot's.
    line = f"yagna at {snap['network']['api_url']} not answering for 12s"
    assert line in _render(ui.deployment_table(typed, now=NOW), 100)
    assert any(text.startswith(line) for text in ui.plain_lines(typed, now=NOW))
    public = public_status(typed)
    assert public["network"]["outage"] == snap["network"]["outage"]
    answered = _typed(_snapshot())
    assert "not answering" not in _render(ui.deployment_table(answered, now=NOW), 100)
    assert not any("not answering" in text for text in ui.plain_lines(answered, now=NOW))
