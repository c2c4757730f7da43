"""Session-wide test isolation.

When run as root on Linux, the whole test session moves into a fresh network namespace with
only loopback up, so no yagna daemon (or anything else) that a test starts can reach the
outside world. Every child process (yagna, the CLI under test) inherits it.
Set GOLEM_DEPLOY_TEST_NETNS=0 to opt out (for example to debug from another shell).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "integration"))
from _gvmi import install_squashfs_tools
from _selection import deselect_marked

CLONE_NEWNET = 0x40000000


@pytest.fixture
def anyio_backend() -> str:
    """Every async test runs on asyncio: aiohttp, and so the engine, needs it."""
    return "asyncio"


def _enter_loopback_only_netns() -> bool:
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    if os.environ.get("GOLEM_DEPLOY_TEST_NETNS", "1") == "0" or shutil.which("ip") is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        return False
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return True


YAPAPI_VENV = Path(__file__).resolve().parent.parent / ".venv-yapapi"


def _prepare_yapapi_python() -> None:
    """Give the yapapi compatibility tests a Python with yapapi 0.13.1.

    They prove that an unchanged yapapi requestor runs on our local network, and that
    `export` emits code yapapi accepts. yapapi is not our dependency, and once the session is
    inside the loopback-only namespace no package index is reachable, so the venv is made
    (once, cached in .venv-yapapi) before entering it. Offline, the tests skip with a reason.
    """
    if os.environ.get("GOLEM_DEPLOY_TEST_YAPAPI_PYTHON"):
        return
    python = YAPAPI_VENV / "bin" / "python"
    if not python.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(YAPAPI_VENV)], check=True)
            subprocess.run(
                [
                    str(YAPAPI_VENV / "bin" / "pip"),
                    "install",
                    "-q",
                    "--retries",
                    "0",
                    "--timeout",
                    "10",
                    "yapapi==0.13.1",
                ],
                check=True,
                capture_output=True,
                timeout=300,
            )
        except (subprocess.SubprocessError, OSError):
            shutil.rmtree(YAPAPI_VENV, ignore_errors=True)
            return
    os.environ["GOLEM_DEPLOY_TEST_YAPAPI_PYTHON"] = str(python)


YAPAPI_EXAMPLES = Path(__file__).resolve().parent.parent / ".yapapi-examples" / "0.13.1"
YAPAPI_SOURCE = "https://github.com/golemfactory/yapapi/archive/refs/tags/0.13.1.tar.gz"
YAPAPI_MIRROR = Path("/work/.mirror/golemfactory+yapapi/repo")


def _prepare_yapapi_examples() -> None:
    """Give tests/integration/test_yapapi_examples.py yapapi 0.13.1's example programs.

    They are not in this repository (its rule: no copied public code), nor in yapapi's
    PyPI sdist, so they are taken, once and cached in .yapapi-examples, before the session
    goes offline, from the first of:
    - $GOLEM_DEPLOY_TEST_YAPAPI_EXAMPLES, a folder holding `examples/`;
    - a git clone of golemfactory/yapapi with the 0.13.1 tag: $GOLEM_DEPLOY_TEST_YAPAPI_GIT,
      else this workplace's mirror (YAPAPI_MIRROR; CI's machine cannot reach GitHub);
    - yapapi's published source archive of the tag on GitHub.
    The test checks every file it runs against its git blob id. With none of them, the
    tests of the examples are left out of the run (pytest_collection_modifyitems).
    """
    if os.environ.get("GOLEM_DEPLOY_TEST_YAPAPI_EXAMPLES"):
        return
    if not (YAPAPI_EXAMPLES / "examples").is_dir():
        import tarfile
        import urllib.request

        git = Path(os.environ.get("GOLEM_DEPLOY_TEST_YAPAPI_GIT") or YAPAPI_MIRROR)
        try:
            with tempfile.TemporaryFile() as archive:
                if (git / "HEAD").exists() or (git / ".git").exists():
                    subprocess.run(
                        ["git", "-C", str(git), "archive", "--format=tar.gz",
                         "--prefix=yapapi-0.13.1/", "0.13.1", "examples"],
                        stdout=archive, check=True, timeout=60,
                    )  # fmt: skip
                else:
                    with urllib.request.urlopen(YAPAPI_SOURCE, timeout=15) as answer:
                        shutil.copyfileobj(answer, archive)
                archive.seek(0)
                with tarfile.open(fileobj=archive, mode="r:gz") as tar:
                    wanted = [m for m in tar.getmembers() if m.name.split("/")[1:2] == ["examples"]]
                    for member in wanted:
                        member.name = member.name.split("/", 1)[1]
                    tar.extractall(YAPAPI_EXAMPLES, members=wanted, filter="data")
        # TypeError: Python < 3.11.4 has no extractall(filter=), which keeps paths inside
        except (OSError, subprocess.SubprocessError, tarfile.TarError, IndexError, TypeError):
            shutil.rmtree(YAPAPI_EXAMPLES, ignore_errors=True)
            return
    os.environ["GOLEM_DEPLOY_TEST_YAPAPI_EXAMPLES"] = str(YAPAPI_EXAMPLES)


def _restore_ctrl_c() -> None:
    """Let the CLI under test see Ctrl-C even when the suite was started in the background.

    A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
    across exec, so `golem-deploy up` in a test would never get its Ctrl-C. A Python-level
    handler here resets to the default in every child at exec.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config: pytest.Config) -> None:
    _restore_ctrl_c()
    if not hasattr(config, "workerinput"):  # once per process
        _prepare_yapapi_python()
        _prepare_yapapi_examples()
        install_squashfs_tools()
        isolated = _enter_loopback_only_netns()
        config.stash[_NETNS_KEY] = isolated
    # Never talk to a user's own yagna from the test suite.
    for var in ("YAGNA_APPKEY", "YAGNA_API_URL", "YAGNA_SUBNET"):
        os.environ.pop(var, None)
    # Commands run cold, as their own process, unless a test asks for the warm process
    # (cli/warm.py; tests/e2e/test_warm_cli.py), which then also stops it.
    os.environ["GOLEM_DEPLOY_WARM"] = "0"


_NETNS_KEY = pytest.StashKey[bool]()


def pytest_report_header(config: pytest.Config) -> list[str]:
    isolated = config.stash.get(_NETNS_KEY, False)
    examples = (
        "run (fetched)"
        if _upstream_examples_available()
        else "NOT run: neither GitHub nor a yapapi clone is reachable (README, Tests)"
    )
    return [
        "network: " + ("loopback-only namespace" if isolated else "host network (not root)"),
        "yapapi's published examples (-m upstream): " + examples,
    ]


def _upstream_examples_available() -> bool:
    return bool(os.environ.get("GOLEM_DEPLOY_TEST_YAPAPI_EXAMPLES"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of yapapi's published example programs (marked `upstream`) need them from
    GitHub or a yapapi clone, which CI's machine cannot reach: without them they are left
    out of the run, said so in the header, rather than skipped one by one. Asked for with
    `-m upstream`, they run and fail loudly when the examples are missing.

    What CI verifies instead: tests/integration/test_localnet_yapapi.py ports this
    project's own yapapi program with the same import map and runs it on the engine."""
    if _upstream_examples_available() or "upstream" in (config.getoption("markexpr") or ""):
        return
    deselect_marked(config, items, "upstream")


@pytest.fixture(autouse=True, scope="session")
def _state_home() -> Iterator[Path]:
    """Each session keeps golem-deploy's state in its own temporary folder."""
    root = Path(tempfile.mkdtemp(prefix="gd-test-home-"))
    os.environ["GOLEM_DEPLOY_HOME"] = str(root)
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")  # the rendered --help (cli/entry.py)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
