"""Row 7 and malformed answers: yagna itself misbehaves.

The test starts a local network of its own and puts a fault-injecting loopback proxy
(_proxy.py) between it and golem-deploy, which uses it as "your own yagna" (YAGNA_APPKEY,
YAGNA_API_URL = the proxy). Because the test owns the network, it can ask the real yagna,
past the proxy, what really happened -- e.g. that no agreement was created twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import Cli, wait_until
from _harness import Scenario, ask_yagna, service
from _proxy import FaultyProxy, Rule, proxied_network

from golem_deploy import localnet

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(420)]


@pytest.fixture
def proxied(cli: Cli) -> Iterator[tuple[FaultyProxy, localnet.LocalNetInfo]]:
    """A network owned by the test, reached by the CLI only through the faulty proxy."""
    with proxied_network(cli.env, providers=3, prefix="gd-rel-net-") as network:
        yield network


def _journal_ids(scenario: Scenario, kind: str, key: str) -> list[str]:
    return [str(r[key]) for r in scenario.journal() if r["kind"] == kind]


def test_row07_yagna_errors_drops_and_outage_are_survived(
    cli: Cli, tmp_path: Path, proxied: tuple[FaultyProxy, Any]
) -> None:
    proxy, info = proxied
    # Faults on the way up, each once: the worst kind (yagna did it, the answer was lost)
    # on the calls that create things, errors and drops on the polls.
    for rule in (
        Rule("POST", r"/market-api/v1/agreements$", "drop_after"),
        Rule("POST", r"/agreements/[^/]+/confirm$", "error"),
        Rule("GET", r"/market-api/v1/demands/[^/]+/events", "error", times=2),
        Rule("POST", r"/market-api/v1/demands/[^/]+/proposals/[^/]+$", "drop"),
        Rule("POST", r"/activity-api/v1/activity$", "drop_after"),
        Rule("POST", r"/activity/[^/]+/exec$", "error"),
        Rule("GET", r"/payment-api/v1/debitNoteEvents", "drop", times=2),
    ):
        proxy.add(rule)
    scenario = Scenario.create(cli, tmp_path, "row07", {"app": service(instances=2)})
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    modes = {mode for mode, _, _ in proxy.injected}
    assert {"drop_after", "error"} <= modes, proxy.injected  # the faults were exercised
    _assert_bound_once(scenario, info)

    # yagna goes away for a while (restart): running instances ride it out.
    proxy.outage(7.0)
    wait_until(
        lambda: sum(1 for m, _, _ in proxy.injected if m == "drop") >= 3,
        30,
        "the outage to hit requests",
    )
    wait_until(lambda: not proxy.outage_active(), 30, "the outage to end")
    status = scenario.wait_for_status(
        "every instance running after the outage",
        lambda s: all(i["state"] == "running" for i in s["services"][0]["instances"]),
        timeout=60,
    )
    assert all(i["restarts"] == 0 for i in status["services"][0]["instances"]), status
    _assert_bound_once(scenario, info)

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    view = ask_yagna(
        info.api_url, info.app_key, set(_journal_ids(scenario, "ActivityCreated", "activity_id"))
    )
    # Every agreement yagna ever approved is one the journal recorded (the audit also
    # checks that none is left binding and none is unknown to the journal).
    ever_bound = {a for a, s in view.agreements.items() if s == "Terminated"}
    assert ever_bound <= set(_journal_ids(scenario, "AgreementCreated", "agreement_id"))
    assert len(_journal_ids(scenario, "AllocationCreated", "allocation_id")) == 1
    scenario.audit(yagna=view)


def _assert_bound_once(scenario: Scenario, info: Any) -> None:
    """Never double-created: yagna holds exactly one approved agreement per instance, the
    very ones the instances report."""
    approved = {
        entry["id"] for entry in _get_direct(info, "/market-api/v1/agreements?state=Approved")
    }
    instances = scenario.instances()
    assert approved == {i["agreement_id"] for i in instances}, (approved, instances)
    assert len(approved) == len(instances)


def _get_direct(info: Any, path: str) -> Any:
    import json
    import urllib.request

    request = urllib.request.Request(
        info.api_url + path, headers={"Authorization": f"Bearer {info.app_key}"}
    )
    with urllib.request.urlopen(request, timeout=20) as answer:  # loopback only
        return json.loads(answer.read())


@pytest.mark.parametrize("mode", ["garbage", "huge", "error"])
def test_malformed_yagna_answers_fail_clearly(
    cli: Cli, tmp_path: Path, proxied: tuple[FaultyProxy, Any], mode: str
) -> None:
    """Every answer about the allocation is broken: the deployment fails with a clear
    reason (no traceback, no hang), and `down` still releases everything."""
    proxy, info = proxied
    proxy.add(Rule("POST", r"/payment-api/v1/allocations$", mode, times=1000))
    scenario = Scenario.create(cli, tmp_path, f"malformed-{mode}", {"app": service()})
    expected = {"garbage": "not JSON", "huge": "too large", "error": "500"}[mode]
    # `up`'s own checks (golem-deploy doctor's) meet the broken allocation first: nothing starts.
    checked = scenario.up(timeout="90s")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr
    assert expected in checked.stderr and "allocation" in checked.stderr, checked.stderr
    assert not scenario.folder.exists()
    # Past the checks, the supervisor meets it and fails the same clear way.
    up = cli(*scenario.up_args("-d", "--timeout", "90s", "--skip-checks"))
    assert up.returncode == 1, up.stdout + up.stderr
    assert "Traceback" not in up.stderr
    assert expected in up.stderr, up.stderr
    assert "allocation" in up.stderr, up.stderr
    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    view = ask_yagna(info.api_url, info.app_key, set())
    scenario.audit(yagna=view)
