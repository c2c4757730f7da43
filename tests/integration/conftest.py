"""Shared local-network fixtures for integration (and e2e) tests.

    def test_x(shared_localnet): ...            # one 3-provider network for the session
    def test_y(localnet):                       # a private network, stopped at teardown
        net = localnet(providers=2, faults={"local-provider-1": {"die_after": "2s"}})

Both return `golem_deploy.localnet.LocalNetInfo`; `info.env()` gives the YAGNA_* variables a
requestor needs. Every network lives in its own temporary state dir, removed at teardown
after all of its processes were stopped, also when the test fails.

A fresh network needs its provider identities created (one extra provider-daemon restart);
to keep tests fast, every network starts from a copy of one template whose identities
already exist (exactly what a warm `golem-deploy localnet start` does).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from golem_deploy import localnet as ln

LocalnetFactory = Callable[..., ln.LocalNetInfo]
_TEMPLATE_PROVIDERS = 3


@pytest.fixture(scope="session")
def _localnet_template() -> Iterator[Path]:
    """A stopped network's state dir (data dirs with identities), made once per session."""
    root = Path(tempfile.mkdtemp(prefix="gd-localnet-template-"))
    try:
        ln.start(root, providers=_TEMPLATE_PROVIDERS, timeout=60.0)
        ln.stop(root)
        yield root
    finally:
        ln.stop(root)
        shutil.rmtree(root, ignore_errors=True)


def _new_state_dir(template: Path) -> Path:
    state_dir = Path(tempfile.mkdtemp(prefix="gd-localnet-"))
    shutil.copytree(template / "yagna", state_dir / "yagna")
    shutil.copy2(template / "keys.json", state_dir / "keys.json")
    return state_dir


@pytest.fixture
def localnet(_localnet_template: Path) -> Iterator[LocalnetFactory]:
    """Factory: `localnet(providers=3, faults={...})` starts a private network."""
    state_dirs: list[Path] = []

    def factory(
        providers: int = 3, faults: dict[str, dict[str, Any]] | None = None
    ) -> ln.LocalNetInfo:
        state_dir = _new_state_dir(_localnet_template)
        state_dirs.append(state_dir)
        faults_path = None
        if faults:
            faults_path = state_dir / "faults.yaml"
            faults_path.write_text(json.dumps(faults), encoding="utf-8")  # JSON is YAML
        return ln.start(state_dir, providers=providers, faults=faults_path, timeout=60.0)

    try:
        yield factory
    finally:
        for state_dir in state_dirs:
            try:
                ln.stop(state_dir)
            finally:
                shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_localnet(_localnet_template: Path) -> Iterator[ln.LocalNetInfo]:
    """One 3-provider, fault-free network shared by every test that only needs a network."""
    state_dir = _new_state_dir(_localnet_template)
    try:
        yield ln.start(state_dir, providers=3, timeout=60.0)
    finally:
        try:
            ln.stop(state_dir)
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
