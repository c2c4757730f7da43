"""supervisor/lock.py: who holds a deployment's lock, and what `status` makes of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_deploy.supervisor import client, control, lock
from golem_deploy.supervisor.deployments import DeploymentDir


def test_the_holder_says_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.lock"
    fd = lock.try_take(path)
    assert fd is not None and lock.holder_role(path) == lock.SUPERVISOR
    assert lock.try_take(path) is None  # held: nobody else gets it
    with_down = tmp_path / "other.lock"
    with lock.held(with_down, name="x"):
        assert lock.holder_role(with_down) == lock.DOWN


def test_status_while_down_releases_answers_from_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a `down` releasing what a killed supervisor left holds the lock and has no socket:
    # that is no supervisor failing to answer (an error after a settle wait), so the socket
    # is not even asked
    def no_socket(*args: object, **kwargs: object) -> object:
        raise AssertionError("asked a supervisor that is not there")

    monkeypatch.setattr(client, "request", no_socket)
    deployment = DeploymentDir("app", tmp_path)
    with lock.held(deployment.lock, name="app"):
        assert deployment.supervisor_alive()
        snap = control.current_snapshot(deployment)
    assert snap.name == "app" and not snap.supervisor_alive
