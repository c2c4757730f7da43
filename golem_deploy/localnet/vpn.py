"""The provider side of Golem's VPN as a pure switch: which frame goes where (no I/O).

On the Golem network every activity of a VPN-enabled VM has a virtual Ethernet interface;
the provider's exe-unit pumps Ethernet frames between it and the service bus (vpn-protocol.md
§2). Our local providers are identities on ONE provider yagna node, so the bus address
``/public/vpn/{net}/raw`` of a network is shared by every local activity in it: one
:class:`VpnSwitch` per network decides, for each frame, which local interfaces get it and
which remote nodes it is sent to -- the way yagna's exe-unit does (vpn.rs):

* routing is by destination: the IPv4 destination, or the target address (TPA) of an ARP
  frame; ``255.255.255.255`` goes to everyone; IPv6 and anything else is dropped;
* remote endpoints (IP -> node id) come from the ``deploy`` command's ``nodes``, from
  ``VpnControl`` ``addNodes``/``removeNodes``, and are learned from incoming frames (the
  sender's IP for a node not known yet);
* a frame between two local interfaces never leaves the process (a switch, not a hairpin
  through the hub).

Byte offsets (Ethernet II, no FCS): EtherType [12:14]; ARP PTYPE [16:18], SPA [28:32],
TPA [38:42]; IPv4 version [14] >> 4, source [26:30], destination [30:34].
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "Delivery",
    "VpnControl",
    "VpnSwitch",
    "destination",
    "parse_vpn_control",
    "source",
]

ETH_ARP = b"\x08\x06"
ETH_IPV4 = b"\x08\x00"
BROADCAST = b"\xff\xff\xff\xff"

Port = TypeVar("Port", bound=Hashable)
"""What the switch delivers local frames to (an activity's TAP, in the ExeUnit)."""


def _ip(frame: bytes, at: int) -> bytes | None:
    packed = frame[at : at + 4]
    return packed if len(packed) == 4 else None


def destination(frame: bytes) -> bytes | None:
    """The packed IPv4 address a frame is for (ARP target / IPv4 destination), or None."""
    kind = frame[12:14]
    if kind == ETH_ARP:
        return _ip(frame, 38) if frame[16:18] == ETH_IPV4 else None
    if kind == ETH_IPV4 and len(frame) > 14 and frame[14] >> 4 == 4:
        return _ip(frame, 30)
    return None


def source(frame: bytes) -> bytes | None:
    """The packed IPv4 address a frame comes from (ARP sender / IPv4 source), or None."""
    kind = frame[12:14]
    if kind == ETH_ARP:
        return _ip(frame, 28) if frame[16:18] == ETH_IPV4 else None
    if kind == ETH_IPV4 and len(frame) > 14 and frame[14] >> 4 == 4:
        return _ip(frame, 26)
    return None


def packed(ip: str) -> bytes:
    return ipaddress.IPv4Address(ip).packed


@dataclass(frozen=True)
class VpnControl:
    """A decoded ``VpnControl`` bus message: nodes joined (``add``) or left (``remove``)."""

    network_id: str
    add: Mapping[str, str] = field(default_factory=dict)  # ip -> node id
    remove: frozenset[str] = frozenset()  # node ids


def parse_vpn_control(payload: object) -> VpnControl:
    """Read yagna's externally tagged enum: ``{"addNodes": {...}}`` / ``{"removeNodes": ...}``.

    Raises ValueError for anything else (the caller answers the bus call with an error).
    """
    if isinstance(payload, dict) and len(payload) == 1:
        ((tag, body),) = payload.items()
        if isinstance(body, dict) and isinstance(body.get("network_id"), str):
            if tag == "addNodes" and isinstance(body.get("nodes"), dict):
                nodes = {str(ip): str(node).lower() for ip, node in body["nodes"].items()}
                return VpnControl(body["network_id"], add=nodes)
            if tag == "removeNodes" and isinstance(body.get("node_ids"), list):
                ids = frozenset(str(node).lower() for node in body["node_ids"])
                return VpnControl(body["network_id"], remove=ids)
    raise ValueError(f"not a VpnControl message: {payload!r}")


@dataclass
class Delivery(Generic[Port]):
    """Where one frame goes: local ports to write it to, remote nodes to send it to."""

    local: list[Port] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)


class VpnSwitch(Generic[Port]):
    """One VPN network as seen by this host: local ports by IP, remote nodes by IP."""

    def __init__(self, network_id: str) -> None:
        self.network_id = network_id
        self._local: dict[bytes, Port] = {}
        self._remote: dict[bytes, str] = {}

    def attach(self, ip: str, port: Port, nodes: Mapping[str, str]) -> None:
        """A local activity joined at ``ip``; ``nodes`` is its deploy's ``{ip: node id}``."""
        self._local[packed(ip)] = port
        self.add_nodes(nodes)

    def detach(self, port: Port) -> bool:
        """Forget ``port``; True when no local port is left (the network can be unbound)."""
        for ip, existing in list(self._local.items()):
            if existing == port:
                del self._local[ip]
        return not self._local

    def ports(self) -> list[Port]:
        return list(dict.fromkeys(self._local.values()))

    def add_nodes(self, nodes: Mapping[str, str]) -> None:
        for ip, node_id in nodes.items():
            key = packed(ip)
            if key not in self._local:  # our own addresses are delivered locally
                self._remote[key] = node_id.lower()

    def remove_nodes(self, node_ids: frozenset[str]) -> None:
        for ip, node_id in list(self._remote.items()):
            if node_id in node_ids:
                del self._remote[ip]

    def control(self, message: VpnControl) -> None:
        self.add_nodes(message.add)
        self.remove_nodes(message.remove)

    def ingress(self, frame: bytes, caller: str) -> list[Port]:
        """A frame from the bus (sent by node ``caller``): the local ports that get it."""
        sender = source(frame)
        caller = caller.lower()
        if (
            sender is not None
            and sender not in self._local
            and sender not in self._remote
            and caller not in self._remote.values()
        ):
            self._remote[sender] = caller  # learned before delivery, like yagna's exe-unit
        target = destination(frame)
        if target is None:
            return []
        if target == BROADCAST:
            return list(dict.fromkeys(self._local.values()))
        port = self._local.get(target)
        return [port] if port is not None else []

    def egress(self, frame: bytes, sender: Port) -> Delivery[Port]:
        """A frame a local port wrote: other local ports and remote nodes that get it."""
        target = destination(frame)
        if target is None:
            return Delivery()
        if target == BROADCAST:
            local = [port for port in dict.fromkeys(self._local.values()) if port != sender]
            return Delivery(local, sorted(set(self._remote.values())))
        port = self._local.get(target)
        if port is not None:
            return Delivery([port] if port != sender else [])
        node = self._remote.get(target)
        return Delivery(remote=[node] if node is not None else [])
