"""Rows P1 and P2: mid-agreement payments go wrong (issue 16).

P1 -- payable debit notes go unaccepted: the test owns the network and puts a fault-injecting
proxy (_proxy.py) between golem-deploy and its yagna that fails every debit-note acceptance,
so the requestor's yagna never accepts a note. The local provider, with mid-agreement
payments negotiated (`payment.payment_timeout`), ends the agreement when its payable note is
still unaccepted at its due date; the instance is replaced under its restart policy. Then
acceptances get through again and the replacement keeps running.

P2 -- a provider sends debit notes far more often than agreed (`debit_notes_every` fault):
golem-deploy leaves the note unaccepted, ends the agreement itself and replaces the instance
on another provider.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import Cli
from _harness import Scenario, ask_yagna, service
from _proxy import FaultyProxy, Rule, proxied_network

from golem_deploy import localnet

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(420)]

ON_FAILURE = {"policy": "on-failure", "backoff": "1s"}


@pytest.fixture
def proxied(cli: Cli) -> Iterator[tuple[FaultyProxy, localnet.LocalNetInfo]]:
    """A network owned by the test, reached by the CLI only through the faulty proxy."""
    with proxied_network(cli.env, providers=2, prefix="gd-rel-pay-") as network:
        yield network


def _records(scenario: Scenario, kind: str) -> list[dict[str, Any]]:
    return [r for r in scenario.journal() if r["kind"] == kind]


def test_rowP1_unaccepted_payable_notes_end_the_agreement_and_the_instance_is_replaced(
    cli: Cli, tmp_path: Path, proxied: tuple[FaultyProxy, Any]
) -> None:
    proxy, info = proxied
    refuse = Rule("POST", r"/payment-api/v1/debitNotes/[^/]+/accept$", "error", times=10**9)
    proxy.add(refuse)
    scenario = Scenario.create(
        cli,
        tmp_path,
        "rowp1",
        {"app": service(restart=ON_FAILURE)},
        payment={"debit_note_interval": "2s", "payment_timeout": "6s"},
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    ended = scenario.wait_for_record(
        "the provider ending the agreement for an unaccepted payable note",
        lambda r: r["kind"] == "AgreementTerminated" and r.get("by") == "provider",
        90,
    )
    assert "not accepted within the payment timeout (6 s)" in ended["reason"], ended
    assert any(mode == "error" for mode, _, _ in proxy.injected)  # acceptances were refused
    refuse.times = refuse.hits  # from now on the requestor's acceptances get through
    status = scenario.wait_for_status(
        "the instance replaced and running",
        lambda s: (
            s["services"][0]["instances"][0]["state"] == "running"
            and s["services"][0]["instances"][0]["restarts"] == 1
        ),
        90,
    )
    replacement = status["services"][0]["instances"][0]["agreement_id"]
    assert replacement != ended["agreement_id"]
    scenario.wait_for_record(
        "a debit note of the replacement accepted",
        lambda r: r["kind"] == "DebitNoteAccepted" and r["agreement_id"] == replacement,
        60,
    )
    paced = scenario.wait_for_status(
        "the burn rate known (an activity with two accepted notes)",
        lambda s: s["budget"]["burn_rate_per_hour"] is not None,
        60,
    )
    assert Decimal(paced["budget"]["burn_rate_per_hour"]) > 0, paced["budget"]
    assert paced["budget"]["runs_out_at"] is not None, paced["budget"]
    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    view = ask_yagna(
        info.api_url,
        info.app_key,
        {str(r["activity_id"]) for r in _records(scenario, "ActivityCreated")},
    )
    scenario.audit(yagna=view)


def test_rowP2_notes_too_often_end_the_agreement_and_the_instance_is_replaced(
    cli: Cli, tmp_path: Path
) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        "rowp2",
        {"app": service(restart=ON_FAILURE)},
        faults={"local-provider-1": {"debit_notes_every": "1s"}},  # the cheapest: chosen first
        providers=2,
        payment={"debit_note_interval": "5s"},
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    rejected = scenario.wait_for_record(
        "a debit note rejected as too many", lambda r: r["kind"] == "PaymentRejected", 90
    )
    assert "too many debit notes" in rejected["reason"], rejected
    status = scenario.wait_for_status(
        "the instance replaced and running on local-provider-2",
        lambda s: (
            s["services"][0]["instances"][0]["state"] == "running"
            and s["services"][0]["instances"][0]["provider_name"] == "local-provider-2"
        ),
        90,
    )
    assert status["services"][0]["instances"][0]["restarts"] == 1
    ended = [
        r
        for r in _records(scenario, "AgreementTerminated")
        if r["agreement_id"] == rejected["agreement_id"]
    ]
    assert ended and ended[0]["by"] == "requestor" and "too many" in ended[0]["reason"], ended
    avoided = _records(scenario, "ProviderAvoided")
    assert [a["provider_name"] for a in avoided if "too many" in a["reason"]] == [
        "local-provider-1"
    ]
    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    scenario.audit()
