"""Fault matrix row 13g: a daemon of the local network dies under a deployment on a VPN.

yagna keeps its VPN networks in memory only: the requestor daemon started again on its state
folder (row 13c) has no network of the deployment any more (with the provider daemon killed,
row 13d, the whole network restarts too). Every instance is replaced (NetworkLost), and a
replacement can only join a network that exists, so the supervisor creates it again (same
range, same requestor address) before any instance is placed. The row checks what a user
sees:

- the deployment is `running` again, each instance at the address it had (the `hosts` names
  still resolve to them, inside the instances);
- requests through the forwarded port are answered again, by both instances;
- the journal says which network replaced which, so `down` removes the right one; then an
  ordinary graceful `down` and the shared audit (_harness.py).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import Cli, wait_until
from _harness import Scenario, service

from golem_deploy.localnet.records import process_matches, read_pid_file

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(480)]

PYTHON = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"  # as manifests/webapp.yaml

# `GET /` answers which instance served it and where the other instance's name points.
SERVER = """
import json, socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        me = self.connection.getsockname()[0]
        names = {name: socket.gethostbyname(name) for name in ("web-0", "web-1")}
        body = json.dumps({"served_by": me, "names": names}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"""


def _ask(port: int) -> dict[str, Any] | None:
    """A new connection's answer to `GET /`; None when it failed."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            result: dict[str, Any] = json.loads(answer.read())
            return result
    except (OSError, ValueError, http.client.HTTPException):
        return None


def _both_answer(port: int, timeout: float) -> dict[str, dict[str, Any]]:
    """Ask until both instances answered (round robin): served_by -> its answer."""
    answers: dict[str, dict[str, Any]] = {}

    def both() -> dict[str, dict[str, Any]] | None:
        answer = _ask(port)
        if answer is not None:
            answers[answer["served_by"]] = answer
        return answers if len(answers) == 2 else None

    result: dict[str, dict[str, Any]] = wait_until(both, timeout, "both instances answering")
    return result


def _addresses(snap: dict[str, Any]) -> dict[int, str]:
    [web] = snap["services"]
    return {i["index"]: i["ip"] for i in web["instances"]}


@pytest.mark.parametrize("part", ["requestor", "provider"])
def test_row13g_a_vpn_deployment_heals_after_a_local_daemon_died(
    cli: Cli, tmp_path: Path, part: str
) -> None:
    (tmp_path / "serve.py").write_text(SERVER)
    web = service(
        instances=2,
        payload={"image_hash": PYTHON},
        start=[
            {"upload": {"src": "serve.py", "dst": "/golem/work/serve.py"}},
            {"run": "python3 /golem/work/serve.py 8000 > /golem/work/serve.log 2>&1 &"},
        ],
        ports=["8000"],
        restart={"policy": "on-failure", "backoff": "1s"},
    )
    scenario = Scenario.create(cli, tmp_path, f"row13g-{part}", {"web": web})
    up = scenario.up()
    assert up.returncode == 0, up.stdout + up.stderr
    before = scenario.status()
    [forward] = before["services"][0]["ports"]
    port = int(forward["host_port"])
    addresses = _addresses(before)
    first = _both_answer(port, 60)
    assert set(first) == set(addresses.values()), (first, addresses)
    names = {"web-0": addresses[0], "web-1": addresses[1]}
    assert all(answer["names"] == names for answer in first.values()), first
    old_id = before["network"]["vpn"]["id"]

    entry = read_pid_file(scenario.folder / "localnet", part)
    assert entry is not None
    pid, marker = entry
    assert process_matches(pid, marker)
    os.kill(pid, signal.SIGKILL)

    scenario.wait_for_record(
        "the deployment degraded", lambda r: r["kind"] == "DeploymentDegraded", 30
    )
    scenario.wait_for_record(
        "the deployment recovered", lambda r: r["kind"] == "DeploymentRecovered", 150
    )
    snap = scenario.wait_for_status("running again", lambda s: s["state"] == "running", 30)
    instances = snap["services"][0]["instances"]
    assert all(i["state"] == "running" and i["restarts"] >= 1 for i in instances), instances
    assert _addresses(snap) == addresses  # each instance back at its address
    new_id = snap["network"]["vpn"]["id"]
    assert new_id != old_id

    # The forwarded port reaches both replacements, and the names still resolve.
    again = _both_answer(port, 60)
    assert set(again) == set(addresses.values()), again
    assert all(answer["names"] == names for answer in again.values()), again

    # The journal knows which network is the deployment's now (what `down` would remove
    # after a crash): the lost one removed, the new one created.
    records = scenario.journal()
    created = [r["network_id"] for r in records if r["kind"] == "NetworkCreated"]
    removed = [r["network_id"] for r in records if r["kind"] == "NetworkRemoved"]
    assert created == [old_id, new_id], created
    assert removed == [old_id], removed

    down = scenario.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "everything released" in down.stdout, down.stdout
    assert [r["network_id"] for r in scenario.journal() if r["kind"] == "NetworkRemoved"] == [
        old_id,
        new_id,
    ]
    # As rows 13c/13d: with the provider daemon dead, its activities stay Unresponsive.
    every_provider = tuple(f"local-provider-{k}" for k in range(1, scenario.providers + 1))
    scenario.audit(vanished=() if part == "requestor" else every_provider)
