"""The agreement's CPU and memory limits for one sealed activity, with Linux cgroups.

A Golem VM gets the agreement's threads and memory; locally each activity gets a cgroup of
its own, below the cgroup golem-deploy runs in, where the host lets us make one:

* **cgroup v2** (a unified hierarchy): only where our cgroup already delegates the ``cpu``
  and ``memory`` controllers to its children (its ``cgroup.subtree_control`` lists them,
  as a delegated systemd scope or a container prepared for it does). We never move our
  own process to make that possible.
* **cgroup v1** (separate ``cpu`` and ``memory`` hierarchies), as root.

``cpu.max`` / ``cpu.cfs_quota_us`` = threads x period (at most that many cores' worth of
CPU time), ``memory.max`` / ``memory.limit_in_bytes`` = the agreement's memory: the kernel
kills the activity's biggest process when it needs more. The sandbox's init joins the
cgroups as soon as it runs (:meth:`CgroupLimits.join`), so every command it starts, and
every child of those, is born in them (the init itself, a small idle Python, counts too).
Where none of this is possible, :meth:`CgroupLimits.create` returns the reason, and the
ExeUnit reports that the limits are not enforced.

A cgroup is named ``golem-deploy-<pid of the local network>-<activity>``; one that a killed
local network left behind (its pid gone, no process in it) is removed by the next one.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    cpu_threads: float  # the agreement's golem.inf.cpu.threads
    mem_bytes: int  # the agreement's golem.inf.mem.gib, in bytes


def _own_cgroups() -> dict[str, str]:
    """{controller or "" for v2: path of our cgroup} from /proc/self/cgroup."""
    found: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            found[name] = path
    return found


PREFIX = "golem-deploy-"


def sweep_stale(parent: Path) -> None:
    """Remove empty cgroups of local networks that no longer run (killed, no cleanup)."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        owner = entry.name[len(PREFIX) :].split("-", 1)[0]
        if not entry.name.startswith(PREFIX) or not owner.isdigit():
            continue
        try:
            os.kill(int(owner), 0)
            continue  # still running: its cgroups are its own business
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(OSError):  # EBUSY while a process is still in it
            entry.rmdir()


class CgroupLimits:
    """The cgroup directories of one activity (created by :meth:`create`)."""

    def __init__(self, activity: str, limits: Limits) -> None:
        self.name = f"{PREFIX}{os.getpid()}-{activity}"
        self.limits = limits
        self.dirs: list[Path] = []

    def create(self) -> str | None:
        """Make the cgroup(s) and set the limits; None on success, else why not."""
        own = _own_cgroups()
        if (CGROUP_ROOT / "cgroup.controllers").exists():  # cgroup v2 only
            return self._create_v2(CGROUP_ROOT / own.get("", "/").lstrip("/"))
        if "cpu" in own and "memory" in own:
            if os.geteuid() != 0:
                return "cgroup v1 hierarchies need root"
            return self._create_v1(own)
        return "no cgroup v2 hierarchy with cpu and memory, nor cgroup v1"

    def _create_v2(self, parent: Path) -> str | None:
        try:
            delegated = (parent / "cgroup.subtree_control").read_text().split()
        except OSError as exc:
            return f"cgroup v2: cannot read {parent}: {exc.strerror}"
        if not {"cpu", "memory"} <= set(delegated):
            return (
                f"cgroup v2: {parent} does not delegate cpu and memory to child cgroups "
                "(cgroup.subtree_control)"
            )
        path = parent / self.name
        quota = int(self.limits.cpu_threads * PERIOD_US)
        return self._make(
            path,
            {"cpu.max": f"{quota} {PERIOD_US}", "memory.max": str(self.limits.mem_bytes)},
        )

    def _create_v1(self, own: dict[str, str]) -> str | None:
        quota = int(self.limits.cpu_threads * PERIOD_US)
        settings = {
            "cpu": {"cpu.cfs_period_us": str(PERIOD_US), "cpu.cfs_quota_us": str(quota)},
            "memory": {"memory.limit_in_bytes": str(self.limits.mem_bytes)},
        }
        for controller, values in settings.items():
            parent = CGROUP_ROOT / controller / own[controller].lstrip("/")
            reason = self._make(parent / self.name, values)
            if reason is not None:
                self.remove()
                return reason
        return None

    def _make(self, path: Path, values: dict[str, str]) -> str | None:
        sweep_stale(path.parent)
        try:
            path.mkdir()
            self.dirs.append(path)
            for name, value in values.items():
                (path / name).write_text(value)
        except OSError as exc:
            return f"cannot set up cgroup {path}: {exc.strerror or exc}"
        return None

    def join(self, pid: int) -> str | None:
        """Move process ``pid`` (the sandbox's init) into the cgroups; its future children
        are born in them. None on success, else why not."""
        for path in self.dirs:
            try:
                (path / "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                return f"cannot join cgroup {path}: {exc.strerror or exc}"
        return None

    def remove(self) -> bool:
        """Remove the cgroups whose processes are gone; True when none is left."""
        left = []
        for path in reversed(self.dirs):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                left.append(path)
        self.dirs = list(reversed(left))
        return not self.dirs
