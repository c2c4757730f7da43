"""The supervisor `up` forks first (supervisor/prefork.py): what it hands over and preloads.

The fork itself is exercised end to end by every `up` in tests/e2e (and a failing `up`
leaving no process behind by test_cli_errors.py); here the parts that can break quietly.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

from golem_deploy.manifest import load_manifest
from golem_deploy.supervisor import prefork

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def test_every_preloaded_module_exists() -> None:
    # A renamed module would make the waiting child exit at once, and every `up` would
    # quietly fall back to forking late: slower, with nothing saying why.
    for name in prefork.PRELOAD:
        assert importlib.import_module(name) is not None


def test_an_order_survives_the_pipe() -> None:
    manifest = load_manifest(MANIFESTS / "simple-service.yaml")
    order = prefork.Order(manifest, 3, None, Path("/tmp/supervisor.log"), {"A": "1"})
    assert pickle.loads(pickle.dumps(order)) == order


def test_without_a_waiting_child_the_caller_starts_one_itself() -> None:
    manifest = load_manifest(MANIFESTS / "hello-world.yaml")
    assert prefork.claim(prefork.Order(manifest, 3, None, Path("/tmp/x.log"), {})) is None
    prefork.cancel()  # nothing to cancel: no error either
