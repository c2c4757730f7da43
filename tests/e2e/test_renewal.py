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
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _cli_helpers import Cli, processes_mentioning, wait_until

pytestmark = [pytest.mark.localnet, pytest.mark.slow, pytest.mark.timeout(600)]

RENEWALS = 8  # 20 s agreements, renewed at the earliest halfway: two minutes at least

SERVER = """\
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.connection.getsockname()[0].encode()  # our address in the VPN
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"""


def manifest(folder: Path, port: int) -> Path:
    (folder / "server.py").write_text(SERVER)
    path = folder / "renew.yaml"
    path.write_text(
        f"""\
version: "1"
name: renew
budget: 5.0
network: {{cidr: 192.168.0.0/24}}
services:
  web:
    payload:
      image_hash: 8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488
      min_mem_gib: 0.5
    expiration: 20s
    ports: ["{port}:8000"]
    start:
      - upload: {{src: server.py, dst: /golem/work/server.py}}
      - run: "python3 /golem/work/server.py 8000 > /golem/work/server.log 2>&1 &"
    healthcheck: {{http: {{port: 8000, path: /}}, interval: 1s, timeout: 5s, retries: 3}}
"""
    )
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Client:
    """GETs through the forwarded port, one connection each, back to back, until stopped."""

    port: int
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    served_by: set[str] = field(default_factory=set)
    slowest: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                url = f"http://127.0.0.1:{self.port}/"
                with urllib.request.urlopen(url, timeout=30) as answer:  # loopback only
                    body = answer.read().decode()
                    assert answer.status == 200, answer.status
                self.ok += 1
                self.served_by.add(body)
            except Exception as error:  # every failure counts, whatever it is
                self.failures.append(f"{type(error).__name__}: {error}")
            self.slowest = max(self.slowest, time.monotonic() - began)


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
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    seen: list[int] = []
    agreements: list[str] = []
    try:

        def enough_renewals() -> bool:
            [row] = cli.status("renew")["services"][0]["instances"]
            seen.append(row["renewals"])
            if row["agreement_id"] and row["agreement_id"] not in agreements:
                agreements.append(row["agreement_id"])
            assert row["state"] == "running", row  # never down between agreements
            return bool(row["renewals"] >= RENEWALS)

        wait_until(enough_renewals, 420, f"{RENEWALS} renewals")
    finally:
        client.stop.set()
        thread.join(60)

    assert client.failures == [], (
        f"{len(client.failures)} failed of {client.ok + len(client.failures)}"
    )
    assert client.ok > 100
    assert seen == sorted(seen) and seen[-1] >= RENEWALS  # the count only grows
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
