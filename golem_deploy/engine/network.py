"""Golem VPN networks for services: stable addresses, service names, deploy arguments.

The shape is yapapi's (``Golem.create_network`` -> :class:`Network`, ``network.add_node``
-> :class:`Node` with ``get_deploy_args()`` and ``get_websocket_uri(port)``), so yapapi
programs port unchanged. What golem-deploy adds is pure and sits on top:
:func:`plan_addresses` gives every (service, index) its address before anything starts, so a
replacement after a restart takes over the same IP, and :func:`host_names` turns the plan
into the ``hosts`` map every instance's ``/etc/hosts`` is made from (``db``, ``db-0``, ...).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from golem_deploy.errors import GolemDeployError
from golem_deploy.yagna.net import NetApi

__all__ = [
    "DEFAULT_CIDR",
    "Network",
    "NetworkError",
    "Node",
    "host_names",
    "plan_addresses",
]

DEFAULT_CIDR = "192.168.0.0/24"


class NetworkError(GolemDeployError):
    """A network cannot be made as asked (too small, address taken, outside the range)."""


def plan_addresses(cidr: str, instances: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """An address for every (service, index), in the order given, after the requestor's.

    The requestor (and gateway) is the first host; instances take the next ones. Raises
    NetworkError when the range is too small, with the size it would need.
    """
    network = ipaddress.IPv4Network(cidr, strict=False)
    wanted = [(service, index) for service, count in instances for index in range(count)]
    hosts = network.hosts()
    next(hosts, None)  # the requestor's own address
    plan: dict[tuple[str, int], str] = {}
    for key in wanted:
        address = next(hosts, None)
        if address is None:
            # network and broadcast addresses, the requestor, then every instance
            prefix = 32 - (len(wanted) + 3 - 1).bit_length()
            raise NetworkError(
                f"network {network} has room for {max(network.num_addresses - 3, 0)} "
                f"instances, the deployment has {len(wanted)}",
                hint=f"use a larger range, e.g. /{prefix}",
            )
        plan[key] = str(address)
    return plan


def host_names(plan: Mapping[tuple[str, int], str]) -> dict[str, str]:
    """``<service>-<index>`` for every instance and ``<service>`` for its instance 0."""
    names: dict[str, str] = {}
    for (service, index), ip in plan.items():
        names[f"{service}-{index}"] = ip
        if index == 0:
            names[service] = ip
    return names


@dataclass(frozen=True)
class Node:
    """One provider's address in a :class:`Network` (yapapi's ``Node``)."""

    network: Network
    node_id: str
    ip: str

    def get_deploy_args(self) -> dict[str, Any]:
        """The ``deploy`` command's ``net`` (and ``hosts``) for this node, as yagna reads them."""
        net = self.network
        args: dict[str, Any] = {
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
            if str(host) not in self.nodes:
                return str(host)
        raise NetworkError(f"network {self._network} has no free address left")

    async def add_node(self, node_id: str, ip: str | None = None) -> Node:
        """Give provider ``node_id`` an address (the next free one unless ``ip`` is given).

        An address may pass from one node to another (a replacement taking over an
        instance's IP): the old owner is forgotten first."""
        address = ip or self.next_free_ip()
        if ipaddress.IPv4Address(address) not in self._network:
            raise NetworkError(f"address {address} is outside {self._network}")
        if address == self.owner_ip:
            raise NetworkError(f"address {address} is the requestor's own")
        self.nodes[address] = node_id.lower()
        await self.api.add_node(self.network_id, node_id, address)
        return Node(self, node_id.lower(), address)

    async def remove_node(self, node: Node) -> None:
        """Forget ``node``'s address (yagna tells the other members)."""
        if self.nodes.get(node.ip) == node.node_id:
            del self.nodes[node.ip]
        if node.node_id not in self.nodes.values():  # yagna removes by node, not address
            await self.api.remove_node(self.network_id, node.node_id)

    async def remove(self) -> None:
        await self.api.remove_network(self.network_id)

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
