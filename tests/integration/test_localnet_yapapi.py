"""yapapi 0.13.1's Services API runs a service on the local network, unchanged.

yapapi is not a dependency of golem-deploy: the test uses $GOLEM_DEPLOY_TEST_YAPAPI_PYTHON
(prepared by tests/conftest.py before the suite goes offline) or installs it into a
throwaway virtualenv. The program gets exactly what `golem-deploy localnet start` prints:
the YAGNA_* variables and a PATH whose first `gftp` is the local network's (yapapi starts
`gftp server` for every Golem and transfers files through it). The test adds only an image
registry: a loopback HTTP server with a real .gvmi built at test time, which yapapi checks
with HEAD and the local provider downloads, verifies and runs the service in, as a real
provider does.
"""

from __future__ import annotations

import functools
import http.server
import json
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
from test_yapapi_examples import port

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


@pytest.fixture
def started_by_cli(_localnet_template: Path) -> Iterator[dict[str, str]]:
    """A network started with `golem-deploy localnet start --json`: what it printed."""
    state_dir = Path(tempfile.mkdtemp(prefix="gd-yapapi-net-"))
    shutil.copytree(_localnet_template / "yagna", state_dir / "yagna")
    shutil.copy2(_localnet_template / "keys.json", state_dir / "keys.json")
    cli = [sys.executable, "-m", "golem_deploy", "localnet"]
    try:
        started = subprocess.run(
            [*cli, "start", "--json", "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert started.returncode == 0, started.stderr
        yield dict(json.loads(started.stdout))
    finally:
        subprocess.run([*cli, "stop", "--state-dir", str(state_dir)], timeout=60)
        shutil.rmtree(state_dir, ignore_errors=True)


def test_yapapi_services_api_runs_a_service_unchanged(
    started_by_cli: dict[str, str],
    yapapi_python: Path,
    image_url: str,
    image: Gvmi,
    tmp_path: Path,
) -> None:
    downloaded = tmp_path / "out.txt"
    env = {
        **started_by_cli,  # YAGNA_*, and PATH with the network's gftp first
        "HOME": str(tmp_path),
        "IMAGE_URL": image_url,
        "DOWNLOAD_TO": str(downloaded),
        "IMAGE_HASH": image.digest,
        "YAPAPI_LOG": str(tmp_path / "yapapi.log"),
    }
    run_hello_service(yapapi_python, HERE / "hello_service.py", env, tmp_path)
    log = (tmp_path / "yapapi.log").read_text()
    assert "Accepted invoice from 'local-provider-" in log


def test_the_same_yapapi_program_ported_runs_on_golem_deploys_engine(
    shared_localnet: LocalNetInfo, image_url: str, image: Gvmi, tmp_path: Path
) -> None:
    """The program above, its `from yapapi...` imports swapped by docs/engine.md's import
    map and nothing else, runs on golem_deploy.engine with the project's own Python (which
    has no yapapi): what porting a yapapi requestor takes. yapapi's own published examples
    get the same treatment in test_yapapi_examples.py where they can be fetched."""
    program = tmp_path / "hello_service.py"
    program.write_text(port((HERE / "hello_service.py").read_text()))
    assert "yapapi" not in "".join(
        line for line in program.read_text().splitlines() if line.lstrip().startswith("from ")
    )
    downloaded = tmp_path / "out.txt"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("YAGNA_")},
        **shared_localnet.env(),
        "IMAGE_URL": image_url,
        "DOWNLOAD_TO": str(downloaded),
        "IMAGE_HASH": image.digest,
        "YAPAPI_LOG": str(tmp_path / "engine.log"),
    }
    result = subprocess.run(
        [sys.executable, "-c", "import yapapi"], env=env, capture_output=True, timeout=60
    )
    assert result.returncode != 0, "the project's Python has yapapi: the port proves nothing"
    run_hello_service(Path(sys.executable), program, env, tmp_path)
    assert (tmp_path / "engine.log").read_text()  # enable_default_logger(log_file=)


def run_hello_service(python: Path, program: Path, env: dict[str, str], cwd: Path) -> None:
    """Run yapapi_compat/hello_service.py (or its port) and check what it did."""
    result = subprocess.run(
        [str(python), str(program)], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    lines = result.stdout.splitlines()
    assert "START started-ok" in lines  # start() ran deploy, start and a command
    # uploaded, changed, downloaded
    assert Path(env["DOWNLOAD_TO"]).read_text() == "SENT-BY-YAPAPI\n"
    assert "RUN running-on-42" in lines  # run() ran a shell command on the provider
    assert any(line.startswith("PROVIDER local-provider-") for line in lines)
    assert lines[-1] == "DONE"  # stopped, invoices settled, engine shut down cleanly
