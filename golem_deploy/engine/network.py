"""Golem VPN networks for services: stable addresses, service names, deploy arguments.

The shape is yapapi's (``Golem.create_network`` -> :class:`Network`, ``network.add_node``
-> :class:`Node` with ``get_deploy_args()`` and ``get_websocket_uri(port)``), so yapapi
programs port unchanged. What golem-deploy adds: a ``hosts`` map sent with every deploy
(service names resolve in each instance), and reserved addresses: an instance keeps its
address while it moves between providers, so nobody else takes it in between.
Which instance gets which address is the manifest's decision (manifest/network.py); the
compiler hands it over as a :class:`NetworkPlan`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypedDict

from golem_deploy.engine.connections import Connections
from golem_deploy.errors import GolemDeployError
from golem_deploy.yagna.net import NetApi

__all__ = [
    "DEFAULT_CIDR",
    "DeployArgs",
    "NetEntry",
    "Network",
    "NetworkError",
    "NetworkPlan",
    "Node",
]

DEFAULT_CIDR = "192.168.0.0/24"


class NetworkError(GolemDeployError):
    """A network cannot be made as asked (too small, address taken, outside the range)."""


class NetEntry(TypedDict):
    """One network of the ``deploy`` command, with yagna's names (vpn-protocol.md §1)."""

    id: str
    ip: str
    mask: str
    nodeIp: str  # yagna's name
    nodes: dict[str, str]  # ip -> node id


class DeployArgs(TypedDict, total=False):
    """The network part of the ``deploy`` command's arguments."""

    net: list[NetEntry]
    hosts: dict[str, str]


@dataclass(frozen=True)
class NetworkPlan:
    """A deployment's VPN decided before anything starts (the compiler makes it from the
    manifest): the range, each service's instance addresses in index order, and the
    ``hosts`` map (name -> address) every instance's ``/etc/hosts`` is made from."""

    cidr: str
    addresses: Mapping[str, Sequence[str]]
    hosts: Mapping[str, str]


@dataclass(frozen=True)
class Node:
    """One provider's address in a :class:`Network` (yapapi's ``Node``)."""

    network: Network
    node_id: str
    ip: str
    joined: str | None = None  # the network's id when it joined (it changes: recreate)

    def get_deploy_args(self) -> DeployArgs:
        """The ``deploy`` command's ``net`` (and ``hosts``) for this node, as yagna reads them."""
        net = self.network
        args: DeployArgs = {
            "net": [
                {
                    "id": net.network_id,
                    "ip": net.network_address,
                    "mask": net.netmask,
                    "nodeIp": self.ip,
                    "nodes": dict(net.nodes),
                }
            ]
        }
        if net.hosts:
            args["hosts"] = dict(net.hosts)
        return args

    def get_websocket_uri(self, port: int) -> str:
        """Where a WebSocket is one TCP connection to ``port`` of this node (app key needed)."""
        return self.network.api.tcp_url(self.network.network_id, self.ip, port)


class Network:
    """A VPN owned by the requestor. Made by :meth:`create`; removed from yagna on exit
    (``async with``) or by :meth:`remove`."""

    def __init__(
        self,
        api: NetApi,
        network_id: str,
        network: ipaddress.IPv4Network,
        owner_id: str,
        owner_ip: str,
        gateway: str | None,
    ) -> None:
        self.api = api
        self.network_id = network_id
        self._network = network
        self.owner_id = owner_id.lower()
        self.owner_ip = owner_ip
        self.gateway = gateway
        self.nodes: dict[str, str] = {owner_ip: self.owner_id}  # ip -> node id
        self.hosts: dict[str, str] = {}  # name -> ip, written into every node's /etc/hosts
        # Addresses held for instances between providers: never handed out as "free".
        self._reserved: set[str] = set()
        # ip -> node id: addresses yagna still gives a node that holds other addresses too
        # (it removes nodes, not addresses). Not free until that node leaves: a new node
        # at such an address would lose it when the old one is removed.
        self._lingering: dict[str, str] = {}
        self.removed = False
        # Connections the forwarded ports have open per address (engine/connections.py).
        self.connections = Connections()
        # Told once the network is gone from yagna (the Golem reports it as an event).
        self.on_removed: Callable[[Network], None] | None = None

    @classmethod
    async def create(
        cls,
        api: NetApi,
        ip: str,
        owner_id: str,
        owner_ip: str | None = None,
        mask: str | None = None,
        gateway: str | None = None,
    ) -> Network:
        """Create the network ``ip`` (CIDR, or an address with ``mask``) in yagna."""
        try:
            network = ipaddress.IPv4Network(ip if mask is None else f"{ip}/{mask}", strict=False)
        except ValueError as e:
            raise NetworkError(f"not a network: {ip!r} ({e})") from e
        owner = owner_ip or str(next(network.hosts()))
        if ipaddress.IPv4Address(owner) not in network:
            raise NetworkError(f"owner address {owner} is outside {network}")
        info = await api.create_network(str(network.network_address), str(network.netmask), gateway)
        self = cls(api, info.id, network, owner_id, owner, info.gateway)
        first_host = str(next(network.hosts()))
        if owner != first_host:  # yagna gives the requestor the first host by itself
            await api.add_address(info.id, owner)
        return self

    async def recreate(self) -> str:
        """Create this network again in a yagna that lost it, and return the lost one's id.

        yagna keeps networks in memory only: a requestor daemon started again has none.
        The new one has the same range, requestor address and gateway, and a new id; the
        old one is deleted first in case yagna still has it (only a provider died). Its
        nodes are gone with it (their instances are being replaced), while the reserved
        addresses and the ``hosts`` names stay: each instance comes back at its address."""
        old = self.network_id
        await self.api.remove_network(old)  # gone already: fine (404)
        info = await self.api.create_network(self.network_address, self.netmask, self.gateway)
        if self.owner_ip != str(next(self._network.hosts())):
            await self.api.add_address(info.id, self.owner_ip)
        self.network_id = info.id
        self.nodes = {self.owner_ip: self.owner_id}
        self._lingering.clear()
        return old

    @property
    def network_address(self) -> str:
        return str(self._network.network_address)

    @property
    def netmask(self) -> str:
        return str(self._network.netmask)

    @property
    def cidr(self) -> str:
        return str(self._network)

    def next_free_ip(self) -> str:
        for host in self._network.hosts():
            ip = str(host)
            if ip not in self.nodes and ip not in self._reserved and ip not in self._lingering:
                return str(host)
        raise NetworkError(f"network {self._network} has no free address left")

    def reserve(self, ip: str | None = None) -> str:
        """Hold ``ip`` (the next free address when None) for one instance for as long as
        the network lives, so a replacement on another provider takes over the same one."""
        address = ip or self.next_free_ip()
        self.check_address(address)
        if address in self._reserved:
            raise NetworkError(f"address {address} is already held by another instance")
        self._reserved.add(address)
        return address

    def unreserve(self, ip: str) -> None:
        """Give a reserved address back (nothing will take it over any more)."""
        self._reserved.discard(ip)

    def check_address(self, ip: str) -> None:
        """NetworkError unless ``ip`` is an address a node may take in this network."""
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError as e:
            raise NetworkError(f"not an IPv4 address: {ip!r}") from e
        if address not in self._network:
            raise NetworkError(f"address {ip} is outside {self._network}")
        if address in (self._network.network_address, self._network.broadcast_address):
            raise NetworkError(f"address {ip} is not a host address of {self._network}")
        if ip == self.owner_ip:
            raise NetworkError(f"address {ip} is the requestor's own")

    async def add_node(self, node_id: str, ip: str | None = None) -> Node:
        """Give provider ``node_id`` an address (the next free one unless ``ip`` is given).

        An address may pass from one node to another (a replacement taking over an
        instance's IP): the old owner is forgotten first."""
        address = ip or self.next_free_ip()
        self.check_address(address)
        node_id = node_id.lower()
        previous = self.nodes.get(address) or self._lingering.get(address)
        self._lingering.pop(address, None)
        if previous is not None and previous != node_id:
            # its release could not remove it; yagna would refuse the address as taken
            await self.remove_node(Node(self, previous, address))
        await self.api.add_node(self.network_id, node_id, address)
        self.nodes[address] = node_id
        return Node(self, node_id, address, self.network_id)

    async def remove_node(self, node: Node | str) -> None:
        """Forget ``node``'s address, or every address of a node id (yapapi's form); yagna
        tells the other members. Until yagna confirms, the address stays listed as the
        node's, so a later ``add_node`` tries again."""
        node_id = node.node_id if isinstance(node, Node) else node.lower()
        if isinstance(node, Node) and node.joined not in (None, self.network_id):
            return  # it joined the network before it was re-created: nothing of it is left
        held = [ip for ip, owner in self.nodes.items() if owner == node_id]
        gone = [node.ip] if isinstance(node, Node) else held
        if not set(held) - set(gone):  # yagna removes by node, not address
            await self.api.remove_node(self.network_id, node_id)
            for ip, owner in list(self._lingering.items()):
                if owner == node_id:
                    del self._lingering[ip]
        else:  # the node keeps the address in yagna until it holds none
            self._lingering.update((ip, node_id) for ip in gone)
        for ip in gone:
            if self.nodes.get(ip) == node_id:
                del self.nodes[ip]

    async def remove(self) -> None:
        """Delete the network from yagna (a second call does nothing)."""
        if self.removed:
            return
        await self.api.remove_network(self.network_id)
        self.removed = True
        if self.on_removed is not None:
            self.on_removed(self)

    async def __aenter__(self) -> Network:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.remove()

    def __repr__(self) -> str:
        return f"Network({self.network_id}, {self._network})"
