"""A networked deployment serves: HTTP on a forwarded port, answered with data read over the
Golem VPN by service name (manifests/webapp.yaml), and nothing of it is left after `down`.

Real everything: the CLI as a subprocess, the supervisor's TcpProxy, yagna's Net API and
TCP WebSocket on the requestor side, the local ExeUnits' TAPs in sealed sandboxes.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import MANIFESTS, Cli, processes_mentioning, wait_until
from _vpn_helpers import localnet_host_pid, namespaces_alive, tap_descriptors, vpn_namespaces

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


def test_webapp_keeps_answering_when_a_web_instances_provider_vanishes(
    cli: Cli, tmp_path: Path
) -> None:
    port = _free_port()
    cli.env["WEB_PORT"] = str(port)
    # Every provider can be killed on cue (die_when): the test picks one once it sees where
    # the instances were placed.
    triggers = {f"local-provider-{k}": tmp_path / f"vanish-{k}" for k in (1, 2, 3)}
    faults = tmp_path / "faults.yaml"
    faults.write_text(json.dumps({name: {"die_when": str(t)} for name, t in triggers.items()}))
    manifest = str(MANIFESTS / "webapp.yaml")
    cli("up", "-d", manifest, "--faults", str(faults), "--timeout", "4m", check=True)

    services = {s["name"]: s for s in cli.status("webapp")["services"]}
    [db] = services["db"]["instances"]
    webs = services["web"]["instances"]
    placed = [w["provider_name"] for w in webs]
    # A web instance with its provider to itself: killing that provider ends nothing else.
    alone = [w for w in webs if placed.count(w["provider_name"]) == 1]
    alone = [w for w in alone if w["provider_name"] != db["provider_name"]]
    assert alone, f"no web instance alone on its provider: db on {db['provider_name']}, {placed}"
    victim = alone[0]
    [survivor] = [w for w in webs if w["index"] != victim["index"]]
    host = localnet_host_pid(cli.deployment_dir("webapp") / "localnet")
    namespaces = vpn_namespaces(host)
    assert len(namespaces) == 3 and tap_descriptors(host) == 3  # db, web.0, web.1

    before = [_get(port) for _ in range(4)]
    assert {a["served_by"] for a in before} == {victim["ip"], survivor["ip"]}

    def left_running() -> bool:
        return any(
            r["kind"] == "InstanceStateChanged"
            and r.get("service") == "web"
            and r.get("index") == victim["index"]
            and r.get("old") == "running"
            for r in cli.journal("webapp")
        )

    assert not left_running()
    triggers[victim["provider_name"]].touch()
    # Requests may fail while the death goes unnoticed (a few seconds); once the instance is
    # no longer running, the other one answers every new request.
    wait_until(left_running, 90, f"web.{victim['index']} seen as no longer running")
    after = [_get(port) for _ in range(10)]
    assert {a["greeting"] for a in after} == {"hello from db"}
    assert [a["visits"] for a in after] == list(range(5, 15))  # the same db, every time
    # (its replacement may already answer at the same address)
    assert {a["served_by"] for a in after} <= {survivor["ip"], victim["ip"]}

    cli("down", check=True)
    with pytest.raises(OSError):  # the listener closed
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert processes_mentioning(str(cli.home)) == []  # no supervisor, yagna or sandbox left
    assert namespaces_alive(namespaces, cli.home) == set()  # nor a namespace (with its TAP) of ours


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
