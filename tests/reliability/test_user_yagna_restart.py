"""Fault matrix row 15: the user's own yagna is stopped and started again under a deployment.

With YAGNA_APPKEY set, golem-deploy deploys on "your" yagna. Here that is a real yagna
daemon the test runs itself (its own data dir, its own ports) joined to a private local
network's hub, so its providers keep running while it is down -- as on the real network,
where providers do not care whether a requestor restarts. The test stops it the way a user
does (SIGINT: yagna shuts down cleanly), keeps it down for OUTAGE_S, and starts it again
on the same data dir and ports. The engine must reconnect: the agreements and activities
survived (the providers kept them), so every instance goes on on its own agreement with
no restart and no provider blamed; while yagna is down `status` (JSON and the table) says
"yagna at URL not answering"; each instance journals a `YagnaOutage` (how long it
waited) and its log says so; nothing is paid twice (no debit note or invoice accepted
twice). Then `down`, and the shared audit against that yagna's own records.
An instance whose activity did not survive is replaced under its restart policy by the
paths rows 4-6 already test (the manifest sets one).

A requestor yagna learns offers from broadcasts: one that joins (or comes back) after the
providers published hears of them only at the next cyclic broadcast, minutes away in
yagna 0.17.6's defaults. On the real network some provider broadcasts every moment; here
the test withdraws the local providers' offers on their node (as a provider may), and
their agents publish them again at once -- after the user's yagna starts and again after
it restarts.

OUTAGE_S is shorter than the issue's 60 s: the behaviour is the same for any outage the
engine rides out (it waits for yagna up to engine/cluster's YAGNA_OUTAGE_GRACE, 60 s), and
the test's time is better spent elsewhere.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import Cli
from _harness import Scenario, ask_yagna, service

from golem_deploy import localnet
from golem_deploy.localnet.node import NodeConfig, YagnaNode, pick_free_ports, yagna_binary
from golem_deploy.supervisor import reach

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(600)]

OUTAGE_S = 20.0


def _hub_port(net_dir: Path) -> int:
    """The hub's GSB port: the local network's requestor node is its hub (daemons.py)."""
    port = None
    for line in (net_dir / "journal.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "node-started" and record.get("node") == "requestor":
            port = int(str(record["gsb"]).rsplit(":", 1)[1])
    assert port is not None, "no requestor node in the local network's journal"
    return port


def _user_yagna(folder: Path, hub_port: int) -> YagnaNode:
    gsb, api = pick_free_ports(2, exclude=[hub_port])
    config = NodeConfig(
        name="user",
        data_dir=folder / "data",
        gsb_port=gsb,
        api_port=api,
        hub_port=hub_port,
        app_key=secrets.token_hex(16),
        extra_env={},
    )
    return YagnaNode(config, folder, yagna_binary())


def _start(node: YagnaNode, net_dir: Path) -> None:
    node.start()
    node.wait_ready(time.monotonic() + 90)
    node.listen_for_offers()
    _republish_offers(net_dir)


def _provider_rest(url: str, key: str, method: str, path: str) -> Any:
    request = urllib.request.Request(
        url + path, method=method, headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=20) as answer:  # loopback only
        body = answer.read()
    return json.loads(body) if body else None


def _republish_offers(net_dir: Path) -> None:
    """Withdraw every local provider's offer; its agent publishes it again at once."""
    ready = json.loads((net_dir / "ready.json").read_text())
    url = ready["provider_api_url"]
    for key in ready["provider_app_keys"].values():
        for offer in _provider_rest(url, key, "GET", "/market-api/v1/offers") or []:
            _provider_rest(url, key, "DELETE", f"/market-api/v1/offers/{offer['offerId']}")


def test_row15_your_yagna_restarted_reconnects_and_replaces_what_was_lost(
    cli: Cli, tmp_path: Path
) -> None:
    net_dir = cli.home / "providers-net"
    info = localnet.start(net_dir, providers=3, timeout=90.0)
    user = _user_yagna(tmp_path / "your-yagna", _hub_port(net_dir))
    try:
        _start(user, net_dir)
        cli.env.update(info.env())
        cli.env["YAGNA_API_URL"] = user.config.api_url
        cli.env["YAGNA_APPKEY"] = user.config.app_key
        restart = {"policy": "on-failure", "max_restarts": 3, "backoff": "1s"}
        scenario = Scenario.create(
            cli,
            tmp_path,
            "row15",
            {"app": service(instances=2, restart=restart)},
            payment={"debit_note_interval": "5s"},  # notes to accept before and after
        )
        up = scenario.up()
        assert up.returncode == 0, up.stdout + up.stderr
        scenario.wait_for_record(
            "a debit note accepted", lambda r: r["kind"] == "DebitNoteAccepted", 60
        )
        before = {i["index"]: i["agreement_id"] for i in scenario.instances()}

        user.stop(timeout=15.0)  # as `yagna service shutdown` / systemctl stop would
        stopped = time.monotonic()
        assert reach.refuses(user.config.api_url)
        # While it lasts, `status` says so (the instances' watchers notice within their
        # 5 s interval, well inside the outage).
        during = scenario.wait_for_status(
            "the outage in status --json",
            lambda s: s["network"]["outage"] is not None,
            timeout=OUTAGE_S - 5,
        )
        assert during["network"]["outage"]["seconds"] >= 0, during["network"]
        table = cli.ok("status", "-n", "row15").stdout
        assert f"yagna at {user.config.api_url} not answering for" in table, table
        # the outage itself: the fault, not a wait for a result
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        _start(user, net_dir)

        status = scenario.wait_for_status(
            "every instance running again after your yagna came back",
            lambda s: all(i["state"] == "running" for i in s["services"][0]["instances"]),
            timeout=180,
        )
        after = {i["index"]: i["agreement_id"] for i in scenario.instances()}
        # Each instance tells of the outage once its wait for yagna ended; that wait polls
        # with backoff, so the record may follow yagna's return by a few seconds.
        for index in before:
            scenario.wait_for_record(
                f"instance {index}'s YagnaOutage",
                lambda r, i=index: r["kind"] == "YagnaOutage" and r["index"] == i,
                60,
            )
        assert scenario.status()["network"]["outage"] is None  # every wait ended
        records = scenario.journal()
        outages = [r for r in records if r["kind"] == "YagnaOutage"]
        print(f"row15: agreements before {before}, after {after}; outages {outages}")
        # The providers and their activities lived through it: every instance carried on
        # on its agreement, with no restart and no provider blamed.
        assert after == before, (before, after)
        assert all(i["restarts"] == 0 for i in status["services"][0]["instances"]), status
        assert "ProviderAvoided" not in [r["kind"] for r in records]
        # What happened is told: each instance waited for yagna, and yagna came back.
        assert {r["index"] for r in outages} == set(before), outages
        assert all(r["back"] is True and r["seconds"] > 0 for r in outages), outages
        logs = cli.ok("logs", "-n", "row15").stdout
        assert "yagna did not answer for" in logs and "carried on" in logs, logs[-2000:]
        _assert_paid_once(records)

        down = scenario.down()
        assert down.returncode == 0, down.stdout + down.stderr
        activities = {
            r["activity_id"] for r in scenario.journal() if r["kind"] == "ActivityCreated"
        }
        view = ask_yagna(user.config.api_url, user.config.app_key, activities)
        _assert_paid_once(scenario.journal())
    finally:
        user.stop()
        localnet.stop(net_dir)
    scenario.audit(yagna=view)


def _assert_paid_once(records: list[dict[str, Any]]) -> None:
    """No debit note or invoice was accepted twice (a retry after the outage must not)."""
    notes = Counter(r.get("debit_note_id") for r in records if r["kind"] == "DebitNoteAccepted")
    invoices = Counter(r.get("invoice_id") for r in records if r["kind"] == "InvoiceAccepted")
    assert all(n == 1 for n in notes.values()), notes.most_common(3)
    assert all(n == 1 for n in invoices.values()), invoices.most_common(3)
