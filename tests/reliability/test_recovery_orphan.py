"""Fault matrix row O2: recovery finds the `Proposal` orphan the dead supervisor never did.

Row O (test_agreement_orphan.py) loses the answer to `POST /agreements` and the engine
finds the orphan right away. Here the engine cannot: the answer is lost once (proxy
`drop_after`: yagna created the agreement) and every `GET /agreements` listing the engine
tries fails (500), so its look for the orphan ends with nothing found and nothing
journaled -- the same as a supervisor SIGKILLed while that create call was in flight.
The deployment still comes up; then its supervisor is SIGKILLed and `down` recovers from
the journal. Recovery must find the orphan by the journal's demand subscriptions, try to
cancel it (yagna 0.17.6 refuses to cancel a `Proposal`: then it is reported, left to
expire at its validTo), journal `AgreementOrphaned` for it, say so, and exit 0. yagna
itself, asked past the proxy, shows the orphan as the record says; the audit counts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_helpers import Cli
from _harness import Scenario, ask_yagna, service
from _proxy import FaultyProxy, Rule, proxied_network

from golem_deploy import localnet

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(300)]

AGREEMENTS = r"/market-api/v1/agreements$"


@pytest.fixture
def proxied(cli: Cli) -> Iterator[tuple[FaultyProxy, localnet.LocalNetInfo]]:
    """A network owned by the test, reached by the CLI only through the faulty proxy."""
    with proxied_network(cli.env, providers=3, prefix="gd-rel-rorphan-") as network:
        yield network


def test_rowO2_recovery_finds_the_orphan_the_engine_missed(
    cli: Cli, tmp_path: Path, proxied: tuple[FaultyProxy, localnet.LocalNetInfo]
) -> None:
    proxy, info = proxied
    proxy.add(Rule("POST", AGREEMENTS, "drop_after", times=1))
    proxy.add(Rule("GET", AGREEMENTS, "error", times=10_000))  # the engine's look fails
    scenario = Scenario.create(cli, tmp_path, "rorphan", {"app": service()})
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    injected = [(mode, method) for mode, method, _ in proxy.injected]
    assert ("drop_after", "POST") in injected and ("error", "GET") in injected, injected
    assert "AgreementOrphaned" not in scenario.kinds()  # the engine did not find it
    with proxy._lock:
        proxy.rules.clear()  # yagna answers everything again, for recovery

    scenario.kill_supervisor()
    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "orphaned agreement" in down.stdout, down.stdout

    records = [r for r in scenario.journal() if r["kind"] == "AgreementOrphaned"]
    assert len(records) == 1, records
    orphan = records[0]
    created = {r["agreement_id"] for r in scenario.journal() if r["kind"] == "AgreementCreated"}
    assert orphan["service"] == "app" and orphan["agreement_id"] not in created, orphan
    activities = {r["activity_id"] for r in scenario.journal() if r["kind"] == "ActivityCreated"}
    view = ask_yagna(info.api_url, info.app_key, activities)
    expected = "Cancelled" if orphan["cancelled"] else "Proposal"
    assert view.agreements.get(orphan["agreement_id"]) == expected, (orphan, view.agreements)
    assert orphan["cancelled"] or "validTo" in orphan["reason"], orphan
    assert set(view.agreements) == created | {orphan["agreement_id"]}, view.agreements
    audit = scenario.audit(yagna=view)
    assert set(audit.orphaned_agreements) == {orphan["agreement_id"]}
