"""A deployment's forwarded ports: every `ports` entry of every service gets its own listener,
and closing them stops them all (loopback sockets only; no connection reaches yagna)."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path
from typing import cast

import anyio

from golem_deploy.manifest import load_manifest
from golem_deploy.supervisor.vpn import PortForwards
from golem_deploy.yagna.net import NetApi

MANIFEST = """\
version: "1"
name: two-ports
budget: 1
services:
  db:
    payload: {image_hash: d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376}
    ports: ["6379"]
  web:
    payload: {image_hash: d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376}
    ports: ["8000", "9000"]
"""


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return False
    return True


def test_every_forwarded_port_listens_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "two-ports.yaml"
    path.write_text(textwrap.dedent(MANIFEST))
    manifest = load_manifest(path)
    api = cast(NetApi, object())  # never called: no instance runs, connections close at once

    async def main() -> None:
        forwards = PortForwards()
        async with anyio.create_task_group() as tg:
            await forwards.open(tg, manifest, api, "net-1", lambda service: [])
            described = [f.describe().split(" -> ")[1] for f in forwards.forwards]
            assert described == ["db:6379", "web:8000", "web:9000"]
            ports = [f.host_port for f in forwards.forwards]
            for port in ports:
                assert await anyio.to_thread.run_sync(_listening, port)
            forwards.close()
        for port in ports:
            assert not await anyio.to_thread.run_sync(_listening, port)

    anyio.run(main)
