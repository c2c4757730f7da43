"""A deployment's VPN in the engine (pure parts): addresses kept per instance, deploy
arguments, the plan the compiler hands over."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import anyio
import pytest

from golem_deploy.compiler import network_plan
from golem_deploy.engine.golem import EngineError, _reserve
from golem_deploy.engine.network import Network, NetworkError, Node
from golem_deploy.engine.service import Service, record_of
from golem_deploy.manifest import load_manifest
from golem_deploy.yagna.net import NetApi

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"


def _network(cidr: str = "192.168.0.0/24") -> Network:
    net = ipaddress.IPv4Network(cidr)
    owner = str(next(net.hosts()))
    return Network(NetApi.__new__(NetApi), "abc", net, "0xREQ", owner, None)  # no request made


def test_deploy_arguments_carry_the_network_the_node_and_the_names() -> None:
    network = _network()
    network.nodes["192.168.0.2"] = "0xp1"
    network.hosts.update({"db": "192.168.0.2"})
    node = Node(network, "0xp1", "192.168.0.2")
    assert node.get_deploy_args() == {
        "net": [
            {
                "id": "abc",
                "ip": "192.168.0.0",
                "mask": "255.255.255.0",
                "nodeIp": "192.168.0.2",
                "nodes": {"192.168.0.1": "0xreq", "192.168.0.2": "0xp1"},
            }
        ],
        "hosts": {"db": "192.168.0.2"},
    }
    assert network.next_free_ip() == "192.168.0.3"


def test_a_reserved_address_is_never_handed_out_again() -> None:
    """An instance between providers is on no node, but its address stays its own."""
    network = _network()
    assert network.reserve("192.168.0.3") == "192.168.0.3"
    assert network.reserve() == "192.168.0.2"
    assert network.next_free_ip() == "192.168.0.4"
    with pytest.raises(NetworkError, match="already held"):
        network.reserve("192.168.0.3")


@pytest.mark.parametrize(
    ("ip", "why"),
    [
        ("10.0.0.2", "outside"),
        ("192.168.0.1", "requestor's own"),
        ("192.168.0.0", "not a host address"),
        ("192.168.0.255", "not a host address"),
        ("nonsense", "not an IPv4 address"),
    ],
)
def test_addresses_a_node_cannot_take(ip: str, why: str) -> None:
    with pytest.raises(NetworkError, match=why):
        _network().check_address(ip)


def test_a_full_network_says_so() -> None:
    network = _network("10.0.0.0/30")  # two hosts: the requestor and one instance
    network.reserve()
    with pytest.raises(NetworkError, match="no free address left"):
        network.reserve()


def test_a_service_off_any_network_deploys_without_arguments() -> None:
    service = Service()
    assert service.network is None and service.network_node is None
    assert service.get_deploy_args() == {}
    assert service.snapshot().ip is None


def test_a_service_on_a_network_deploys_with_its_node() -> None:
    network = _network()
    service = Service()
    record = record_of(service)  # what the engine sets when it spawns the instance
    record.network = network
    record.network_address = "192.168.0.5"
    service._network_node = Node(network, "0xp1", "192.168.0.5")
    assert service.get_deploy_args()["net"][0]["nodeIp"] == "192.168.0.5"
    assert service.snapshot().ip == "192.168.0.5"
    # between providers: no node, no deploy arguments, but the address is still its own
    service._network_node = None
    assert service.get_deploy_args() == {}
    assert service.snapshot().ip == "192.168.0.5"


def _manifest(tmp_path: Path, top: str) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(
        f"budget: 1\n{top}services:\n"
        f"  db:\n    payload: {{image_hash: {HASH}}}\n"
        f"  web:\n    instances: 2\n    payload: {{image_hash: {HASH}}}\n"
    )
    return path


def test_the_compiler_hands_the_manifests_plan_to_the_engine(tmp_path: Path) -> None:
    plan = network_plan(load_manifest(_manifest(tmp_path, "network: {cidr: 10.8.0.0/24}\n")))
    assert plan is not None
    assert plan.cidr == "10.8.0.0/24"
    assert {k: list(v) for k, v in plan.addresses.items()} == {
        "db": ["10.8.0.2"],
        "web": ["10.8.0.3", "10.8.0.4"],
    }
    assert plan.hosts == {
        "db": "10.8.0.2",
        "db-0": "10.8.0.2",
        "web": "10.8.0.3",
        "web-0": "10.8.0.3",
        "web-1": "10.8.0.4",
    }


def test_no_network_no_plan(tmp_path: Path) -> None:
    assert network_plan(load_manifest(_manifest(tmp_path, "network: false\n"))) is None


class RecordingNetApi(NetApi):
    """Records the Net API calls instead of making them (the real ones are integration
    tested); only what Network calls is overridden."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    async def add_node(self, network_id: str, node_id: str, ip: str) -> None:
        self.calls.append(("add", node_id, ip))

    async def remove_node(self, network_id: str, node_id: str) -> None:
        self.calls.append(("remove", node_id, ""))

    async def remove_network(self, network_id: str) -> None:
        self.calls.append(("remove network", network_id, ""))


def _recording() -> tuple[Network, RecordingNetApi]:
    api = RecordingNetApi()
    net = Network(api, "abc", ipaddress.IPv4Network("10.0.0.0/24"), "0xREQ", "10.0.0.1", None)
    return net, api


def test_a_replacement_takes_over_an_address_its_predecessor_still_holds() -> None:
    """The predecessor's release could not remove it: yagna would refuse the address."""
    network, api = _recording()

    async def main() -> None:
        await network.add_node("0xOLD", "10.0.0.2")
        node = await network.add_node("0xNEW", "10.0.0.2")
        assert (node.node_id, node.ip) == ("0xnew", "10.0.0.2")
        await network.add_node("0xnew", "10.0.0.2")  # repeating it is harmless

    anyio.run(main)
    assert api.calls == [
        ("add", "0xold", "10.0.0.2"),
        ("remove", "0xold", ""),
        ("add", "0xnew", "10.0.0.2"),
        ("add", "0xnew", "10.0.0.2"),
    ]
    assert network.nodes == {"10.0.0.1": "0xreq", "10.0.0.2": "0xnew"}


def test_a_node_is_removed_from_yagna_once_it_holds_no_address() -> None:
    network, api = _recording()

    async def main() -> None:
        first = await network.add_node("0xP", "10.0.0.2")
        await network.add_node("0xP", "10.0.0.3")  # one provider, two instances
        await network.remove_node(first)
        assert api.calls[-1][0] == "add"  # it still holds .3
        await network.remove_node("0xP")  # yapapi's form: by node id
        assert api.calls[-1] == ("remove", "0xp", "")

    anyio.run(main)
    assert network.nodes == {"10.0.0.1": "0xreq"}


def test_an_address_yagna_still_gives_a_node_is_not_free_until_the_node_leaves() -> None:
    """yagna removes nodes, not addresses: a provider running a renewal's successor beside
    the instance it replaces keeps the old address in yagna after that instance ended. A
    new node at that address would lose it when the provider leaves (a request hanging
    until the instance is replaced), so the address is handed out only after that."""
    network, api = _recording()

    async def main() -> None:
        old = await network.add_node("0xP", network.next_free_ip())
        assert old.ip == "10.0.0.2"
        successor = await network.add_node("0xP", network.next_free_ip())  # same provider
        await network.remove_node(old)
        assert network.next_free_ip() == "10.0.0.4"  # .2 is still 0xp's in yagna
        elsewhere = await network.add_node("0xQ", network.next_free_ip())
        await network.remove_node(successor)  # 0xp leaves: now .2 is free
        assert api.calls[-1] == ("remove", "0xp", "")
        assert network.next_free_ip() == "10.0.0.2"
        assert elsewhere.ip == "10.0.0.4"

    anyio.run(main)


def test_removing_the_network_reports_once() -> None:
    network, api = _recording()
    removed: list[str] = []
    network.on_removed = lambda n: removed.append(n.network_id)

    async def main() -> None:
        async with network:
            pass
        await network.remove()

    anyio.run(main)
    assert removed == ["abc"] and network.removed
    assert api.calls == [("remove network", "abc", "")]


@pytest.mark.parametrize(
    ("addresses", "why"),
    [
        (["10.0.0.2", "10.0.0.2"], "duplicates"),
        (["10.0.0.1"], "requestor's own"),
        (["10.9.0.2"], "outside"),
    ],
)
def test_planned_addresses_are_checked_before_anything_starts(
    addresses: list[str], why: str
) -> None:
    network, _ = _recording()
    with pytest.raises(EngineError, match=why):
        _reserve(network, addresses)


def test_planned_addresses_need_a_network() -> None:
    with pytest.raises(EngineError, match="without a network"):
        _reserve(None, ["10.0.0.2"])
    assert _reserve(None, None) == ()
    network, _ = _recording()
    assert _reserve(network, ["10.0.0.9", "10.0.0.3"]) == ("10.0.0.9", "10.0.0.3")
    assert network.reserve() == "10.0.0.2"  # the planned ones are taken
    assert network.reserve() == "10.0.0.4"
    with pytest.raises(EngineError, match=r"10\.0\.0\.9 is already held"):
        _reserve(network, ["10.0.0.5", "10.0.0.9"])
    assert network.reserve() == "10.0.0.5"  # a refused plan holds nothing
