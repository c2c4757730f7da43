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


# Two of the three providers misbehave, so the fault is met whatever order offers arrive in,
# and every instance must end on local-provider-1.
FAULTY = ("local-provider-2", "local-provider-3")


def _provider_names(scenario: Scenario, ids: set[str]) -> set[str]:
    names = {r["provider_id"]: r["provider_name"] for r in _records(scenario, "ProviderAvoided")}
    return {str(names.get(i)) for i in ids}


def test_row01_provider_rejecting_agreements_is_avoided(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row01",
        {"app": service(instances=3)},
        faults={p: {"reject_agreements": True} for p in FAULTY},
    )
    _up_running(scenario)
    instances = scenario.instances()
    assert all(i["state"] == "running" for i in instances)
    assert _placed(instances) == ["local-provider-1"] * 3
    rejected = _records(scenario, "AgreementRejected")
    assert rejected, "no rejecting provider was tried: the fault was not exercised"
    avoided = {r["provider_id"] for r in _records(scenario, "ProviderAvoided")}
    assert {r["provider_id"] for r in rejected} <= avoided
    assert _provider_names(scenario, avoided) <= set(FAULTY)
    _down_clean(scenario)
    scenario.audit()


def test_row02_activity_creation_failing_respawns_elsewhere(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row02",
        {"app": service(instances=3)},
        faults={p: {"fail_activity_create": True} for p in FAULTY},
    )
    _up_running(scenario)
    instances = scenario.instances()
    assert _placed(instances) == ["local-provider-1"] * 3
    failed = _records(scenario, "ActivityCreateFailed")
    assert failed, "no activity creation failed: the fault was not exercised"
    assert all("creation failed" in str(r.get("reason")) for r in failed)
    # The agreement whose activity could not be created was terminated, not left open.
    terminated = {r["agreement_id"] for r in _records(scenario, "AgreementTerminated")}
    assert {r["agreement_id"] for r in failed} <= terminated
    _down_clean(scenario)
    scenario.audit()


def test_row03a_failing_start_respawns_on_another_provider(cli: Cli, tmp_path: Any) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row03a",
        {"app": service(instances=3, start=[["/bin/echo", "start-marker"]])},
        faults={p: {"fail_commands_matching": "start-marker"} for p in FAULTY},
    )
    _up_running(scenario)
    assert _placed(scenario.instances()) == ["local-provider-1"] * 3
    failed_starts = [
        r
        for r in _records(scenario, "InstanceStateChanged", old="starting")
        if "start failed" in str(r.get("reason"))
    ]
    assert failed_starts, "no start failed: the fault was not exercised"
    assert all(r["new"] == "pending" for r in failed_starts)  # respawned, not terminated
    avoided = _records(scenario, "ProviderAvoided")
    assert avoided and all("start failed" in r["reason"] for r in avoided)
    assert {r["provider_name"] for r in avoided} <= set(FAULTY)
    _down_clean(scenario)
    scenario.audit()


def test_row03b_failing_start_without_respawn_fails_clearly(cli: Cli, tmp_path: Any) -> None:
    failing = {"fail_commands_matching": "start-marker"}
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row03b",
        {
            "app": service(
                instances=1,
                start=[["/bin/echo", "start-marker"]],
                respawn_unstarted_instances=False,
            )
        },
        faults={f"local-provider-{k}": failing for k in (1, 2, 3)},
    )
    up = scenario.up()
    assert up.returncode == 1, up.stdout + up.stderr
    assert "Traceback" not in up.stderr
    assert "app.0 did not start: start failed" in up.stderr, up.stderr
    status = scenario.status()
    assert status["state"] == "failed"
    assert [i["state"] for i in scenario.instances()] == ["terminated"]
    assert len(_records(scenario, "AgreementCreated")) == 1  # never respawned
    assert _records(scenario, "DeploymentFailed")
    _down_clean_after_failure(scenario)
    scenario.audit()


def _down_clean_after_failure(scenario: Scenario) -> None:
    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "everything released" in down.stdout


DYING = ("local-provider-1", "local-provider-2")  # local-provider-3 survives


def _vanishing_row(
    cli: Cli, tmp_path: Any, name: str, restart: dict[str, Any]
) -> tuple[Scenario, list[int]]:
    """Two instances; local-provider-1 and -2 vanish 12 s after their first agreement, so
    (instances spread, cheapest first) at least one instance runs on a dying provider.
    Returns the scenario and the indexes of the instances that ran there."""
    scenario = Scenario.create(
        cli,
        tmp_path,
        name,
        {"app": service(instances=2, restart=restart, shutdown=[["/bin/echo", "shutdown-marker"]])},
        faults={p: {"die_after": "12s"} for p in DYING},
    )
    status = _up_running(scenario)
    victims = [
        i["index"] for i in status["services"][0]["instances"] if i["provider_name"] in DYING
    ]
    assert victims, status  # the fault must be exercised
    return scenario, victims


def _changes(scenario: Scenario, index: int) -> list[tuple[str, str]]:
    return [
        (r["old"], r["new"])
        for r in _records(scenario, "InstanceStateChanged", service="app", index=index)
    ]


@pytest.mark.slow
def test_row04a_vanished_provider_is_replaced(cli: Cli, tmp_path: Any) -> None:
    scenario, victims = _vanishing_row(
        cli, tmp_path, "row04a", {"policy": "on-failure", "max_restarts": 2, "backoff": "1s"}
    )
    scenario.wait_for_status(
        "the vanished instances replaced and running on the surviving provider",
        lambda s: all(
            i["state"] == "running" and i["provider_name"] == "local-provider-3"
            for i in s["services"][0]["instances"]
        ),
        timeout=150,
    )
    for index in victims:
        changes = _changes(scenario, index)
        # running -> unresponsive directly: shutdown was not attempted on the vanished provider.
        assert ("running", "unresponsive") in changes, changes
        assert ("running", "stopping") not in changes, changes
        assert _records(scenario, "InstanceRestartScheduled", index=index)
        assert scenario.instances()[index]["restarts"] >= 1
    _down_clean(scenario)
    scenario.audit(vanished=DYING)


@pytest.mark.slow
def test_row04b_vanished_provider_without_restart_is_reported(cli: Cli, tmp_path: Any) -> None:
    scenario, victims = _vanishing_row(cli, tmp_path, "row04b", {"policy": "never"})
    for index in victims:
        scenario.wait_for_record(
            f"app.{index} reported unresponsive",
            lambda r, index=index: (
                r["kind"] == "InstanceStateChanged"
                and r.get("index") == index
                and r.get("new") == "unresponsive"
            ),
            timeout=240,
        )
        assert ("running", "stopping") not in _changes(scenario, index)
    assert not _records(scenario, "InstanceRestartScheduled")
    status = scenario.status()
    for inst in status["services"][0]["instances"]:
        if inst["index"] not in victims:
            assert inst["state"] == "running", status  # the others keep running
    if len(victims) == 2:  # nothing left to supervise: it went down by itself and says why
        scenario.wait_for_status(
            "the deployment to end", lambda s: s["state"] == "stopped", timeout=240
        )
        assert _records(scenario, "DeploymentEnded")
        down = scenario.down()
        assert down.returncode == 0, down.stdout + down.stderr
    else:
        _down_clean(scenario)
    scenario.audit(vanished=DYING)


def test_row05_failing_health_check_replaces_the_instance(cli: Cli, tmp_path: Any) -> None:
    sick = {"fail_commands_matching": "health-marker"}
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row05",
        {
            "app": service(
                instances=2,
                restart={"policy": "on-failure", "max_restarts": 2, "backoff": "1s"},
                healthcheck={
                    "run": ["/bin/echo", "health-marker"],
                    "interval": "1s",
                    "timeout": "5s",
                    "retries": 2,
                },
            )
        },
        faults={p: sick for p in DYING},
    )
    status = _up_running(scenario)
    victims = [
        i["index"] for i in status["services"][0]["instances"] if i["provider_name"] in DYING
    ]
    assert victims, status
    scenario.wait_for_status(
        "the unhealthy instances replaced on the healthy provider",
        lambda s: all(
            i["state"] == "running" and i["provider_name"] == "local-provider-3"
            for i in s["services"][0]["instances"]
        ),
        timeout=150,
    )
    for index in victims:
        failures = _records(scenario, "HealthCheckResult", ok=False, index=index)
        assert [r["consecutive_failures"] for r in failures][:2] == [1, 2], failures
        stops = [
            r["reason"]
            for r in _records(scenario, "InstanceStateChanged", index=index, new="stopping")
        ]
        assert stops and "unhealthy" in stops[0], stops  # shutdown runs: it was reachable
        assert scenario.instances()[index]["restarts"] >= 1
    _down_clean(scenario)
    scenario.audit()


@pytest.mark.slow
def test_row06_repeatedly_failing_run_honours_max_restarts(cli: Cli, tmp_path: Any) -> None:
    # Each provider attempt runs two good rounds, then its run step fails (exit 3).
    flaky = (
        "n=$(cat /golem/work/n 2>/dev/null || echo 0); echo $((n+1)) > /golem/work/n; "
        "echo round $n; [ $n -lt 2 ] || exit 3"
    )
    scenario = Scenario.create(
        cli,
        tmp_path,
        "row06",
        {
            "app": service(
                instances=1,
                run={"every": "1s", "steps": [["/bin/sh", "-c", flaky]]},
                restart={"policy": "on-failure", "max_restarts": 2, "backoff": "1s"},
            )
        },
    )
    up = scenario.up()
    assert "Traceback" not in up.stderr
    # Three attempts (the first + max_restarts), then the deployment ends by itself.
    scenario.wait_for_status(
        "the deployment to end after its restarts", lambda s: s["state"] == "stopped", 150
    )
    scheduled = _records(scenario, "InstanceRestartScheduled")
    assert [(r["attempt"], r["delay"]) for r in scheduled] == [(1, 1.0), (2, 2.0)]  # backoff
    assert all("run failed" in r["reason"] for r in scheduled)
    (instance,) = scenario.instances()
    assert instance["state"] == "terminated" and instance["restarts"] == 2
    ended = _records(scenario, "DeploymentEnded")
    assert ended and "run failed" in ended[0]["reason"]
    assert len(_records(scenario, "AgreementCreated")) == 3
    down = scenario.down()  # already down by itself: harmless
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit()
