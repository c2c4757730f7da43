"""A `Proposal`-state agreement orphaned by a lost answer to `POST /agreements`.

The test runs a local network of its own and puts the fault-injecting proxy (_proxy.py)
between it and golem-deploy, which uses it as "your own yagna". The proxy lets yagna create
the agreement and then drops the connection before the answer (`drop_after`), twice; a
third create gets a 500 without reaching yagna (nothing to find, nothing to cancel). The
engine must find each orphan by its demand's subscription, try to cancel it, journal an
`AgreementOrphaned` record for it (cancelled, or left to expire with the reason: yagna
0.17.6 cannot cancel an agreement its provider never saw), and still deploy. yagna itself,
asked past the proxy, must show each orphan as its record says and hold no other
agreement the journal did not create; the audit counts them.
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

LOST_ANSWERS = 2


@pytest.fixture
def proxied(cli: Cli) -> Iterator[tuple[FaultyProxy, localnet.LocalNetInfo]]:
    """A network owned by the test, reached by the CLI only through the faulty proxy."""
    with proxied_network(cli.env, providers=3, prefix="gd-rel-orphan-") as network:
        yield network


def test_orphaned_proposal_agreements_are_found_and_cancelled(
    cli: Cli, tmp_path: Path, proxied: tuple[FaultyProxy, localnet.LocalNetInfo]
) -> None:
    proxy, info = proxied
    proxy.add(Rule("POST", r"/market-api/v1/agreements$", "drop_after", times=LOST_ANSWERS))
    scenario = Scenario.create(cli, tmp_path, "orphans", {"app": service()})
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    lost = [i for i in proxy.injected if i[0] == "drop_after"]
    assert len(lost) == LOST_ANSWERS, proxy.injected
    proxy.add(Rule("POST", r"/market-api/v1/agreements$", "error"))  # yagna never saw it

    records = [r for r in scenario.journal() if r["kind"] == "AgreementOrphaned"]
    assert len(records) == LOST_ANSWERS, records
    assert all(r["service"] == "app" for r in records), records
    created = {r["agreement_id"] for r in scenario.journal() if r["kind"] == "AgreementCreated"}
    orphan_ids = {r["agreement_id"] for r in records}
    assert len(orphan_ids) == LOST_ANSWERS and not orphan_ids & created

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    activities = {r["activity_id"] for r in scenario.journal() if r["kind"] == "ActivityCreated"}
    view = ask_yagna(info.api_url, info.app_key, activities)
    # Each record says what yagna shows: cancelled, or left in Proposal (yagna 0.17.6 cannot
    # cancel an agreement its provider never saw) with the reason.
    for record in records:
        expected = "Cancelled" if record["cancelled"] else "Proposal"
        assert view.agreements.get(record["agreement_id"]) == expected, (record, view.agreements)
        assert record["cancelled"] or "validTo" in record["reason"], record
    # Every agreement yagna holds is one the journal created, or a reported orphan.
    assert set(view.agreements) == created | orphan_ids, view.agreements
    audit = scenario.audit(yagna=view)
    assert set(audit.orphaned_agreements) == orphan_ids
    assert len(audit.orphans_cancelled) == sum(1 for r in records if r["cancelled"])
