"""Renewal rows of the fault matrix (docs/reliability.md): what happens to a service that
outlives its agreements when a provider will not sign again.

The service has `expiration: 20s`, so it is renewed every 10-15 s; a client loops GETs
through its forwarded port the whole time and must see no failed request.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from _cli_helpers import Cli, wait_until
from _harness import Scenario, service
from _renewal_helpers import Client, free_port, http_service

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(420)]


def _records(scenario: Scenario, kind: str) -> list[dict[str, Any]]:
    return [r for r in scenario.journal() if r["kind"] == kind]


@pytest.mark.slow
def test_rowR1_a_provider_refusing_renewal_is_replaced_elsewhere(cli: Cli, tmp_path: Any) -> None:
    # local-provider-2 (the cheaper of the two in use) signs one agreement, then refuses
    # every later one: once the instance left it, the next renewal prefers it (not busy,
    # cheaper), is refused, and renews on local-provider-3 instead. (A provider that
    # approved us before and then rejects is taken as full, not faulty: not avoided.)
    # (local-provider-1, the cheapest, is blacklisted by name, so the order is known.)
    port = free_port()
    scenario = Scenario.create(
        cli,
        tmp_path,
        "rowr1",
        {"web": http_service(tmp_path, port)},
        faults={"local-provider-2": {"reject_agreements_after": 1}},
        network={"cidr": "192.168.0.0/24"},
        market={"blacklist": ["local-provider-1"]},
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    client = Client(port)
    client.start()
    try:

        def renewed_after_a_refusal() -> bool:
            journal = scenario.journal()
            refused = [
                n
                for n, r in enumerate(journal)
                if r["kind"] == "AgreementRejected"
                and any(x["kind"] == "InstanceRenewing" for x in journal[:n])
            ]
            return bool(refused) and any(
                r["kind"] == "InstanceRenewed" for r in journal[refused[0] :]
            )

        wait_until(renewed_after_a_refusal, 300, "a renewal refused, then done elsewhere")
    finally:
        client.finish()

    assert client.failures == [], client.failures[:5]
    assert client.ok > 50
    names = {r["provider_id"]: r["provider_name"] for r in _records(scenario, "AgreementCreated")}
    rejected = [names.get(r["provider_id"]) for r in _records(scenario, "AgreementRejected")]
    assert "local-provider-2" in rejected, rejected
    renewed = _records(scenario, "InstanceRenewed")
    assert renewed[-1]["provider_name"] == "local-provider-3"
    signed = {r["provider_name"] for r in _records(scenario, "AgreementCreated")}
    assert "local-provider-1" not in signed  # blacklisted by name
    [row] = scenario.instances()
    assert row["state"] == "running" and row["renewals"] == len(renewed)
    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "everything released" in down.stdout
    scenario.audit()


@pytest.mark.slow
def test_rowR2_a_renewal_that_would_pass_the_budget_is_refused_and_the_deployment_ends(
    cli: Cli, tmp_path: Any
) -> None:
    # local-provider-1 (no start fee; the start-price cap keeps the deployment on it) bills
    # about 0.0004 GLM per 20 s agreement of an idle instance: a budget of 0.0005 pays for
    # one agreement, not for the second the renewal would commit.
    scenario = Scenario.create(
        cli,
        tmp_path,
        "rowr2",
        {"app": service(expiration="20s")},
        budget="0.0005",
        market={"max_price": {"start": 0}},
        # the projection counts what the agreement has billed so far (debit notes): with
        # the negotiated default (2 min) none would come before the first renewal
        payment={"debit_note_interval": "5s"},
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    scenario.wait_for_status(
        "the deployment to end when its renewal was refused",
        lambda s: s["state"] == "stopped",
        120,
    )
    [refused] = _records(scenario, "InstanceRenewalRefused")
    assert refused["reason"].startswith("budget: renewing would spend"), refused
    assert not _records(scenario, "InstanceRenewing")  # said so before renewing, instead
    assert len(_records(scenario, "AgreementCreated")) == 1
    assert not _records(scenario, "PaymentRejected")  # it stopped before the money ran out
    [ended] = _records(scenario, "DeploymentEnded")
    assert "budget: renewing would spend" in ended["reason"], ended
    changes = [(r["old"], r["new"]) for r in _records(scenario, "InstanceStateChanged")]
    assert ("running", "stopping") in changes  # stopped cleanly: its shutdown ran
    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    audit = scenario.audit()
    assert audit.yagna.accepted() <= Decimal("0.0005")
