"""Reading /proc for the local network's TCP_NODELAY keeper (localnet/nodelay.py).

The fixtures are real /proc/<pid>/net/{tcp,tcp6,unix} files, taken in a private network
namespace from a process holding these sockets (inode: what it was):

    1740323 127.0.0.1:8000 listener       1740330 [::1]:8443 listener
    1740324 127.0.0.1 -> 127.0.0.1:8000   1740331 [::1] -> [::1]:8443
    1740325 its accepted side             1740332 its accepted side
    1740326 0.0.0.0:9000 listener         1740333 [::]:8080 listener (dual stack)
    1740327 10.1.2.3:9001 listener        1740334 127.0.0.1 -> 127.0.0.1:8080
    (inode 0) a TIME_WAIT on 127.0.0.1    1740335 its accepted side, [::ffff:127.0.0.1]
                                          1740336 [fd00::5]:9443 listener
    1740337, 1740338 a Unix socket pair

They were written on x86-64: the kernel prints addresses as native-endian words.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

from golem_deploy.localnet.nodelay import parse_tcp_table, socket_inode, unix_inodes

FIXTURES = Path(__file__).parent / "fixtures" / "proc_net"

pytestmark = pytest.mark.skipif(
    sys.byteorder != "little", reason="the fixtures were taken on a little-endian machine"
)


def table(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_ipv4_rows_are_decoded() -> None:
    rows = {entry.inode: entry for entry in parse_tcp_table(table("tcp"))}
    assert set(rows) == {0, 1740323, 1740324, 1740325, 1740326, 1740327, 1740334}
    client = rows[1740324]
    assert (str(client.local), str(client.remote), client.state) == ("127.0.0.1", "127.0.0.1", 1)
    assert rows[1740323].state == 10  # LISTEN
    assert str(rows[1740327].local) == "10.1.2.3"
    assert rows[0].state == 6  # TIME_WAIT: no process holds it


def test_ipv6_rows_are_decoded() -> None:
    rows = {entry.inode: entry for entry in parse_tcp_table(table("tcp6"))}
    assert str(rows[1740330].local) == "::1"
    assert rows[1740335].local == ipaddress.IPv6Address("::ffff:127.0.0.1")
    assert rows[1740336].local == ipaddress.IPv6Address("fd00::5")
    assert str(rows[1740333].local) == "::"


def test_only_loopback_sockets_are_ours_to_touch() -> None:
    loopback = {
        entry.inode
        for name in ("tcp", "tcp6")
        for entry in parse_tcp_table(table(name))
        if entry.loopback and entry.inode
    }
    assert loopback == {
        1740323,
        1740324,
        1740325,
        1740334,  # IPv4
        1740330,
        1740331,
        1740332,
        1740335,  # IPv6, and IPv4 on a dual-stack socket
    }


def test_only_the_rows_asked_for_are_decoded() -> None:
    rows = list(parse_tcp_table(table("tcp"), only={1740324, 999}))
    assert [entry.inode for entry in rows] == [1740324]


def test_unix_sockets_are_recognised() -> None:
    assert unix_inodes(table("unix")) == {1740337, 1740338}


def test_malformed_lines_are_skipped() -> None:
    text = table("tcp") + "   7: garbage\n\n"
    assert len(list(parse_tcp_table(text))) == 7


@pytest.mark.parametrize(
    ("link", "inode"),
    [
        ("socket:[1740323]", 1740323),
        ("anon_inode:[eventpoll]", None),
        ("/tmp/x (deleted)", None),
        ("pipe:[123]", None),
    ],
)
def test_socket_inode_of_an_fd_link(link: str, inode: int | None) -> None:
    assert socket_inode(link) == inode
