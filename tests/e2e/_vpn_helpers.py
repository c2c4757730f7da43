"""What a deployment's VPN leaves on this machine, seen from /proc (e2e and reliability tests).

On the local network every activity in a VPN has its own network namespace (owned by its
sandbox) holding a TAP device whose descriptor the local network's host process keeps and
pumps. These helpers find those namespaces and descriptors while a deployment runs, and
check afterwards that none of them survived: a namespace lives only while a process is in
it, a descriptor or a bind mount refers to it, or a TAP in it is still open.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

PROC = Path("/proc")


def localnet_host_pid(state_dir: Path) -> int:
    """The pid of the host process of the local network in ``state_dir`` (its latest start;
    a deployment's private network is in ``<deployment>/localnet``)."""
    pids = []
    for line in (state_dir / "journal.jsonl").read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if record.get("event") == "host-started":
                pids.append(int(record["pid"]))
    assert pids, f"no local network host recorded in {state_dir}"
    return pids[-1]


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> list[int]:
    children = _children()
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _netns(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return os.readlink(PROC / str(pid) / "ns" / "net")  # "net:[4026532...]"
    return None


def vpn_namespaces(host_pid: int) -> set[str]:
    """The network namespaces of the host's activities that have a VPN interface (an
    interface besides ``lo``), as ``net:[inode]``."""
    own = _netns(host_pid)
    found = set()
    for pid in _descendants(host_pid):
        netns = _netns(pid)
        if netns is None or netns == own or netns in found:
            continue
        try:
            lines = (PROC / str(pid) / "net" / "dev").read_text().splitlines()[2:]
        except OSError:
            continue
        if any(line.split(":")[0].strip() != "lo" for line in lines):
            found.add(netns)
    return found


def tap_descriptors(pid: int) -> int:
    """How many TAP/TUN devices process ``pid`` holds open (one per VPN interface)."""
    count = 0
    for fd in (PROC / str(pid) / "fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd) == "/dev/net/tun"
    return count


def namespaces_alive(namespaces: set[str], home: Path | None = None) -> set[str]:
    """Those of ``namespaces`` that something on this machine still refers to: a process in
    it, a descriptor of it, or a bind mount of it (``ip netns`` style).

    The kernel reuses a freed namespace's inode number: with ``home`` given, a namespace now
    held only by processes of ANOTHER test's deployment (a test running beside this one
    made a new namespace with the freed number) is not counted."""
    alive = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        links = [entry / "ns" / "net"]
        with contextlib.suppress(OSError):
            links += list((entry / "fd").iterdir())
        for link in links:
            with contextlib.suppress(OSError):
                target = os.readlink(link)
                if target in namespaces and not _another_tests(int(entry.name), home):
                    alive.add(target)
    for mounts in (PROC / "self" / "mountinfo", PROC / "1" / "mountinfo"):
        with contextlib.suppress(OSError):
            text = mounts.read_text()
            alive |= {ns for ns in namespaces if ns in text}
    return alive


def _another_tests(pid: int, home: Path | None) -> bool:
    """True when `pid` or an ancestor names a test home (/tmp/gd-e2e-*) other than `home`."""
    if home is None:
        return False
    ours = str(home).encode()
    while pid > 1:
        try:
            seen = (PROC / str(pid) / "cmdline").read_bytes()
            seen += (PROC / str(pid) / "environ").read_bytes()
            stat = (PROC / str(pid) / "stat").read_text()
        except OSError:
            return False
        if ours in seen:
            return False
        if b"/gd-e2e-" in seen:
            return True
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: ppid
    return False
