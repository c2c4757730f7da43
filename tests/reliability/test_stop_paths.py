"""Fault matrix rows 8-12: budget exhaustion, a killed supervisor, interrupted starts,
missing invoices and slow providers -- every way a deployment can end abnormally.

Each row ends with `Scenario.audit()` (see _harness.py): nothing left in the journal, no
process of ours, yagna's own records show every agreement terminated and nothing accepted
beyond the budget.
"""

from __future__ import annotations

import signal
import subprocess
import time
from decimal import Decimal
from typing import Any

import pytest
from _cli_helpers import Cli
from _harness import Scenario, finish, service

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(420)]


def _records(scenario: Scenario, kind: str, **match: Any) -> list[dict[str, Any]]:
    return [
        r
        for r in scenario.journal()
        if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())
    ]


def _down_ok(scenario: Scenario, *args: str) -> subprocess.CompletedProcess[str]:
    down = scenario.down(*args)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "everything released" in down.stdout, down.stdout
    assert "Traceback" not in down.stderr
    return down


# ---- row 8: the budget runs out -------------------------------------------------------


def test_row08_budget_exhausted_stops_cleanly_and_says_why(cli: Cli, tmp_path: Any) -> None:
    # local-provider-1 charges no start fee, 0.00002 GLM/s and 0.0001 GLM/cpu-s: a budget of
    # 0.0003 GLM lasts about 15 s. The start-price cap keeps the deployment on it.
    busy = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo busy"
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row08",
        {"app": service(instances=1, run={"every": "1s", "steps": [["/bin/sh", "-c", busy]]})},
        budget="0.0003",
        market={"max_price": {"start": 0}},
        payment={"debit_note_interval": "5s"},  # spend in steps of seconds, not minutes
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    scenario.wait_for_status(
        "the deployment to stop when the budget ran out", lambda s: s["state"] == "stopped", 150
    )
    rejected = _records(scenario, "PaymentRejected")
    assert rejected and all("over budget" in r["reason"] for r in rejected), rejected
    ended = _records(scenario, "DeploymentEnded")
    assert ended and "over budget" in ended[0]["reason"], ended
    status = scenario.status()
    assert Decimal(status["budget"]["spent"]) <= Decimal("0.0003"), status["budget"]
    assert "over budget" in (cli.ok("status", "-n", "row08").stdout)  # says why
    _down_ok(scenario)
    audit = scenario.audit(expect_invoices=False)
    # The final invoice asks for more than is left: it is rejected, never accepted.
    for invoice in audit.yagna.invoices:
        assert invoice["status"] in ("ACCEPTED", "REJECTED"), invoice
    assert audit.yagna.accepted() <= Decimal("0.0003")


# ---- row 9: the supervisor is SIGKILLed ---------------------------------------------------


def _kill_when(scenario: Scenario, phase: str) -> None:
    """Start the deployment, then SIGKILL its supervisor in `phase`."""
    if phase == "running":
        up = scenario.up()
        assert up.returncode == 0, up.stdout + up.stderr
        scenario.kill_supervisor()
        return
    if phase == "down":
        up = scenario.up()
        assert up.returncode == 0, up.stdout + up.stderr
        down = scenario.cli.popen(
            "down", "-n", scenario.name, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        scenario.wait_for_record("down requested", lambda r: r["kind"] == "DownRequested", 60)
        scenario.kill_supervisor()
        _out, err = finish(down)
        assert "Traceback" not in err, err
        return
    markers = {"negotiation": "DemandSubscribed", "start": "ActivityCreated"}
    up_process = scenario.popen_up("-d", "--timeout", "3m")
    try:
        scenario.wait_for_record(phase, lambda r: r["kind"] == markers[phase], 120)
        scenario.kill_supervisor()
    finally:
        _, err = finish(up_process)
    assert up_process.returncode != 0
    assert "Traceback" not in err, err


@pytest.mark.parametrize("phase", ["negotiation", "start", "running", "down"])
def test_row09_supervisor_killed_then_down_releases_everything(
    cli: Cli, tmp_path: Any, phase: str
) -> None:
    slow = {"slow_start": "30s"} if phase == "start" else {}
    scenario = Scenario.create(
        cli,
        tmp_path,
        f"row09-{phase}",
        {"app": service(instances=2, shutdown=[["/bin/echo", "bye"]])},
        faults={f"local-provider-{k}": slow for k in (1, 2, 3)} if slow else None,
    )
    _kill_when(scenario, phase)
    status = scenario.status()
    assert status["supervisor"]["alive"] is False
    _down_ok(scenario)
    assert _down_ok(scenario).returncode == 0  # a second down is harmless
    scenario.audit()


# ---- row 10: interrupted starts -----------------------------------------------------------


# Far longer than any bound below: finishing in time proves nobody waited for the start.
SLOW_START = {f"local-provider-{k}": {"slow_start": "10m"} for k in (1, 2, 3)}


def test_row10a_ctrl_c_during_start_goes_down(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli, tmp_path, "row10a", {"app": service(instances=2)}, faults=SLOW_START
    )
    attached = scenario.popen_up()  # attached, no terminal: plain lines
    try:
        scenario.wait_for_record(
            "an instance starting", lambda r: r["kind"] == "ActivityCreated", 120
        )
        started = time.monotonic()
        attached.send_signal(signal.SIGINT)
        try:
            attached.wait(240)
        except subprocess.TimeoutExpired:
            log = (scenario.folder / "supervisor.log").read_text()[-3000:]
            tail = [(r["kind"], r.get("reason")) for r in scenario.journal()[-12:]]
            raise AssertionError(f"up still running after Ctrl-C\n{tail}\n{log}") from None
    finally:
        out, err = finish(attached, timeout=30)
    assert attached.returncode == 0, out + err
    assert "everything released" in out
    assert time.monotonic() - started < 180  # it did not wait for the 10-minute start
    changes = _records(scenario, "InstanceStateChanged", new="terminated")
    assert changes and all(r["old"] in ("pending", "starting") for r in changes), changes
    scenario.audit()


def test_row10b_down_while_up_detached_is_starting(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli, tmp_path, "row10b", {"app": service(instances=2)}, faults=SLOW_START
    )
    up = scenario.popen_up("-d", "--timeout", "3m")
    try:
        scenario.wait_for_record(
            "an instance starting", lambda r: r["kind"] == "ActivityCreated", 120
        )
        started = time.monotonic()
        _down_ok(scenario)
        assert time.monotonic() - started < 180  # it did not wait for the 10-minute start
    finally:
        _, err = finish(up)
    assert up.returncode == 1
    assert "went down before every instance was running" in err, err
    assert "Traceback" not in err
    scenario.audit()


# ---- row 11: a provider never invoices ----------------------------------------------------


@pytest.mark.slow
def test_row11_missing_invoice_bounded_and_reported(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row11",
        {"app": service(instances=1)},
        faults={f"local-provider-{k}": {"never_invoice": True} for k in (1, 2, 3)},
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    started = time.monotonic()
    down = _down_ok(scenario)
    took = time.monotonic() - started
    assert took < 90, f"down took {took:.0f}s waiting for an invoice that never comes"
    (agreement,) = [r["agreement_id"] for r in _records(scenario, "AgreementCreated")]
    missing = _records(scenario, "InvoiceMissing")
    assert [r["agreement_id"] for r in missing] == [agreement], scenario.kinds()
    assert "no invoice" in down.stdout, down.stdout  # down says so
    audit = scenario.audit()
    assert audit.yagna.invoices == []  # none ever came; its debit notes were accepted
    assert audit.yagna.accepted() > 0


# ---- row 12: slow providers and phase timeouts --------------------------------------------


def test_row12a_slow_start_times_out_clearly_not_a_hang(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row12a",
        {"app": service(instances=1)},
        faults={f"local-provider-{k}": {"slow_start": "1h"} for k in (1, 2, 3)},
    )
    started = time.monotonic()
    up = scenario.up(timeout="20s")
    assert up.returncode == 1
    assert time.monotonic() - started < 60
    assert "was not running after 20s" in up.stderr, up.stderr
    assert "app.0: starting" in up.stderr, up.stderr  # which instance, in which phase
    assert "Traceback" not in up.stderr
    started = time.monotonic()
    _down_ok(scenario)
    assert time.monotonic() - started < 60, "down waited for the slow start"
    scenario.audit()


def test_row12b_hanging_shutdown_is_cut_by_down_timeout(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row12b",
        {"app": service(instances=1, shutdown=[["/bin/sleep", "3600"]])},
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    started = time.monotonic()
    down = _down_ok(scenario, "--timeout", "10s")
    took = time.monotonic() - started
    assert took < 60, f"down took {took:.0f}s"
    assert "Traceback" not in down.stderr
    assert _records(scenario, "DownTimedOut") or "forcing" in down.stdout
    # The cut ends only the graceful part: the work done is still paid for.
    scenario.audit()
