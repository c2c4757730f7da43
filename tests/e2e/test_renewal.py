"""A service outlives its agreements: with `expiration: 20s` and no `lifetime` it keeps
running across renewals on fresh agreements, and a client looping GETs through its
forwarded port sees no failed request (README "Long-lived services", docs/engine.md).

Real everything: the CLI as a subprocess, the local network's providers (which sign
agreements of at most 30 s here: the `max_agreement` fault), the supervisor's TcpProxy.
Marked slow (about two and a half minutes); it is part of the default run, so `.ci/run`
runs it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from _cli_helpers import Cli, processes_mentioning, wait_until
from _renewal_helpers import Client, free_port, http_service

pytestmark = [pytest.mark.localnet, pytest.mark.slow, pytest.mark.timeout(600)]

RENEWALS = 8  # 20 s agreements, renewed at the earliest halfway: two minutes at least


def manifest(folder: Path, port: int) -> Path:
    doc = {
        "version": "1",
        "name": "renew",
        "budget": 5.0,
        "network": {"cidr": "192.168.0.0/24"},
        "services": {"web": http_service(folder, port)},  # expiration: 20s, no lifetime
    }
    path = folder / "renew.yaml"
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


def renewed(cli: Cli) -> list[dict[str, object]]:
    return [r for r in cli.journal("renew") if r["kind"] == "InstanceRenewed"]


def test_a_service_outlives_its_agreements_without_a_failed_request(
    cli: Cli, tmp_path: Path
) -> None:
    port = free_port()
    faults = tmp_path / "faults.yaml"
    faults.write_text(
        json.dumps({f"local-provider-{k}": {"max_agreement": "30s"} for k in (1, 2, 3)})
    )
    path = manifest(tmp_path, port)
    cli.ok("up", "-d", str(path), "--faults", str(faults), "--timeout", "4m")

    client = Client(port)
    client.start()
    seen: list[int] = []
    costs: list[Decimal] = []
    agreements: list[str] = []
    try:

        def enough_renewals() -> bool:
            [row] = cli.status("renew")["services"][0]["instances"]
            seen.append(row["renewals"])
            costs.append(Decimal(row["cost"]))
            if row["agreement_id"] and row["agreement_id"] not in agreements:
                agreements.append(row["agreement_id"])
            assert row["state"] == "running", row  # never down between agreements
            return bool(row["renewals"] >= RENEWALS)

        wait_until(enough_renewals, 420, f"{RENEWALS} renewals")
    finally:
        client.finish()

    assert client.failures == [], (
        f"{len(client.failures)} failed of {client.ok + len(client.failures)}"
    )
    assert client.ok > 100
    assert seen == sorted(seen) and seen[-1] >= RENEWALS  # the count only grows
    assert costs == sorted(costs) and costs[-1] > 0  # so does the instance's cost
    assert len(agreements) >= RENEWALS // 2  # status showed fresh agreements on the way
    records = renewed(cli)
    assert [r["renewals"] for r in records] == list(range(1, len(records) + 1))
    assert len({r["agreement_id"] for r in records}) == len(records)
    assert len(client.served_by) >= 2  # traffic moved to the replacements' addresses

    def retired() -> bool:  # every replaced instance stopped, its shutdown ran
        stopped = [
            r
            for r in cli.journal("renew")
            if r["kind"] == "InstanceStateChanged"
            and r.get("renewal") == "retiring"
            and r["new"] == "terminated"
            and r["old"] == "stopping"
        ]
        return len(stopped) >= len(renewed(cli))

    wait_until(retired, 60, "the replaced instances to stop")
    assert not any(r["kind"] == "DeploymentEnded" for r in cli.journal("renew"))

    cli.ok("down")
    journal = cli.journal("renew")
    created = {r["agreement_id"] for r in journal if r["kind"] == "AgreementCreated"}
    ended = {r["agreement_id"] for r in journal if r["kind"] == "AgreementTerminated"}
    assert created and created <= ended  # every agreement of every renewal was ended
    assert journal[-1]["kind"] == "DeploymentStopped" and journal[-1]["clean"] is True
    assert processes_mentioning(str(cli.home)) == []


def test_down_after_a_supervisor_killed_mid_renewal_releases_both_instances(
    cli: Cli, tmp_path: Path
) -> None:
    import os
    import signal

    from golem_deploy.supervisor import journal

    path = manifest(tmp_path, free_port())
    cli.ok("up", "-d", str(path), "--timeout", "4m")

    def successor_signed() -> bool:  # the replacement holds an agreement, the old one too
        records = cli.journal("renew")
        kinds = [r["kind"] for r in records]
        if "InstanceRenewing" not in kinds:
            return False
        after = kinds[kinds.index("InstanceRenewing") :]
        return "ActivityCreated" in after and "InstanceRenewed" not in after

    wait_until(successor_signed, 120, "a renewal's replacement with its activity")
    os.kill(cli.supervisor_pid("renew"), signal.SIGKILL)
    held = journal.load(cli.deployment_dir("renew") / "journal.jsonl")
    assert len(held.agreements) == 2 and len(held.activities) == 2  # old and replacement

    cli.ok("down")
    assert journal.load(cli.deployment_dir("renew") / "journal.jsonl").empty
    ended = {r["agreement_id"] for r in cli.journal("renew") if r["kind"] == "AgreementTerminated"}
    assert set(held.agreements) <= ended
    assert processes_mentioning(str(cli.home)) == []
