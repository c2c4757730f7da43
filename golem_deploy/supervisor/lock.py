"""The deployment lock: one flock() per deployment folder, held by whoever acts on it.

Why one module: the supervisor holds it for its whole life (one supervisor per deployment,
ever), and `down` holds it while it releases what a dead supervisor left, so that no `up`
starts meanwhile. The kernel drops an flock() exactly when its holder dies, which is why
liveness is the lock, not the pid (see deployments.DeploymentDir.supervisor_alive).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from golem_deploy.errors import GolemDeployError


class LockTaken(GolemDeployError):
    """Someone else (a supervisor) holds the deployment's lock."""


def try_take(path: Path) -> int | None:
    """The locked fd, or None when it is held elsewhere. Closing the fd releases it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def held(path: Path, *, name: str) -> Iterator[None]:
    """Hold the lock of deployment `name` for the block; LockTaken if a supervisor has it."""
    fd = try_take(path)
    if fd is None:
        raise LockTaken(f"deployment {name} got a new supervisor meanwhile; not touching it")
    try:
        yield
    finally:
        os.close(fd)
