"""Issue 11's report, replayed through the CLI: a manifest that tries to escape.

`golem-deploy up` of a manifest whose start step writes into a host directory and lists the
host's /root: sealed (the default), nothing of it reaches the host and the step sees root
as an unprivileged, private root; with the explicit `--unsafe-host-exec` it runs on the host,
and the CLI says so in red. And `local.image` runs a service in an image file on disk.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from _cli_helpers import Cli, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from _gvmi import MARKER, build_gvmi, mksquashfs_available

from golem_deploy.localnet.image import ImageConfig

pytestmark = [
    pytest.mark.localnet,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        sys.platform != "linux" or os.geteuid() != 0, reason="needs Linux namespaces as root"
    ),
]


def escaping_manifest(folder: Path, name: str) -> Path:
    manifest = folder / f"{name}.yaml"
    manifest.write_text(
        'version: "1"\n'
        f"name: {name}\n"
        "budget: 1.0\n"
        "services:\n"
        "  app:\n"
        "    payload: {image_hash: d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376}\n"
        "    start:\n"
        f'      - run: "id -u > {folder}/ESCAPED; ls /root > /golem/output/root.txt; true"\n'
        "    run:\n"
        "      every: 2s\n"
        "      steps:\n"
        '        - run: "ls -A /root | wc -l"\n'
    )
    return manifest


def test_sealed_by_default(cli: Cli, tmp_path: Path) -> None:
    manifest = escaping_manifest(tmp_path, "escape")
    up = cli("up", "-d", str(manifest), "--timeout", "3m")
    assert up.returncode == 0, up.stderr
    try:
        logs = wait_until(
            lambda: (out := cli.ok("logs", "-n", "escape").stdout).count("app.0 | 0") >= 1 and out,
            60,
            "the step's output: /root inside is empty",
        )
        assert "app.0 | 0" in logs
        # Offline (the test network has no route out), the sealed host root stands in, and
        # the deployment's logs say so once.
        offline = "image d646d7b9… not reachable offline: using the sealed host root"
        assert logs.count(offline) == 1, logs
        assert not (tmp_path / "ESCAPED").exists()
        assert "UNSEALED" not in up.stderr
    finally:
        assert cli("down", "-n", "escape").returncode == 0


def test_unsafe_host_exec_runs_on_the_host_and_says_so(cli: Cli, tmp_path: Path) -> None:
    manifest = escaping_manifest(tmp_path, "unsafe")
    up = cli("up", "-d", str(manifest), "--timeout", "3m", "--unsafe-host-exec")
    assert up.returncode == 0, up.stderr
    try:
        assert "UNSEALED" in up.stderr
        wait_until(lambda: (tmp_path / "ESCAPED").exists(), 60, "the host file")
        assert (tmp_path / "ESCAPED").read_text().strip() == str(os.geteuid())
    finally:
        assert cli("down", "-n", "unsafe").returncode == 0


@pytest.mark.skipif(not mksquashfs_available(), reason="needs squashfs-tools")
def test_local_image_runs_the_service_in_that_image(cli: Cli, tmp_path: Path) -> None:
    build_gvmi(tmp_path, ImageConfig(workdir="/golem/work"))
    manifest = tmp_path / "imaged.yaml"
    manifest.write_text(
        'version: "1"\n'
        "name: imaged\n"
        "budget: 1.0\n"
        "services:\n"
        "  app:\n"
        "    payload: {image_hash: d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376}\n"
        "    run:\n"
        "      every: 2s\n"
        '      steps: [{run: ["/bin/cat", "/etc/image-marker"]}]\n'
        "    local: {image: ./image.gvmi}\n"
    )
    up = cli("up", "-d", str(manifest), "--timeout", "3m")
    assert up.returncode == 0, up.stderr
    try:
        wait_until(
            lambda: f"app.0 | {MARKER}" in cli.ok("logs", "-n", "imaged").stdout,
            60,
            "the image's own file in the logs",
        )
    finally:
        assert cli("down", "-n", "imaged").returncode == 0
