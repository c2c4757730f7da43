"""The local network's yagna daemons run with TCP_NODELAY on every loopback TCP socket.

Without it a small VPN frame waits for a 40 ms delayed ACK at several hops (nodelay.py).
Read back from outside with pidfd_getfd + getsockopt, as root (the suite's setting).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from golem_deploy import localnet as ln
from golem_deploy.localnet.nodelay import NodelayKeeper, loopback_nodelay
from golem_deploy.localnet.records import read_pid_file

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0, reason="reads other processes' sockets: root"
)


def daemon_pids(info: ln.LocalNetInfo) -> dict[str, int]:
    pids = {}
    for name in ("requestor", "provider"):
        entry = read_pid_file(info.state_dir, name)
        assert entry is not None, f"no pid file for the {name} daemon"
        pids[name] = entry[0]
    return pids


def test_every_loopback_socket_of_the_daemons_has_nodelay(
    shared_localnet: ln.LocalNetInfo,
) -> None:
    for name, pid in daemon_pids(shared_localnet).items():
        states = loopback_nodelay(pid)
        # Listeners (REST, GSB router) and bus connections, at least.
        assert len(states) >= 3, f"{name}: only {states} found"
        assert all(states.values()), f"{name} daemon sockets without TCP_NODELAY: {states}"


def test_a_connection_made_after_start_has_nodelay_at_once(
    shared_localnet: ln.LocalNetInfo,
) -> None:
    """What the Net API WebSocket of a forwarded port is: a new REST connection. It inherits
    TCP_NODELAY from the listener the host set it on, with no sweep in between."""
    api = urllib.parse.urlsplit(shared_localnet.api_url)
    with socket.create_connection((api.hostname or "127.0.0.1", api.port or 80)) as conn:
        request = f"GET /me HTTP/1.1\r\nHost: {api.netloc}\r\nAuthorization: Bearer "
        conn.sendall(f"{request}{shared_localnet.app_key}\r\n\r\n".encode())
        assert conn.recv(1 << 16).startswith(b"HTTP/1.1 200")  # so yagna accepted it
        ours = conn.getsockname()[1]
        pid = daemon_pids(shared_localnet)["requestor"]
        accepted = _inode_of(pid, local=api.port or 80, remote=ours)
        assert loopback_nodelay(pid)[accepted] is True


def _inode_of(pid: int, *, local: int, remote: int) -> int:
    """The inode of the live socket from port `local` to port `remote`.

    /proc/PID/net/tcp lists the whole network namespace, TIME_WAIT rows (inode 0) of closed
    connections included: both ports must match, and the row must have an owner."""
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        ports = (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16))
        if ports == (local, remote) and int(fields[9]) != 0:
            return int(fields[9])
    raise AssertionError(f"no socket of {pid} from port {local} to port {remote}")


CHILD = textwrap.dedent(
    """
    import ctypes, socket, sys
    if sys.argv[1] == "private":
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no ptrace access
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    pair = socket.socketpair()
    print("ready", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A process holding three loopback TCP sockets without TCP_NODELAY and a Unix pair."""
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, "plain"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        yield process
    finally:
        process.kill()
        process.wait()


def test_the_keeper_sets_what_is_missing_and_then_rests(child: subprocess.Popen[bytes]) -> None:
    assert sorted(loopback_nodelay(child.pid).values()) == [False, False, False]
    keeper = NodelayKeeper()
    keeper.sweep([child])
    assert keeper.disabled is None
    assert sorted(loopback_nodelay(child.pid).values()) == [True, True, True]
    assert (keeper.counts.set, keeper.counts.scans) == (3, 1)
    keeper.sweep([child])  # nothing new: the TCP tables are not read again
    assert (keeper.counts.set, keeper.counts.sweeps, keeper.counts.scans) == (3, 2, 1)


DEGRADED = textwrap.dedent(
    """
    import logging, subprocess, sys
    from nodelay import NodelayKeeper
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
    child = subprocess.Popen(
        [sys.executable, "-c", sys.argv[1], "private"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert child.stdout.readline() == b"ready\\n"
    keeper = NodelayKeeper()
    keeper.sweep([child])
    keeper.sweep([child])
    print("disabled:", keeper.disabled)
    child.stdin.close()
    child.wait()
    """
)


def test_without_ptrace_access_it_says_so_once_and_carries_on() -> None:
    """As an unprivileged user, towards a process that forbids ptrace access (what a strict
    Yama ptrace_scope does to every process): one warning, then nothing.

    The system's Python: the unprivileged user may not be able to run ours (e.g. under
    /root); the module needs only the standard library."""
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 an unprivileged user can run")
    # A world-readable copy of the module: the checkout may sit in a folder only root can
    # enter (a fresh clone under `mktemp -d`).
    readable = Path(tempfile.mkdtemp(prefix="gd-nodelay-"))
    try:
        readable.chmod(0o755)
        shutil.copy(ROOT / "golem_deploy" / "localnet" / "nodelay.py", readable / "nodelay.py")
        (readable / "nodelay.py").chmod(0o644)
        done = subprocess.run(
            [python, "-c", DEGRADED, CHILD],
            cwd=readable,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(readable)},
            user=65534,
            group=65534,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(readable, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len([line for line in lines if "cannot set TCP_NODELAY" in line]) == 1, lines
    assert lines[-1].startswith("disabled: cannot read /proc/"), lines
