"""Changing a running deployment (`up` again, `scale`, `restart`, `--dry-run`) end to end.

The CLI runs as a subprocess against a private local network, as in every reliability row;
each test ends with the harness audit: nothing leaked, every agreement a change made
included (the journal records them as the first `up`'s).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import Cli, wait_until
from _harness import Scenario, service, write_manifest, yagna_get

from golem_deploy import localnet

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(600)]


def _running(scenario: Scenario) -> dict[int, str]:
    """index -> agreement id of every running instance."""
    return {i["index"]: i["agreement_id"] for i in scenario.instances() if i["state"] == "running"}


def _changes(scenario: Scenario) -> list[dict[str, Any]]:
    return [r for r in scenario.journal() if r["kind"] == "ReconcileFinished"]


def test_scale_2_to_5_to_1_then_restart_one(cli: Cli, tmp_path: Path) -> None:
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

    restart = cli("restart", "-n", "scaling", "worker.0")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "worker: replaced, 1 -> 1 instance: replace worker.0" in restart.stdout
    restarted = _running(scenario)
    assert list(restarted) == [0] and restarted[0] != first[0]  # a fresh agreement
    assert [c["ok"] for c in _changes(scenario)] == [True, True, True]

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit()


def test_dry_run_and_refusals_change_nothing_then_scale_on_a_vpn(cli: Cli, tmp_path: Path) -> None:
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
    assert "cannot take this change" in refused.stderr and "10.8.0.0/24" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert _running(scenario) == before and not _changes(scenario)

    # a new budget is taken: yagna's allocation is amended, nothing else moves
    write_manifest(tmp_path, "planned", services, budget="3")
    raised = cli("up", str(scenario.manifest))
    assert raised.returncode == 0, raised.stdout + raised.stderr
    assert "budget: 1.0 -> 3" in raised.stdout, raised.stdout
    assert Decimal(scenario.status()["budget"]["total"]) == 3
    net = localnet.status(scenario.folder / "localnet")
    assert net is not None
    [allocation] = yagna_get(net.api_url, net.app_key, "/payment-api/v1/allocations")
    assert Decimal(allocation["totalAmount"]) == 3
    assert _running(scenario) == before  # the same agreements

    # db comes first in the manifest: its new instance's planned address is web.0's, which
    # web.0 keeps; db.1 takes a free one instead, and no running instance moves.
    ips = {
        (s["name"], i["index"]): i["ip"]
        for s in scenario.status()["services"]
        for i in s["instances"]
    }
    cli.ok("scale", "-n", "planned", "db=2")
    now = {
        (s["name"], i["index"]): i["ip"]
        for s in scenario.status()["services"]
        for i in s["instances"]
    }
    assert {k: now[k] for k in ips} == ips
    assert now[("db", 1)] not in ips.values() and len(set(now.values())) == 4

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit()


# ---- rolling replace ---------------------------------------------------------------------------

PYTHON = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"  # the webapp's image


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _web(port: int, tick: str, *, instances: int = 2, **extra: Any) -> dict[str, Any]:
    """An HTTP server on port 8000 of each instance, forwarded from `port` here."""
    spec = service(
        instances=instances,
        start=[{"run": "python3 -m http.server 8000 --directory /golem/work >/dev/null 2>&1 &"}],
        run={"every": "2s", "steps": [["/bin/echo", tick]]},
        ports=[f"{port}:8000"],
        healthcheck={"http": {"port": 8000}, "interval": "2s", "timeout": "5s", "retries": 2},
        payload={"image_hash": PYTHON},
        restart={"policy": "on-failure", "max_restarts": 2, "backoff": "1s"},
    )
    spec.update(extra)
    return spec


class Client(threading.Thread):
    """A client looping GETs through the forwarded port; counts what failed."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.ok = 0
        self.failed: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                url = f"http://127.0.0.1:{self.port}/"  # loopback only
                with urllib.request.urlopen(url, timeout=30) as answer:
                    answer.read()
                    self.ok += 1
            except (OSError, urllib.error.URLError) as error:
                self.failed.append(repr(error))

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=60)


def test_rolling_replace_of_a_changed_run_step_fails_no_request(cli: Cli, tmp_path: Path) -> None:
    port = _free_port()
    scenario = Scenario.create(cli, tmp_path, "rolling", {"web": _web(port, "v1")})
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    before = _running(scenario)
    client = Client(port)
    client.start()
    try:
        wait_until(lambda: client.ok >= 3, 60, "the client's first answers")
        write_manifest(tmp_path, "rolling", {"web": _web(port, "v2")})
        change = cli("up", str(scenario.manifest), "--timeout", "5m")
        served_during = client.ok
    finally:
        client.stop()
    assert change.returncode == 0, change.stdout + change.stderr
    assert "web: replaced (run changed), 2 -> 2 instances: replace web.0, web.1" in change.stdout
    assert client.failed == [], client.failed
    assert served_during > 3
    after = _running(scenario)
    assert sorted(after) == [0, 1]
    assert not set(after.values()) & set(before.values())  # every instance is a new one
    records = scenario.journal()
    replaced = [(r["service"], r["index"]) for r in records if r["kind"] == "ReplacementRunning"]
    assert replaced == [("web", 0), ("web", 1)]  # one at a time, in order
    assert [c["ok"] for c in _changes(scenario)] == [True]

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit()


def test_a_replacement_that_never_becomes_healthy_keeps_the_old_instance(
    cli: Cli, tmp_path: Path
) -> None:
    port = _free_port()
    scenario = Scenario.create(cli, tmp_path, "unhealthy", {"web": _web(port, "v1", instances=1)})
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    before = _running(scenario)
    broken = _web(port, "v2", instances=1)
    broken["healthcheck"] = {"http": {"port": 8001}, "interval": "1s", "retries": 1}
    write_manifest(tmp_path, "unhealthy", {"web": broken})
    change = cli("up", str(scenario.manifest), "--timeout", "5m")
    assert change.returncode == 1, change.stdout + change.stderr
    assert "the change of unhealthy failed: the replacement of web.0 did not start" in (
        change.stderr
    )
    assert "the old instance is kept" in change.stderr
    assert _running(scenario) == before  # still served by the same agreement
    assert [c["ok"] for c in _changes(scenario)] == [False]
    # The running manifest is still the old one: the same change is planned again.
    again = cli("up", str(scenario.manifest), "--dry-run")
    assert "web: replaced (run, healthcheck changed)" in again.stdout

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit()


def test_supervisor_killed_mid_rolling_replace_then_down_releases_everything(
    cli: Cli, tmp_path: Path
) -> None:
    port = _free_port()
    scenario = Scenario.create(cli, tmp_path, "killed", {"web": _web(port, "v1")})
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    write_manifest(tmp_path, "killed", {"web": _web(port, "v2")})
    change = cli.popen("up", str(scenario.manifest), stdout=subprocess.PIPE)
    try:

        def mid_change() -> bool:
            records = scenario.journal()
            kinds = [r["kind"] for r in records]
            if "ReconcileStarted" not in kinds:
                return False
            after = kinds[kinds.index("ReconcileStarted") :]
            return "ActivityCreated" in after  # a replacement holds an agreement and activity

        wait_until(mid_change, 180, "a replacement's activity, mid-change")
        scenario.kill_supervisor()
    finally:
        change.communicate(timeout=120)
    assert change.returncode == 1  # it says the supervisor went away
    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    audit = scenario.audit(expect_invoices=False)
    started = [r for r in scenario.journal() if r["kind"] == "AgreementCreated"]
    assert len(started) >= 3  # the two first ones and at least one replacement: all released
    del audit
