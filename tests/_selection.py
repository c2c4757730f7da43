"""Leaving a marked group out of a run: shown as deselected, never skipped (a skip would
read as something CI could not check)."""

from __future__ import annotations

import pytest


def deselect_marked(config: pytest.Config, items: list[pytest.Item], marker: str) -> None:
    """Remove the items carrying `marker` from the run, reported as deselected."""
    left_out = [item for item in items if marker in item.keywords]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if marker not in item.keywords]
