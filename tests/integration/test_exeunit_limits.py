"""The agreement's CPU and memory limits on a sealed activity (cgroups, where the host has
them for us): checked from the host, in the cgroup the activity's processes are in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from _procs import processes_with

from golem_deploy.localnet.limits import Limits
from golem_deploy.localnet.sandbox import Sandbox, namespaces_available

pytestmark = pytest.mark.skipif(
    not (namespaces_available() and sys.platform == "linux" and os.geteuid() == 0),
    reason="needs Linux namespaces (run as root)",
)

MIB = 1024**2


def cgroup_file(pid: int, controller: str, name: str) -> Path | None:
    """A control file of the cgroup ``pid`` is in (v1 controller or the v2 hierarchy)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup", controller, path.lstrip("/"), name)
        if controllers == "" and (Path("/sys/fs/cgroup/cgroup.controllers")).exists():
            return Path("/sys/fs/cgroup", path.lstrip("/"), name)
    return None


def test_cpu_quota_and_memory_limit_hold(tmp_path: Path) -> None:
    marker = "5151.5151"

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            sandbox = Sandbox(tmp_path / "a", limits=Limits(cpu_threads=1.5, mem_bytes=96 * MIB))
            await tg.start(sandbox.serve)
            try:
                if sandbox.limits_note is not None:
                    pytest.skip(sandbox.limits_note)
                code = await sandbox.run(["/bin/sh", "-c", f"sleep {marker} &"])
                assert code == 0
                (pid,) = processes_with(marker)
                v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
                quota = cgroup_file(pid, "cpu", "cpu.max" if v2 else "cpu.cfs_quota_us")
                memory = cgroup_file(pid, "memory", "memory.max" if v2 else "memory.limit_in_bytes")
                assert quota is not None and memory is not None
                assert quota.read_text().split()[0] == "150000"  # 1.5 x the 100 ms period
                assert int(memory.read_text()) == 96 * MIB
                # Needing more memory than agreed ends the process that asks for it.
                hog = "x = b'x' * (512 * 1024 * 1024); print(len(x))"
                out: list[bytes] = []

                async def keep(chunk: bytes) -> None:
                    out.append(chunk)

                code = await sandbox.run(["/usr/bin/python3", "-c", hog], on_stdout=keep)
                assert code != 0 and b"536870912" not in b"".join(out)
            finally:
                await sandbox.close()
        assert not processes_with(marker)

    anyio.run(main)


def test_cgroups_a_killed_local_network_left_are_swept(tmp_path: Path) -> None:
    """A local network killed with SIGKILL cannot clean up: the next sandbox removes its
    empty cgroups (and leaves those of running networks alone)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    probe = Sandbox(tmp_path / "probe", limits=Limits(cpu_threads=1, mem_bytes=256 * MIB))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(probe.serve)
            try:
                if probe.limits_note is not None:
                    pytest.skip(probe.limits_note)
                assert probe._cgroups is not None
                parents = [d.parent for d in probe._cgroups.dirs]
            finally:
                await probe.close()
        stale = [p / f"golem-deploy-{dead.pid}-gone" for p in parents]
        alive = [p / f"golem-deploy-{os.getpid()}-mine" for p in parents]
        for path in stale + alive:
            path.mkdir()
        try:
            async with anyio.create_task_group() as tg:
                sandbox = Sandbox(tmp_path / "b", limits=Limits(cpu_threads=1, mem_bytes=256 * MIB))
                await tg.start(sandbox.serve)
                await sandbox.close()
            assert not any(p.exists() for p in stale)
            assert all(p.exists() for p in alive)
        finally:
            for path in stale + alive:
                if path.exists():
                    path.rmdir()

    anyio.run(main)
