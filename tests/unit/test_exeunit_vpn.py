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
