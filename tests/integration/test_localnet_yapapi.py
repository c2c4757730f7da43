"""yapapi 0.13.1's Services API runs a service on the local network, unchanged.

yapapi is not a dependency of golem-deploy: the test installs it into a throwaway virtualenv
under its tmp dir, or uses $GOLEM_DEPLOY_TEST_YAPAPI_PYTHON (skipped when neither works).
Two things a real requestor machine has are provided by the test: an image registry (a
loopback HTTP server with a real .gvmi built at test time, which yapapi checks with HEAD and
the local provider downloads, verifies and runs the service in, as a real provider does),
and a stand-in for yagna's `gftp` binary, which the golem-node wheel does not ship and
yapapi always starts.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _gvmi import Gvmi, build_gvmi, mksquashfs_available

from golem_deploy.localnet import LocalNetInfo
from golem_deploy.localnet.image import ImageConfig

pytestmark = pytest.mark.localnet

HERE = Path(__file__).parent / "yapapi_compat"


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temporary folder removed at teardown (the venv is tens of MB)."""
    path = Path(tempfile.mkdtemp(prefix="gd-yapapi-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def yapapi_python(scratch: Path) -> Path:
    """A Python with yapapi 0.13.1: $GOLEM_DEPLOY_TEST_YAPAPI_PYTHON, or a fresh venv.

    The test session runs in a loopback-only network namespace, so pip can reach a package
    index only through a local mirror; prepare a venv outside and point the variable at
    its python to run this test anywhere.
    """
    given = os.environ.get("GOLEM_DEPLOY_TEST_YAPAPI_PYTHON")
    if given:
        return Path(given)
    venv = scratch / "yapapi-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip_install = [str(venv / "bin" / "pip"), "install", "-q", "--retries", "0", "--timeout", "5"]
    pip = subprocess.run(
        [*pip_install, "yapapi==0.13.1"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if pip.returncode != 0:
        pytest.skip(f"cannot install yapapi 0.13.1 here: {pip.stderr.strip()[-300:]}")
    return venv / "bin" / "python"


@pytest.fixture
def image(tmp_path: Path) -> Gvmi:
    if not mksquashfs_available():
        pytest.skip("needs squashfs-tools to build the service's image")
    return build_gvmi(tmp_path / "image", ImageConfig(workdir="/golem/work"))


@pytest.fixture
def image_url(tmp_path: Path, image: Gvmi) -> Iterator[str]:
    """A loopback URL of the image, answering HEAD and GET as an image registry would."""
    www = tmp_path / "www"
    www.mkdir()
    shutil.copyfile(image.path, www / "image.gvmi")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/image.gvmi"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_yapapi_services_api_runs_a_service_unchanged(
    shared_localnet: LocalNetInfo,
    yapapi_python: Path,
    image_url: str,
    image: Gvmi,
    tmp_path: Path,
) -> None:
    env = {
        "PATH": f"{HERE}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "IMAGE_URL": image_url,
        "IMAGE_HASH": image.digest,
        "YAPAPI_LOG": str(tmp_path / "yapapi.log"),
        **shared_localnet.env(),
    }
    result = subprocess.run(
        [str(yapapi_python), str(HERE / "hello_service.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    lines = result.stdout.splitlines()
    assert "START started-ok" in lines  # start() ran deploy, start and a command
    assert "RUN running-on-42" in lines  # run() ran a shell command on the provider
    assert any(line.startswith("PROVIDER local-provider-") for line in lines)
    assert lines[-1] == "DONE"  # stopped, invoices settled, engine shut down cleanly
    log = (tmp_path / "yapapi.log").read_text()
    assert "Accepted invoice from 'local-provider-" in log
