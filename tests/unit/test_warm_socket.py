"""Which warm process a command may use (cli/warm.py): one per home, installation, user and
namespaces -- never another installation's code, never another network namespace."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from golem_deploy.cli import warm


@pytest.fixture(autouse=True)
def _switched_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(warm.SWITCH, "1")


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A short folder (pytest's own can be too long for a socket's path)."""
    folder = Path(tempfile.mkdtemp(prefix="gd-warm-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_the_same_installation_and_home_share_one_socket_in_a_private_folder(
    tmp_path: Path,
) -> None:
    first = warm.socket_path(tmp_path, ["a.py:10:1"])
    assert first is not None
    assert first == warm.socket_path(tmp_path, ["a.py:10:1"])
    assert first.parent == tmp_path / "warm"
    assert first.suffix == ".sock"


def test_changed_sources_or_another_home_mean_another_warm_process(tmp_path: Path) -> None:
    base = warm.socket_path(tmp_path, ["a.py:10:1"])
    assert base != warm.socket_path(tmp_path, ["a.py:11:2"])  # an edited or upgraded install
    other = warm.socket_path(tmp_path / "other", ["a.py:10:1"])
    assert other is not None and base is not None and other.parent != base.parent


def test_switched_off_or_a_path_too_long_for_a_socket_means_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert warm.socket_path(tmp_path / ("x" * 120), []) is None
    monkeypatch.setenv(warm.SWITCH, "0")
    assert warm.socket_path(tmp_path, []) is None


def test_no_warm_process_leaves_the_command_to_run_here(tmp_path: Path) -> None:
    path = warm.socket_path(tmp_path, [])
    assert path is not None
    assert warm.run(["validate", "x.yaml"], path) is None  # nothing listens there
    assert warm.stop_all(tmp_path) == 0


def test_the_installation_is_every_file_of_the_package_not_only_the_cli() -> None:
    stamps = warm.installation_stamps()
    assert any("/golem_deploy/engine/lifecycle.py:" in stamp for stamp in stamps)
    assert any("/golem_deploy/schemas/" in stamp for stamp in stamps)  # the manifest schema
    assert not any("__pycache__" in stamp for stamp in stamps)


def test_stop_ends_only_the_warm_process_its_pid_file_names(tmp_path: Path) -> None:
    """A pid file left by a killed warm process may name another process by now."""
    path = warm.socket_path(tmp_path, [])
    assert path is not None
    path.parent.mkdir()
    other = subprocess.Popen(["sleep", "60"])
    try:
        warm.pid_file(path, other.pid).write_text(str(other.pid))
        assert not warm.stop(path)
        assert other.poll() is None  # not signalled
    finally:
        other.kill()
        other.wait()
