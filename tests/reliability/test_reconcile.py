"""Changing a running deployment (`up` again, `scale`, `restart`, `--dry-run`) end to end.

The CLI runs as a subprocess against a private local network, as in every reliability row;
each test ends with the harness audit: nothing leaked, every agreement a change made
included (the journal records them as the first `up`'s).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import Cli
from _harness import Scenario, service, write_manifest

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(600)]


def _running(scenario: Scenario) -> dict[int, str]:
    """index -> agreement id of every running instance."""
    return {i["index"]: i["agreement_id"] for i in scenario.instances() if i["state"] == "running"}


def _changes(scenario: Scenario) -> list[dict[str, Any]]:
    return [r for r in scenario.journal() if r["kind"] == "ReconcileFinished"]


def test_scale_2_to_5_to_1_keeps_the_instances_that_stay(cli: Cli, tmp_path: Path) -> None:
    scenario = Scenario.create(cli, tmp_path, "scaling", {"worker": service(instances=2)})
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    first = _running(scenario)
    assert sorted(first) == [0, 1]

    dry = cli("scale", "-n", "scaling", "worker=5", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "worker: scaled, 2 -> 5 instances: start worker.2, worker.3, worker.4" in dry.stdout
    assert _running(scenario) == first and not _changes(scenario)  # nothing changed

    typo = cli("scale", "-n", "scaling", "wroker=3")
    assert typo.returncode == 1
    assert "no service 'wroker'" in typo.stderr and "did you mean 'worker'?" in typo.stderr

    up5 = cli("scale", "-n", "scaling", "worker=5")
    assert up5.returncode == 0, up5.stdout + up5.stderr
    five = _running(scenario)
    assert sorted(five) == [0, 1, 2, 3, 4]
    assert {i: five[i] for i in first} == first  # the first two were not touched

    down1 = cli("scale", "-n", "scaling", "worker=1")
    assert down1.returncode == 0, down1.stdout + down1.stderr
    assert "stop worker.4, worker.3, worker.2, worker.1" in down1.stdout
    assert _running(scenario) == {0: first[0]}
    assert [i["index"] for i in scenario.instances()] == [0]  # the stopped ones are gone
    assert [c["ok"] for c in _changes(scenario)] == [True, True]

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit()


def test_up_again_dry_run_and_refusals_change_nothing(cli: Cli, tmp_path: Path) -> None:
    services = {"db": service(), "web": service(instances=2, depends_on=["db"])}
    scenario = Scenario.create(cli, tmp_path, "planned", services)
    fresh = cli("up", str(scenario.manifest), "--dry-run")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "db: added, 0 -> 1 instance: start db.0" in fresh.stdout
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    before = _running(scenario)

    changed = {
        "db": service(),
        "web": service(
            instances=3, depends_on=["db"], run={"every": "2s", "steps": [["/bin/echo", "v2"]]}
        ),
        "cache": service(),
    }
    write_manifest(tmp_path, "planned", changed)
    dry = cli("up", str(scenario.manifest), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.splitlines()[1:] == [
        "  db: unchanged, 1 -> 1 instance",
        "  cache: added, 0 -> 1 instance: start cache.0",
        "  web: replaced (run changed), 2 -> 3 instances: start web.2; replace web.0, web.1",
    ]  # depends_on order: web (on db) after the first wave
    as_json = json.loads(cli.ok("up", str(scenario.manifest), "--dry-run", "--json").stdout)
    assert [(s["service"], s["change"]) for s in as_json["services"]] == [
        ("db", "unchanged"),
        ("cache", "added"),
        ("web", "replaced"),
    ]

    write_manifest(tmp_path, "planned", services, budget="0.5", network={"cidr": "10.8.0.0/24"})
    refused = cli("up", str(scenario.manifest))
    assert refused.returncode == 1
    assert "cannot take this change" in refused.stderr
    assert "the budget cannot change" in refused.stderr and "10.8.0.0/24" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert _running(scenario) == before and not _changes(scenario)

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit()
