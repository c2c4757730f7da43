"""The deployment lock: one flock() per deployment folder, held by whoever acts on it.

Why one module: the supervisor holds it for its whole life (one supervisor per deployment,
ever), and `down` holds it while it releases what a dead supervisor left, so that no `up`
starts meanwhile. The kernel drops an flock() exactly when its holder dies, which is why
liveness is the lock, not the pid (see deployments.DeploymentDir.supervisor_alive).

The holder writes what it is ("supervisor" or "down") into the file, so `status` can tell
a supervisor whose socket is slow to answer from a `down` releasing what a dead one left.
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


SUPERVISOR = "supervisor"
DOWN = "down"


def try_take(path: Path, role: str = SUPERVISOR) -> int | None:
    """The locked fd, or None when it is held elsewhere. Closing the fd releases it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{role} {os.getpid()}\n".encode(), 0)
    return fd


def holder_role(path: Path) -> str | None:
    """What the last holder said it is (meaningful while the lock is held)."""
    try:
        words = path.read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return words[0] if words else None


@contextlib.contextmanager
def held(path: Path, *, name: str) -> Iterator[None]:
    """Hold the lock of deployment `name` for the block (as `down` releasing what a dead
    supervisor left); LockTaken if a supervisor has it."""
    fd = try_take(path, DOWN)
    if fd is None:
        raise LockTaken(f"deployment {name} got a new supervisor meanwhile; not touching it")
    try:
        yield
    finally:
        os.close(fd)
