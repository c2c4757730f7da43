"""Escape attempts from a sealed activity: each fails inside, and the host checks it.

The sandbox here is the sealed host root (the offline stand-in), the one that shows most of
the host: its system directories. Every attempt is a command a hostile manifest could run;
what the test asserts is the state of the host afterwards, not only the command's exit code.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from _procs import processes_with

from golem_deploy import paths
from golem_deploy.localnet.sandbox import Sandbox, namespaces_available, sandbox_owner

pytestmark = pytest.mark.skipif(
    not (namespaces_available() and sys.platform == "linux" and os.geteuid() == 0),
    reason="needs Linux namespaces (run as root)",
)

HOST_PYTHON = "/usr/bin/python3"


@asynccontextmanager
async def sealed(work_dir: Path) -> AsyncIterator[Sandbox]:
    async with anyio.create_task_group() as tg:
        sandbox = Sandbox(work_dir)
        await tg.start(sandbox.serve)
        try:
            yield sandbox
        finally:
            await sandbox.close()


async def sh(sandbox: Sandbox, script: str) -> tuple[int, str]:
    out: list[bytes] = []

    async def collect(chunk: bytes) -> None:
        out.append(chunk)

    code = await sandbox.run(["/bin/sh", "-c", script], on_stdout=collect, on_stderr=collect)
    return code, b"".join(out).decode()


def test_the_host_file_system_is_out_of_reach(tmp_path: Path) -> None:
    secret = paths.home() / "secret-app-key"
    secret.write_text("s3cret-app-key\n")
    target = tmp_path / "ESCAPED"

    async def main() -> None:
        async with sealed(tmp_path / "a") as sandbox:
            code, out = await sh(
                sandbox,
                f"touch {target}; touch /usr/ESCAPED; cat {secret}; ls -A /root; "
                f"ls {paths.home()}; ls /work /home; cat /etc/shadow; echo done",
            )
            assert code == 0 and out.endswith("done\n")
            assert "s3cret" not in out and "root:" not in out, out
            assert "Read-only file system" in out  # /usr is the host's, read-only

    anyio.run(main)
    assert not target.exists() and not Path("/usr/ESCAPED").exists()


def test_host_processes_cannot_be_killed_or_traced(tmp_path: Path) -> None:
    host = subprocess.Popen(["sleep", "300"])
    try:

        async def main() -> None:
            async with sealed(tmp_path / "a") as sandbox:
                code, out = await sh(sandbox, f"kill -9 {host.pid}; echo kill=$?")
                assert out.strip().endswith("kill=1")
                trace = (
                    "import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
                    f"print(libc.ptrace(16, {host.pid}, 0, 0), ctypes.get_errno())"
                )
                code, out = await sh(sandbox, f"{HOST_PYTHON} -c '{trace}'")
                assert (code, out.split()[0]) == (0, "-1")

        anyio.run(main)
        assert host.poll() is None  # still running
        status = Path(f"/proc/{host.pid}/status").read_text()
        assert "TracerPid:\t0\n" in status
    finally:
        host.kill()
        host.wait()


def test_no_network_but_its_own_loopback(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]

        async def main() -> None:
            async with sealed(tmp_path / "a") as sandbox:
                _, out = await sh(
                    sandbox,
                    f"bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}'; echo rc=$?; ip -o link",
                )
                assert "rc=1" in out and "Connection refused" in out
                # The VPN's integration point: the host can reach the namespace.
                assert sandbox.netns is not None
                assert os.stat(sandbox.netns).st_ino != os.stat("/proc/self/ns/net").st_ino
                links = [m.group(1) for m in re.finditer(r"(?m)^\d+: (\S+?):", out)]
                assert links == ["lo"], out

        anyio.run(main)
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected


def test_no_mounts_no_higher_limits_and_an_unprivileged_uid_outside(tmp_path: Path) -> None:
    marker = "4343.4343"

    async def main() -> None:
        async with sealed(tmp_path / "a") as sandbox:
            assert sandbox._init_pid is not None
            _, out = await sh(
                sandbox,
                "mount -t tmpfs none /mnt; echo mount=$?; "
                "ulimit -Hn 1048576; echo ulimit=$?; "
                f"(ulimit -Hn 1048576 2>/dev/null; exec sleep {marker}) > /dev/null 2>&1 &",
            )
            assert "mount=32" in out or "mount=1" in out, out
            assert "ulimit=2" in out or "ulimit=1" in out, out
            mounts = Path(f"/proc/{sandbox._init_pid}/mountinfo").read_text()
            assert " /mnt " not in mounts
            with anyio.fail_after(5):
                while not (pids := processes_with(marker)):
                    await anyio.sleep(0.05)
            (pid,) = pids
            limits = Path(f"/proc/{pid}/limits").read_text()
            open_files = next(line for line in limits.splitlines() if "open files" in line)
            assert int(open_files.split()[4]) <= 65536  # hard limit
            uid_line = next(
                line
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("Uid:")
            )
            owner = sandbox_owner()
            assert owner is not None
            assert uid_line.split()[1:] == [str(owner[0])] * 4  # root inside, nobody outside

    anyio.run(main)
