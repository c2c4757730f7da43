"""Finding the processes a test started, by a unique marker in their command line."""

from __future__ import annotations

import os


def processes_with(marker: str) -> list[int]:
    """Pids whose command line contains `marker` (the test's own unique argument)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found
