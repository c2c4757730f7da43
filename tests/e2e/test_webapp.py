"""A networked deployment serves: HTTP on a forwarded port, answered with data read over the
Golem VPN by service name (manifests/webapp.yaml), and nothing of it is left after `down`.

Real everything: the CLI as a subprocess, the supervisor's TcpProxy, yagna's Net API and
TCP WebSocket on the requestor side, the local ExeUnits' TAPs in sealed sandboxes.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any

import pytest
from _cli_helpers import MANIFESTS, Cli, processes_mentioning

pytestmark = [pytest.mark.localnet, pytest.mark.timeout(420)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:  # loopback
        assert answer.status == 200
        return dict(json.loads(answer.read()))


def test_webapp_answers_through_its_forwarded_port_with_data_from_db(cli: Cli) -> None:
    port = _free_port()
    cli.env["WEB_PORT"] = str(port)
    cli("up", "-d", str(MANIFESTS / "webapp.yaml"), "--timeout", "4m", check=True)

    status = json.loads(cli("status", "--json", check=True).stdout)
    vpn = status["network"]["vpn"]
    assert vpn["cidr"] == "192.168.0.0/24" and len(vpn["id"]) == 32
    services = {s["name"]: s for s in status["services"]}
    assert [i["ip"] for i in services["db"]["instances"]] == ["192.168.0.2"]
    web_ips = [i["ip"] for i in services["web"]["instances"]]
    assert web_ips == ["192.168.0.3", "192.168.0.4"]
    assert services["web"]["ports"] == [{"host": "127.0.0.1", "host_port": port, "port": 8000}]
    assert f"127.0.0.1:{port} -> web:8000" in cli("status", check=True).stdout

    answers = [_get(port) for _ in range(4)]
    assert {a["greeting"] for a in answers} == {"hello from db"}  # read from db, by name
    assert [a["visits"] for a in answers] == [1, 2, 3, 4]  # db's counter, over the VPN
    assert {a["served_by"] for a in answers} == set(web_ips)  # round robin over both webs

    cli("down", check=True)
    with pytest.raises(OSError):  # the listener closed
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    kinds = [record["kind"] for record in cli.journal("webapp")]
    assert kinds.count("NetworkCreated") == 1 and kinds.count("NetworkRemoved") == 1
    assert processes_mentioning(str(cli.home)) == []  # no supervisor, yagna or sandbox left


def test_down_after_a_killed_supervisor_removes_the_network(cli: Cli) -> None:
    import os
    import signal

    from golem_deploy.supervisor import journal

    cli.env["WEB_PORT"] = str(_free_port())
    cli("up", "-d", str(MANIFESTS / "webapp.yaml"), "--timeout", "4m", check=True)
    os.kill(cli.supervisor_pid("webapp"), signal.SIGKILL)
    held = journal.load(cli.deployment_dir("webapp") / "journal.jsonl")
    assert len(held.networks) == 1  # the journal knows the VPN the dead supervisor made
    cli("down", check=True)
    removed = [r for r in cli.journal("webapp") if r["kind"] == "NetworkRemoved"]
    assert [r["network_id"] for r in removed] == list(held.networks)
    assert journal.load(cli.deployment_dir("webapp") / "journal.jsonl").empty
