"""Reliability fixtures: the e2e CLI runner (imported, not copied) and the `load` marker.

Every test here drives `golem-deploy` as a subprocess on a private local network (usually
with `up --faults FILE`), then audits what is left: the journal, our processes, and the
requestor yagna's own records (see _harness.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(_E2E) not in sys.path:
    sys.path.insert(0, str(_E2E))

from _cli_helpers import cli  # noqa: E402
from _selection import deselect_marked  # noqa: E402

__all__ = ["cli"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "load: many-instance / parallel-deployment load scenarios (minutes each)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Load rows are too heavy for the default suite's time budget: they run only when asked
    for (`-m load`, or RELIABILITY_LOAD=1 as bench/reliability.py --load sets it), as
    `.ci/run` does after the default suite. Otherwise they are left out of the run (shown
    as deselected, _selection.py)."""
    if "load" in (config.getoption("markexpr") or "") or os.environ.get("RELIABILITY_LOAD") == "1":
        return
    deselect_marked(config, items, "load")
