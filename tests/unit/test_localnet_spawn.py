"""Starting a sandbox's init without fork(): the child's output, exit status and signals
reach the caller as through anyio.open_process, on asyncio's loop and on uvloop (the local
network's host runs on uvloop, whose own spawn forks the whole host)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import anyio
import pytest

from golem_deploy.localnet import spawn

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[False, True], ids=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    return "asyncio", {"use_uvloop": request.param}


async def _read_all(stream: anyio.abc.ByteReceiveStream | None) -> bytes:
    assert stream is not None
    data = b""
    with anyio.fail_after(10):
        while True:
            try:
                data += await stream.receive()
            except anyio.EndOfStream:
                return data


async def test_output_and_exit_status_arrive() -> None:
    with open("/dev/null", "rb") as null:
        process = await spawn.open_process(
            ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], stdin=null.fileno()
        )
    assert await _read_all(process.stdout) == b"out\n"
    assert await _read_all(process.stderr) == b"err\n"
    with anyio.fail_after(10):
        assert await process.wait() == 3
    assert process.returncode == 3
    await process.aclose()


async def test_the_given_stdin_is_the_childs() -> None:
    """The sandbox hands its init one end of a socket pair as stdin (the command channel)."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        process = await spawn.open_process(
            ["/bin/sh", "-c", "read line; echo got $line"], stdin=theirs.fileno()
        )
        ours.sendall(b"hello\n")
        assert await _read_all(process.stdout) == b"got hello\n"
        with anyio.fail_after(10):
            assert await process.wait() == 0
        await process.aclose()


async def test_a_killed_child_is_seen_ending_by_its_signal() -> None:
    with open("/dev/null", "rb") as null:
        process = await spawn.open_process(["/bin/sleep", "60"], stdin=null.fileno())
    assert process.returncode is None
    process.kill()
    with anyio.fail_after(10):
        assert await process.wait() == -signal.SIGKILL
    process.kill()  # after it was reaped: no signal to a pid someone else may have now
    await process.aclose()


async def test_cwd_env_and_a_session_of_its_own_are_the_childs(tmp_path: Path) -> None:
    """An unsealed activity's command runs in its work dir, with the ExeUnit's environment,
    in a process group of its own (so a kill reaches everything it started)."""
    process = await spawn.open_process(
        ["/bin/sh", "-c", 'echo "$(pwd) $GREETING"; exec cat'],
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env={"GREETING": "hello", "PATH": "/bin:/usr/bin"},
        start_new_session=True,
    )
    assert process.stdout is not None
    with anyio.fail_after(10):
        line = await process.stdout.receive()
    assert line == f"{tmp_path} hello\n".encode()
    assert os.getsid(process.pid) == process.pid
    with anyio.fail_after(10):
        assert await process.wait() == 0  # cat met the end of /dev/null
    await process.aclose()
