"""An activity's VPN side reads deploy's `net` and `hosts` as the VM does, and every way it
cannot join is one deploy error (never an internal one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from golem_deploy.localnet.exeunit_vpn import ActivityVpn
from golem_deploy.localnet.tap import TapError
from golem_deploy.localnet.vpn_host import VpnError

NET = {"id": "n1", "ip": "192.168.0.0", "mask": "255.255.255.0", "nodeIp": "192.168.0.3"}


def test_hosts_become_the_sandbox_etc_hosts(tmp_path: Path) -> None:
    vpn = ActivityVpn(None, "0xp", tmp_path / "act")
    assert vpn.hosts_file({}) is None  # no network, no names: the image's own /etc/hosts
    path = vpn.hosts_file({"net": [NET], "hosts": {"web-1": "192.168.0.4", "db": "192.168.0.2"}})
    assert path is not None
    lines = path.read_text().splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-2:] == ["192.168.0.2\tdb", "192.168.0.4\tweb-1"]
    for bad in ({"db": "not-an-ip"}, {"two words": "10.0.0.1"}, ["db"]):
        with pytest.raises(VpnError):
            vpn.hosts_file({"hosts": bad})


class FailingHost:
    async def join(self, *args: Any) -> None:
        raise TapError("cannot create the VPN interface gvpn0: denied", hint="needs root")


def test_every_way_of_not_joining_is_a_vpn_error(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(VpnError, match="has no VPN"):
            await ActivityVpn(None, "0xp", tmp_path).join({"net": [NET]}, tmp_path)
        unsealed = ActivityVpn(FailingHost(), "0xp", tmp_path)  # type: ignore[arg-type]
        with pytest.raises(VpnError, match="runs unsealed"):
            await unsealed.join({"net": [NET]}, None)
        with pytest.raises(VpnError, match=r"deploy: nodeIp 10\.0\.0\.1 is outside"):
            await unsealed.join({"net": [{**NET, "nodeIp": "10.0.0.1"}]}, tmp_path)
        with pytest.raises(VpnError, match="cannot join the VPN: cannot create") as error:
            await unsealed.join({"net": [NET]}, tmp_path)
        assert error.value.hint == "needs root"
        await unsealed.join({}, None)  # no network asked: nothing to do

    anyio.run(main)


class RecordingHost:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def join(self, spec: Any, node_id: str, netns: Path) -> object:
        member = ("member", spec.id)
        self.calls.append(("join", member))
        return member

    def cut(self, member: object) -> None:
        self.calls.append(("cut", member))

    async def leave(self, member: object) -> None:
        self.calls.append(("leave", member))


def test_a_vanishing_activity_cuts_its_interfaces_at_once_and_leaves_later(
    tmp_path: Path,
) -> None:
    host = RecordingHost()
    vpn = ActivityVpn(host, "0xp", tmp_path)  # type: ignore[arg-type]
    member = ("member", "n1")

    async def main() -> None:
        await vpn.join({"net": [NET]}, tmp_path)
        vpn.cut()  # synchronous: ExeUnit.vanish() cannot wait
        assert host.calls == [("join", member), ("cut", member)]
        await vpn.leave()  # the network still forgets it
        await vpn.leave()  # once
        assert host.calls[2:] == [("leave", member)]

    anyio.run(main)
