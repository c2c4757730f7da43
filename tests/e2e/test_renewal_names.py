"""Names inside the VPN follow renewals: a client INSIDE the deployment (another service,
looping GETs to `http://web-0:8000/` and `http://web:8000/` by name) sees no failed
request while `web` (`expiration: 20s`) is renewed onto successors at other addresses
(README "Long-lived services", engine/names.py).

Real everything: the CLI as a subprocess, the local network's providers and sandboxes
(/etc/hosts rewritten inside them), the VPN. The client reports what it saw through its
own forwarded port. Marked slow (about a minute and a half).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import Cli, processes_mentioning, wait_until
from _renewal_helpers import PYTHON_IMAGE, free_port, http_service

pytestmark = [pytest.mark.localnet, pytest.mark.slow, pytest.mark.timeout(600)]

RENEWALS = 3

CLIENT = """\
import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

seen = {"ok": 0, "failures": [], "served_by": []}


def loop():
    n = 0
    while True:
        name = ("web-0", "web")[n % 2]
        n += 1
        try:
            with urllib.request.urlopen(f"http://{name}:8000/", timeout=10) as answer:
                body = answer.read().decode()
            seen["ok"] += 1
            if body not in seen["served_by"]:
                seen["served_by"].append(body)
        except Exception as error:
            seen["failures"].append(f"{time.strftime('%H:%M:%S')} {name}: {error!r}")
        time.sleep(0.05)


class Stats(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


threading.Thread(target=loop, daemon=True).start()
ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Stats).serve_forever()
"""


def manifest(folder: Path, web_port: int, client_port: int) -> Path:
    (folder / "client.py").write_text(CLIENT)
    client = {
        "payload": {"image_hash": PYTHON_IMAGE, "min_mem_gib": 0.5},
        "expiration": "10m",  # not renewed during the test: its counts stay whole
        "depends_on": ["web"],
        "ports": [f"{client_port}:8001"],
        "start": [
            {"upload": {"src": "client.py", "dst": "/golem/work/client.py"}},
            {"run": "python3 /golem/work/client.py 8001 > /golem/work/client.log 2>&1 &"},
        ],
    }
    doc = {
        "version": "1",
        "name": "names",
        "budget": 5.0,
        "network": {"cidr": "192.168.0.0/24"},
        "services": {"web": http_service(folder, web_port), "client": client},
    }
    path = folder / "names.yaml"
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


def stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:  # loopback
        seen: dict[str, Any] = json.loads(answer.read())
    return seen


def test_a_client_inside_the_vpn_reaches_a_renewed_service_by_name(
    cli: Cli, tmp_path: Path
) -> None:
    client_port = free_port()
    cli.ok("up", "-d", str(manifest(tmp_path, free_port(), client_port)), "--timeout", "4m")
    wait_until(lambda: stats(client_port)["ok"] > 0, 60, "the client's first answer by name")

    def renewed() -> int:
        return sum(1 for r in cli.journal("names") if r["kind"] == "InstanceRenewed")

    wait_until(lambda: renewed() >= RENEWALS, 300, f"{RENEWALS} renewals of web")
    # The last successor took over; let the instance it replaced drain and stop, so a
    # name still pointing at it would fail now.
    wait_until(
        lambda: (
            sum(
                1
                for r in cli.journal("names")
                if r["kind"] == "InstanceStateChanged"
                and r.get("renewal") == "retiring"
                and r["new"] == "terminated"
            )
            >= RENEWALS
        ),
        60,
        "the replaced instances to stop",
    )
    before = stats(client_port)["ok"]
    wait_until(lambda: stats(client_port)["ok"] >= before + 20, 60, "answers after the last stop")
    seen = stats(client_port)

    assert seen["failures"] == [], f"{len(seen['failures'])} failed of {seen['ok']}"
    # Successors answer at other addresses than the first instance: the names moved.
    assert len(seen["served_by"]) >= 2, seen["served_by"]
    [web] = [s for s in cli.status("names")["services"] if s["name"] == "web"]
    assert seen["served_by"][-1] == web["instances"][0]["ip"]  # the live one answers

    cli.ok("down")
    journal = cli.journal("names")
    assert journal[-1]["kind"] == "DeploymentStopped" and journal[-1]["clean"] is True
    assert processes_mentioning(str(cli.home)) == []
