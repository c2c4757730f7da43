"""yapapi 0.13.1's own network API reaches a service on the local network, unchanged.

`Golem.create_network`, `run_service(..., network=...)` and yapapi's `LocalHttpProxy` (which
opens yagna's `GET /net-api/v1/net/{id}/tcp/{ip}/{port}` WebSocket per request) carry an
HTTP GET from 127.0.0.1 to a server listening inside the service's instance, over the local
network's VPN (the provider side in its ExeUnit). The program gets only what
`golem-deploy localnet start --json` printed, plus a registry serving a real .gvmi with perl
in it (the server); see test_localnet_yapapi.py for how yapapi and the network are prepared.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from _gvmi import TOOLS, Gvmi, build_gvmi, mksquashfs_available

# The same network, yapapi and registry as the Services API test; `image` is ours (perl).
from test_localnet_yapapi import (  # noqa: F401
    HERE,
    image_url,
    scratch,
    started_by_cli,
    yapapi_python,
)

from golem_deploy.localnet.image import ImageConfig

pytestmark = pytest.mark.localnet


@pytest.fixture
def image(tmp_path: Path) -> Gvmi:
    """The test image plus perl: the service's HTTP server (the image has no python)."""
    if not mksquashfs_available():
        pytest.skip("needs squashfs-tools to build the service's image")
    if shutil.which("perl") is None:
        pytest.skip("needs perl on this machine to put into the service's image")
    return build_gvmi(tmp_path / "image", ImageConfig(workdir="/golem/work"), (*TOOLS, "perl"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_yapapi_network_and_local_http_proxy_reach_the_instance(
    started_by_cli: dict[str, str],  # noqa: F811
    yapapi_python: Path,  # noqa: F811
    image_url: str,  # noqa: F811
    image: Gvmi,
    tmp_path: Path,
) -> None:
    env = {
        **started_by_cli,  # YAGNA_*, and PATH with the network's gftp first
        "HOME": str(tmp_path),
        "IMAGE_URL": image_url,
        "IMAGE_HASH": image.digest,
        "PROXY_PORT": str(free_port()),
        "YAPAPI_LOG": str(tmp_path / "yapapi.log"),
    }
    result = subprocess.run(
        [str(yapapi_python), str(HERE / "http_proxy_service.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = result.stdout + result.stderr
    log = tmp_path / "yapapi.log"
    assert result.returncode == 0, output[-3000:] + (
        log.read_text()[-3000:] if log.exists() else ""
    )
    lines = result.stdout.splitlines()
    assert "NODE 192.168.77.2" in lines  # the first address yapapi hands out after its own
    # Each GET went through the proxy, yagna's TCP WebSocket and the VPN to the server.
    assert "GOT 200 served /hello by perl" in lines
    assert "GOT 200 served /again by perl" in lines
    assert lines[-1] == "DONE"  # network removed, service stopped, invoices settled
