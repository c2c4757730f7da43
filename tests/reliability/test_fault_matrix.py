"""The fault matrix: misbehaving providers, through the CLI, on a private local network.

Each test starts a deployment with `golem-deploy up -d --faults FILE`, waits for the end state
the row promises, goes `down`, and finishes with `Scenario.audit()` (nothing leaked, yagna
agrees, nothing beyond budget; see _harness.py). Rows are numbered as in issue 6 and
docs/reliability.md, which also lists how long each takes.
"""

from __future__ import annotations

from typing import Any

import pytest
from _cli_helpers import Cli
from _harness import Scenario, service

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(420)]


def _placed(instances: list[dict[str, Any]]) -> list[str]:
    return sorted(str(i["provider_name"]) for i in instances)


def _records(scenario: Scenario, kind: str, **match: Any) -> list[dict[str, Any]]:
    return [
        r
        for r in scenario.journal()
        if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())
    ]


def _up_running(scenario: Scenario) -> dict[str, Any]:
    up = scenario.up()
    assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
    status = scenario.status()
    assert status["state"] == "running", status
    return status


def _down_clean(scenario: Scenario) -> None:
    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "everything released" in down.stdout
    assert scenario.status()["state"] == "stopped"


def test_row01_provider_rejecting_agreements_is_avoided(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row01",
        {"app": service(instances=3)},
        faults={"local-provider-2": {"reject_agreements": True}},
    )
    _up_running(scenario)
    instances = scenario.instances()
    assert all(i["state"] == "running" for i in instances)
    assert "local-provider-2" not in _placed(instances)
    rejected = _records(scenario, "AgreementRejected")
    assert rejected, "the rejecting provider was never tried: the fault was not exercised"
    avoided = _records(scenario, "ProviderAvoided", provider_name="local-provider-2")
    assert avoided, "local-provider-2 was not avoided"
    assert {r["provider_id"] for r in rejected} == {avoided[0]["provider_id"]}
    _down_clean(scenario)
    scenario.audit()


def test_row02_activity_creation_failing_respawns_elsewhere(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row02",
        {"app": service(instances=3)},
        faults={"local-provider-2": {"fail_activity_create": True}},
    )
    _up_running(scenario)
    instances = scenario.instances()
    assert "local-provider-2" not in _placed(instances)
    failed = _records(scenario, "ActivityCreateFailed")
    assert failed, "no activity creation failed: the fault was not exercised"
    assert all("creation failed" in str(r.get("reason")) for r in failed)
    # The agreement whose activity could not be created was terminated, not left open.
    terminated = {r["agreement_id"] for r in _records(scenario, "AgreementTerminated")}
    assert {r["agreement_id"] for r in failed} <= terminated
    _down_clean(scenario)
    scenario.audit()
