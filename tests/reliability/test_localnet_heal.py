"""Fault matrix rows 13c-13e: a process of the deployment's own local network dies.

The supervisor owns its private local network: the requestor yagna daemon, the provider
yagna daemon and the provider host process (the provider agents and their ExeUnits). Each
row SIGKILLs one of them under a running deployment whose instances restart on failure,
and checks what a user sees and what the supervisor does:

- detected at once (the death is a pidfd event, not a poll): the journal's
  DeploymentDegraded follows the kill within DETECT_BOUND;
- reported: `status --json` says `degraded` with a reason naming the dead part, the
  instances `unresponsive`, and the GLM accepted so far (budget and per-instance cost)
  never drops, let alone to 0; `logs` says it in every instance's log;
- recovered: the network starts again at the same address on its state folder, every
  instance is replaced under its restart policy (each agreement of the dead network is
  terminated on the restarted one), the deployment is `running` again (providers are not
  avoided: they come back with the network);
- then `down` is the ordinary graceful one (no recovery from the journal), and the shared
  audit holds (_harness.py): nothing leaked, nothing beyond the budget.

Row 13f: when the network cannot come back at its address, the deployment fails clearly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import Cli, wait_until
from _harness import REPORT_ENV, Scenario, service

from golem_deploy.localnet.records import process_matches, read_pid_file

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(480)]

# The goal is 10 s (issue 14); a pidfd wakes the supervisor in milliseconds, so this bound
# only fails when detection is broken, not when the machine is loaded.
DETECT_BOUND = 10.0
DESCRIBED = {
    "requestor": "requestor yagna daemon",
    "provider": "provider yagna daemon",
    "host": "provider host process",
}


def _kill(state_dir: Path, part: str) -> tuple[int, float]:
    """SIGKILL the local network's `part` by its recorded pid; (pid, time.time() of it)."""
    entry = read_pid_file(state_dir, part)
    assert entry is not None, f"no {part} pid file in {state_dir / 'pids'}"
    pid, marker = entry
    assert process_matches(pid, marker)
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    return pid, killed_at


def _spent(snap: dict[str, Any]) -> tuple[Decimal, dict[int, Decimal]]:
    costs = {i["index"]: Decimal(i["cost"]) for s in snap["services"] for i in s["instances"]}
    return Decimal(snap["budget"]["spent"]), costs


@pytest.mark.parametrize(
    ("row", "part"), [("13c", "requestor"), ("13d", "provider"), ("13e", "host")]
)
def test_row13cde_a_dead_local_network_part_is_reported_restarted_and_healed(
    cli: Cli, tmp_path: Path, row: str, part: str
) -> None:
    scenario = Scenario.create(
        cli,
        tmp_path,
        f"row{row}",
        {"app": service(instances=2, restart={"policy": "on-failure", "backoff": "1s"})},
        payment={"debit_note_interval": "5s"},  # money spent before the kill, to keep
    )
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    scenario.wait_for_record(
        "a debit note accepted (money spent)", lambda r: r["kind"] == "DebitNoteAccepted", 60
    )
    before = scenario.status()
    api_url = before["network"]["api_url"]
    spent_before, costs_before = _spent(before)
    assert spent_before > 0

    pid, killed_at = _kill(scenario.folder / "localnet", part)

    # Detected and reported.
    degraded = scenario.wait_for_record(
        "the deployment degraded", lambda r: r["kind"] == "DeploymentDegraded", 30
    )
    detected = degraded["ts"] - killed_at
    assert f"{DESCRIBED[part]} (pid {pid}) died" in degraded["reason"], degraded
    assert detected < DETECT_BOUND, f"noticed {detected:.1f}s after the kill"
    snap = scenario.wait_for_status(
        "status says degraded, every instance unresponsive",
        lambda s: (
            s["state"] == "degraded"
            and all(i["state"] == "unresponsive" for sv in s["services"] for i in sv["instances"])
        ),
        30,
    )
    assert DESCRIBED[part] in (snap["reason"] or ""), snap["reason"]
    spent, costs = _spent(snap)
    assert spent >= spent_before > 0
    assert all(costs[index] >= cost for index, cost in costs_before.items()), (costs, before)

    # Recovered: same address, every instance replaced and running.
    recovered = scenario.wait_for_record(
        "the deployment recovered", lambda r: r["kind"] == "DeploymentRecovered", 150
    )
    snap = scenario.wait_for_status("running again", lambda s: s["state"] == "running", 30)
    assert snap["network"]["api_url"] == api_url
    assert snap["reason"] is None
    instances = [i for sv in snap["services"] for i in sv["instances"]]
    assert all(i["state"] == "running" and i["restarts"] >= 1 for i in instances), instances
    assert _spent(snap)[0] >= spent
    kinds = scenario.kinds()
    assert kinds.count("LocalnetRestarting") == 1 and "LocalnetRestarted" in kinds, kinds
    logs = cli("logs", "-n", scenario.name)
    assert logs.returncode == 0, logs.stderr
    for index in (0, 1):
        assert f"app.{index}" in logs.stdout
    assert logs.stdout.count(f"deployment degraded: the local network's {DESCRIBED[part]}") == 2
    assert logs.stdout.count("deployment running again after:") == 2

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "refuses connections" not in down.stdout, down.stdout  # the ordinary graceful way
    assert "everything released" in down.stdout, down.stdout
    healed = recovered["ts"] - killed_at
    print(
        f"row{row}: {part} killed, noticed after {detected * 1000:.0f} ms, healed in {healed:.1f}s"
    )
    _report(part=part, detected_ms=round(detected * 1000), healed_s=round(healed, 1))
    # With the provider node or the host dead, the requestor's yagna marks the activities
    # Unresponsive, and no DELETE reaches an ExeUnit that died: as for any provider that
    # died (rows 4a/4b), they may stay so in its records, while their agreements must be
    # Terminated. With only the requestor dead, they are destroyed on the restarted network.
    every_provider = tuple(f"local-provider-{k}" for k in range(1, scenario.providers + 1))
    scenario.audit(vanished=() if part == "requestor" else every_provider)


def _report(**figures: object) -> None:
    """bench/reliability.py's summary lists each row's figures (`localnet_heal`)."""
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"localnet_heal": figures}) + "\n")


def test_row13f_a_network_that_cannot_come_back_at_its_address_fails_clearly(
    cli: Cli, tmp_path: Path
) -> None:
    """The requestor daemon dies and another program takes its API port before the network
    starts again: it comes back elsewhere, where the engine cannot follow, so the deployment
    is `failed` saying why (not `running` on a network nobody reaches), and `down` still
    releases everything (recovery finds the network at its new address)."""
    scenario = Scenario.create(cli, tmp_path, "row13f", {"app": service(instances=1)})
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    api_url = scenario.status()["network"]["api_url"]
    port = int(api_url.rsplit(":", 1)[1])

    _kill(scenario.folder / "localnet", "requestor")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def bound() -> bool:
            try:
                squatter.bind(("127.0.0.1", port))
            except OSError:
                return False  # the killed daemon's listener is not closed yet
            squatter.listen()
            return True

        wait_until(bound, 10, f"port {port} taken by another program")
        failed = scenario.wait_for_status("failed", lambda s: s["state"] == "failed", 120)
    reason = failed["reason"] or ""
    assert "requestor yagna daemon" in reason and "could not be restarted" in reason, reason
    assert f"not {api_url}" in reason, reason
    assert "LocalnetRestarting" in scenario.kinds()

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "everything released" in down.stdout, down.stdout
    scenario.audit(vanished=tuple(f"local-provider-{k}" for k in range(1, 4)))
