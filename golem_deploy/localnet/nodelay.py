"""TCP_NODELAY on the local network's yagna daemons' loopback sockets, set from outside.

Why: yagna 0.17.6 never sets TCP_NODELAY on its own TCP sockets (its GSB router and bus
connections, its REST server including the Net API WebSocket). With Nagle's algorithm on, a
small write that follows an unacknowledged one waits for the peer's delayed ACK (40 ms on
Linux), and a VPN frame crosses several such hops (requestor node -> hub -> provider node ->
host process and back), so a small HTTP GET through a forwarded port took ~200 ms instead
of 10-25 ms, and downloads crawled. We cannot change yagna, but the host process started the
daemons, so it may act on their sockets: ``pidfd_getfd(2)`` (Linux >= 5.6) gives us a
duplicate of a daemon's descriptor, ``setsockopt`` on the duplicate changes the one socket
both descriptors share, and closing the duplicate leaves the daemon's socket untouched.

What is touched: only the processes handed to :meth:`NodelayKeeper.sweep` (the daemons this
host started, never anything else), and of those only TCP sockets whose local address is a
loopback address (found by matching the socket inodes of ``/proc/<pid>/fd`` against
``/proc/<pid>/net/tcp`` and ``tcp6``), and only the option TCP_NODELAY.

When: a socket accepted from a listening socket inherits the listener's TCP_NODELAY, so one
sweep after start covers every later REST/WebSocket and bus connection to the daemons; what
a sweep later still finds are connections a daemon opens itself (e.g. a reconnect to the
hub). The host sweeps once before it reports the network ready, then every few seconds; a
sweep lists the daemon's descriptors and reads the TCP tables only when a socket it has not
seen yet is there (see docs/localnet.md for its measured cost).

Where this is not permitted (``pidfd_getfd`` needs ptrace access to the daemon: EPERM under
a strict Yama ``ptrace_scope``, or without the capability; ENOSYS before Linux 5.6) it logs
once and gives up: the network works the same, only the VPN is slower.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import logging
import os
import platform
import socket
import struct
import subprocess
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "NodelayKeeper",
    "TcpEntry",
    "loopback_nodelay",
    "parse_tcp_table",
    "socket_inode",
    "unix_inodes",
]

log = logging.getLogger(__name__)

#: pidfd_getfd's number in the syscall table these architectures share from 424 on (alpha
#: and mips number it differently: there we do not try).
SYS_PIDFD_GETFD = 438
KNOWN_MACHINES = ("x86_64", "i686", "aarch64", "armv7l", "armv8l", "riscv64", "ppc64le", "s390x")


@dataclass(frozen=True)
class TcpEntry:
    """One row of /proc/<pid>/net/tcp{,6}: the addresses, the state and the socket inode."""

    local: ipaddress.IPv4Address | ipaddress.IPv6Address
    remote: ipaddress.IPv4Address | ipaddress.IPv6Address
    state: int  # 1 = ESTABLISHED, 10 = LISTEN (include/net/tcp_states.h)
    inode: int

    @property
    def loopback(self) -> bool:
        """Bound to a loopback address, i.e. a connection on (or listener of) `lo`."""
        address = self.local
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``0100007F`` or 32 hex digits: the kernel prints each 32-bit word of the address (in
    network byte order in memory) as a native-endian number, so pack them back natively."""
    words = [int(text[i : i + 8], 16) for i in range(0, len(text), 8)]
    packed = struct.pack(f"={len(words)}I", *words)
    return ipaddress.ip_address(packed)


def parse_tcp_table(text: str, only: Container[int] | None = None) -> Iterator[TcpEntry]:
    """The rows of a /proc/<pid>/net/tcp or tcp6 file (its header line skipped); with
    `only`, just the rows of those inodes (the others are not decoded: a busy machine's
    table has thousands of rows, mostly TIME_WAIT)."""
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or (only is not None and int(fields[9]) not in only):
            continue
        local, remote = fields[1].split(":")[0], fields[2].split(":")[0]
        yield TcpEntry(_address(local), _address(remote), int(fields[3], 16), int(fields[9]))


def socket_inode(link: str) -> int | None:
    """The inode of a ``/proc/<pid>/fd/N`` link target ``socket:[123]``, else None."""
    if link.startswith("socket:[") and link.endswith("]"):
        return int(link[8:-1])
    return None


def unix_inodes(table: str) -> set[int]:
    """Inodes in /proc/<pid>/net/unix (its 7th column; header skipped): never TCP."""
    found = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 7 and fields[6].isdigit():
            found.add(int(fields[6]))
    return found


# --------------------------------------------------------------------------------------------
# Acting on another process's descriptors.


class NotPermitted(Exception):
    """pidfd_getfd is not available or not allowed here: nothing can be done."""


def _pidfd_getfd(pidfd: int, target_fd: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.syscall(SYS_PIDFD_GETFD, ctypes.c_int(pidfd), ctypes.c_int(target_fd), 0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except OSError:
        return ""


def _tcp_entries(pid: int, inodes: Container[int]) -> list[TcpEntry]:
    """The TCP sockets `inodes` in `pid`'s network namespace, IPv4 and IPv6."""
    return [
        entry
        for name in ("tcp", "tcp6")
        for entry in parse_tcp_table(_read(f"/proc/{pid}/net/{name}"), inodes)
    ]


def _socket_fds(pid: int) -> dict[int, int]:
    """inode -> descriptor number of every socket `pid` holds now."""
    found: dict[int, int] = {}
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        try:
            inode = socket_inode(os.readlink(f"{base}/{name}"))
        except OSError:
            continue  # closed while we looked
        if inode is not None:
            found[inode] = int(name)
    return found


def _borrow(pidfd: int, fd: int, inode: int) -> socket.socket | None:
    """Our duplicate of descriptor `fd` of the process `pidfd` names, as a socket object,
    if it still is the socket `inode` (the number may have been reused since we listed it).
    Closing the object closes only the duplicate. OSError from pidfd_getfd propagates."""
    dup = _pidfd_getfd(pidfd, fd)
    try:
        if os.fstat(dup).st_ino == inode:
            return socket.socket(fileno=dup)  # owns the duplicate from here on
    except OSError:
        pass
    os.close(dup)
    return None


def _set_nodelay(pidfd: int, fd: int, inode: int) -> bool | None:
    """Set TCP_NODELAY on descriptor `fd` of the process `pidfd` names, if it still is the
    socket `inode`. True: it was off and is on now; False: it was on; None: `fd` is gone
    or is another file now. NotPermitted when the kernel refuses or lacks pidfd_getfd."""
    try:
        sock = _borrow(pidfd, fd, inode)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES, errno.ENOSYS):
            raise NotPermitted(f"pidfd_getfd: {exc.strerror}") from exc
        return None  # EBADF: closed meanwhile; ESRCH: the process is gone
    if sock is None:
        return None
    with sock:
        try:
            if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY):
                return False
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            return None  # not a TCP socket after all
        return True


def loopback_nodelay(pid: int) -> dict[int, bool]:
    """Socket inode -> TCP_NODELAY of every loopback TCP socket `pid` holds (read only; for
    tests and diagnostics). OSError when pidfd_getfd is not permitted."""
    pidfd = os.pidfd_open(pid)
    try:
        sockets = _socket_fds(pid)
        entries = _tcp_entries(pid, sockets)
        loopback = {entry.inode for entry in entries if entry.loopback and entry.inode}
        states = {}
        for inode, fd in sockets.items():
            if inode not in loopback:
                continue
            try:
                sock = _borrow(pidfd, fd, inode)
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.ESRCH):
                    continue
                raise
            if sock is not None:
                with sock:
                    states[inode] = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return states
    finally:
        os.close(pidfd)


@dataclass
class SweepCounts:
    """What sweeps did so far (for the log and the tests)."""

    sweeps: int = 0
    scans: int = 0  # sweeps that found an unseen socket and read the TCP tables
    set: int = 0  # sockets we turned TCP_NODELAY on for
    already: int = 0  # loopback TCP sockets that had it (e.g. inherited from a listener)


@dataclass
class NodelayKeeper:
    """Keeps TCP_NODELAY on the loopback TCP sockets of processes this process started.

    Call :meth:`sweep` with the daemons' ``Popen`` objects after they started and then
    periodically; it is cheap when nothing changed. After the first refusal it does nothing.
    """

    disabled: str | None = None  # why sweeping gave up
    counts: SweepCounts = field(default_factory=SweepCounts)
    _seen: dict[int, set[int]] = field(default_factory=dict)  # pid -> inodes handled

    def sweep(self, processes: Iterable[subprocess.Popen[bytes]]) -> None:
        if self.disabled is not None:
            return
        self.counts.sweeps += 1
        alive = set()
        for process in processes:
            alive.add(process.pid)
            try:
                self._sweep_one(process)
            except NotPermitted as exc:
                self._give_up(str(exc))
                return
        for pid in set(self._seen) - alive:  # a restarted daemon has a new pid
            del self._seen[pid]

    def _give_up(self, reason: str) -> None:
        self.disabled = reason
        log.warning(
            "cannot set TCP_NODELAY on the yagna daemons' sockets (%s): the local network "
            "works, but traffic through its VPN is slower (a small request ~200 ms instead "
            "of 10-25 ms); see docs/localnet.md, 'VPN speed'",
            reason,
        )

    def _sweep_one(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        if platform.machine() not in KNOWN_MACHINES:
            raise NotPermitted(f"pidfd_getfd's number on {platform.machine()} is not known")
        try:
            pidfd = os.pidfd_open(process.pid)
        except AttributeError as exc:  # not Linux
            raise NotPermitted("no pidfd_open on this system") from exc
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                raise NotPermitted("pidfd_open: not in this kernel") from exc
            return  # ESRCH: it exited just now
        try:
            # Still our unreaped child after the pidfd was opened, so the pidfd names it and
            # not a process that reused its pid.
            if process.poll() is None:
                self._apply(process.pid, pidfd)
        finally:
            os.close(pidfd)

    def _apply(self, pid: int, pidfd: int) -> None:
        seen = self._seen.setdefault(pid, set())
        try:
            sockets = _socket_fds(pid)
        except PermissionError as exc:  # ptrace access is needed to read it too
            raise NotPermitted(f"cannot read /proc/{pid}/fd: {exc.strerror}") from exc
        except OSError:
            return  # gone
        seen.intersection_update(sockets)  # forget closed sockets (their inodes can come back)
        new = {inode: fd for inode, fd in sockets.items() if inode not in seen}
        if not new:
            return
        self.counts.scans += 1
        entries = _tcp_entries(pid, new)
        loopback = {entry.inode for entry in entries if entry.loopback and entry.inode}
        # Never ours to touch, so never looked at again: other TCP sockets, Unix sockets.
        others = {entry.inode for entry in entries if not entry.loopback}
        others |= unix_inodes(_read(f"/proc/{pid}/net/unix"))
        seen.update(new.keys() & others)
        for inode in sorted(new.keys() & loopback):
            changed = _set_nodelay(pidfd, new[inode], inode)
            if changed is None:
                continue
            seen.add(inode)
            if changed:
                self.counts.set += 1
            else:
                self.counts.already += 1
        # A socket in no table is not bound yet (or of a kind we ignore): it is looked at
        # again next time, when it may be a connected TCP socket.
