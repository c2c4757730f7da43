"""A VPN created again in a yagna that lost it (its requestor daemon restarted: yagna keeps
networks in memory only): same range and requestor address, a new id, no nodes of the old
one, but every reserved address and name kept so instances come back where they were."""

from __future__ import annotations

import ipaddress

import anyio
import pytest

from golem_deploy.engine.network import Network, NetworkError
from golem_deploy.engine.proxy import TcpProxy
from golem_deploy.yagna.net import NetApi, NetworkInfo


class FakeYagnaNets(NetApi):
    """The Net API calls Network makes, answered from memory (the real ones are integration
    tested): networks get ids net-1, net-2, ..."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.created = 0

    async def create_network(
        self, ip: str, mask: str | None = None, gateway: str | None = None
    ) -> NetworkInfo:
        self.created += 1
        self.calls.append(("create", ip, str(mask)))
        return NetworkInfo(f"net-{self.created}", ip, str(mask), gateway)

    async def add_address(self, network_id: str, ip: str) -> None:
        self.calls.append(("address", network_id, ip))

    async def add_node(self, network_id: str, node_id: str, ip: str) -> None:
        self.calls.append(("add", network_id, node_id, ip))

    async def remove_node(self, network_id: str, node_id: str) -> None:
        self.calls.append(("remove", network_id, node_id))

    async def remove_network(self, network_id: str) -> None:
        self.calls.append(("remove network", network_id))


def test_a_recreated_network_keeps_range_owner_addresses_and_names() -> None:
    api = FakeYagnaNets()

    async def main() -> None:
        network = await Network.create(api, "10.8.0.0/24", "0xREQ", owner_ip="10.8.0.9")
        network.hosts.update({"web-0": "10.8.0.2", "web-1": "10.8.0.3"})
        for ip in ("10.8.0.2", "10.8.0.3"):
            network.reserve(ip)
        old_node = await network.add_node("0xP", "10.8.0.2")
        api.calls.clear()

        assert await network.recreate() == "net-1"

        assert network.network_id == "net-2" and network.cidr == "10.8.0.0/24"
        assert api.calls == [
            ("remove network", "net-1"),  # in case yagna still has it
            ("create", "10.8.0.0", "255.255.255.0"),
            ("address", "net-2", "10.8.0.9"),  # the requestor's address as before
        ]
        assert network.nodes == {"10.8.0.9": "0xreq"}  # the old nodes went with it
        assert network.hosts == {"web-0": "10.8.0.2", "web-1": "10.8.0.3"}
        for ip in ("10.8.0.2", "10.8.0.3"):  # still held for their instances
            with pytest.raises(NetworkError, match="already held"):
                network.reserve(ip)
        api.calls.clear()

        # The lost instance's release comes late: it must not touch the new network,
        # where the same provider may be back at the same address already.
        new_node = await network.add_node("0xP", "10.8.0.2")
        await network.remove_node(old_node)
        assert api.calls == [("add", "net-2", "0xp", "10.8.0.2")]
        assert network.nodes["10.8.0.2"] == "0xp"
        assert new_node.get_deploy_args()["net"][0]["id"] == "net-2"
        await network.remove_node(new_node)
        assert api.calls[-1] == ("remove", "net-2", "0xp")

    anyio.run(main)


def test_a_proxy_follows_the_current_network_id() -> None:
    api = FakeYagnaNets()
    api.created = 1  # net-1 exists
    network = Network(api, "net-1", ipaddress.IPv4Network("10.0.0.0/24"), "0xREQ", "10.0.0.1", None)
    proxy = TcpProxy(network.api, lambda: network.network_id, 8000, lambda: [])
    assert proxy.network_id == "net-1"
    anyio.run(network.recreate)
    assert proxy.network_id == "net-2"
    assert TcpProxy(network.api, "fixed", 8000, lambda: []).network_id == "fixed"
