"""The provider side of Golem's VPN for every local activity, over one bus connection.

A requestor's yagna sends each Ethernet frame for a provider to
``/net/<provider id>/vpn/<net id>/raw``; the provider's yagna delivers it to whoever bound
``/public/vpn/<net id>`` on its bus (vpn-protocol.md §2-3). All local providers are
identities of ONE provider yagna node, so that address is shared by every local activity in
the network: :class:`VpnHost` binds it once per network, and a pure
:class:`~golem_deploy.localnet.vpn.VpnSwitch` decides which activity's TAP gets each frame
(and where the frames a TAP emits go). Frames are answered at once (central-net mode sends
the next frame only after the reply) and written before anything slow happens.

Lifetime: ``async with VpnHost.connect(gsb_url) as vpn:``; activities ``join`` with the
``net`` entry of their ``deploy`` command and ``leave`` when they end.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from golem_deploy.errors import GolemDeployError
from golem_deploy.localnet.gsb import GsbClient, GsbError, IncomingCall
from golem_deploy.localnet.tap import configure_tap, open_tap
from golem_deploy.localnet.vpn import VpnSwitch, parse_vpn_control

__all__ = ["NetSpec", "VpnError", "VpnHost", "VpnMembership"]

log = logging.getLogger(__name__)

MAX_FRAME = 65535
TAP_NAME = "gvpn0"
"""The VPN interface's name inside every activity (each has its own namespace)."""


class VpnError(GolemDeployError):
    """A ``deploy`` asked for a VPN this host cannot join."""


@dataclass(frozen=True)
class NetSpec:
    """One entry of the ``deploy`` command's ``net`` list (yagna's ``Network``)."""

    id: str
    network: str  # "192.168.0.0/24"
    node_ip: str  # this activity's address
    nodes: Mapping[str, str]  # ip -> node id, the requestor and other members

    @classmethod
    def from_deploy(cls, entry: object) -> NetSpec:
        """Read ``{"id", "ip", "mask"?, "nodeIp", "nodes"}``; ValueError says what is wrong."""
        if not isinstance(entry, dict):
            raise ValueError(f"deploy net entry must be an object, got {entry!r}")
        try:
            net_id, ip, node_ip = str(entry["id"]), str(entry["ip"]), str(entry["nodeIp"])
        except KeyError as exc:
            raise ValueError(f"deploy net entry lacks {exc}") from exc
        mask = entry.get("mask") or "255.255.255.0"
        try:
            network = ipaddress.IPv4Network(f"{ip.split('/')[0]}/{mask}", strict=False)
            if ipaddress.IPv4Address(node_ip) not in network:
                raise ValueError(f"nodeIp {node_ip} is outside {network}")
        except ipaddress.AddressValueError as exc:
            raise ValueError(f"deploy net entry: {exc}") from exc
        nodes = entry.get("nodes") or {}
        if not isinstance(nodes, dict):
            raise ValueError("deploy net entry: nodes must map IPs to node ids")
        return cls(net_id, str(network), node_ip, {str(k): str(v) for k, v in nodes.items()})


@dataclass(eq=False)
class VpnMembership:
    """One activity's interface in one network (a port of that network's switch)."""

    spec: NetSpec
    node_id: str
    fd: int
    closed: bool = False


class VpnHost:
    """Every VPN network of this host's activities. Create with :meth:`connect`."""

    def __init__(self, bus: GsbClient, tg: TaskGroup) -> None:
        self._bus = bus
        self._tg = tg
        self._switches: dict[str, VpnSwitch[VpnMembership]] = {}
        self._lock = anyio.Lock()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, gsb_url: str) -> AsyncIterator[VpnHost]:
        async with (
            GsbClient.connect(gsb_url, name="vpn") as bus,
            anyio.create_task_group() as tg,
        ):
            host = cls(bus, tg)
            try:
                yield host
            finally:
                tg.cancel_scope.cancel()
                for switch in host._switches.values():
                    for port in switch.ports():
                        host._close(port)

    async def join(self, spec: NetSpec, node_id: str, netns: Path) -> VpnMembership:
        """Give the namespace ``netns`` its VPN interface at ``spec.node_ip``; start pumping."""
        fd = await anyio.to_thread.run_sync(open_tap, netns, TAP_NAME)
        member = VpnMembership(spec, node_id.lower(), fd)
        try:
            await anyio.to_thread.run_sync(
                configure_tap, netns, TAP_NAME, spec.node_ip, spec.network
            )
            async with self._lock:
                switch = self._switches.get(spec.id)
                if switch is None:
                    switch = VpnSwitch(spec.id)
                    await self._bus.register(f"/public/vpn/{spec.id}", self._on_call)
                    self._switches[spec.id] = switch
                switch.attach(spec.node_ip, member, spec.nodes)
        except BaseException:
            self._close(member)
            raise
        self._tg.start_soon(self._pump, switch, member)
        return member

    async def leave(self, member: VpnMembership) -> None:
        """Remove the interface; unbind the network when it was the last one here."""
        self._close(member)
        async with self._lock:
            switch = self._switches.get(member.spec.id)
            if switch is not None and switch.detach(member):
                del self._switches[member.spec.id]
                with contextlib.suppress(GsbError):
                    await self._bus.unregister(f"/public/vpn/{member.spec.id}")

    def cut(self, member: VpnMembership) -> None:
        """Remove the interface at once, without waiting (a vanishing provider's activity:
        not one more frame in or out); :meth:`leave` still unbinds it from its network."""
        self._close(member)

    def _close(self, member: VpnMembership) -> None:
        if not member.closed:
            member.closed = True
            anyio.notify_closing(member.fd)  # wakes the pump waiting on it
            with contextlib.suppress(OSError):
                os.close(member.fd)  # the device disappears with its last descriptor

    async def _on_call(self, call: IncomingCall) -> None:
        net_id = call.address.removeprefix("/public/vpn/").split("/")[0]
        switch = self._switches.get(net_id)
        if call.method in ("raw", "VpnPacket"):
            frame = call.data if call.method == "raw" else bytes(call.payload())
            if switch is not None:
                for port in switch.ingress(frame, call.caller):
                    _write(port, frame)
            if call.no_reply:
                call.answered = True  # a push: the router expects nothing back
            else:
                await call.reply(b"" if call.method == "raw" else {"Ok": None})
        elif call.method == "VpnControl" and switch is not None:
            try:
                switch.control(parse_vpn_control(call.payload()))
            except ValueError as exc:
                await call.reply({"Err": {"BadRequest": str(exc)}})
                return
            await call.reply({"Ok": None})
        else:
            await call.reply({"Err": {"BadRequest": f"unknown VPN call {call.address}"}})

    async def _pump(self, switch: VpnSwitch[VpnMembership], member: VpnMembership) -> None:
        """Frames the activity's kernel sends: to other local interfaces, or over the bus."""
        net_id = member.spec.id
        while not member.closed:
            try:
                await anyio.wait_readable(member.fd)
                frame = os.read(member.fd, MAX_FRAME)
            except BlockingIOError:
                continue
            except (OSError, anyio.ClosedResourceError):
                return  # the interface was closed: the activity left
            delivery = switch.egress(frame, member)
            for port in delivery.local:
                _write(port, frame)
            for node in delivery.remote:
                try:
                    await self._bus.push_raw(
                        f"/udp/net/{node}/vpn/{net_id}/raw", frame, caller=member.node_id
                    )
                except GsbError as exc:
                    log.warning("VPN %s: cannot send a frame to %s: %s", net_id, node, exc)
                    return


def _write(member: VpnMembership, frame: bytes) -> None:
    """One frame into a TAP; a full queue drops it, like a congested link."""
    if member.closed:
        return
    with contextlib.suppress(BlockingIOError, OSError):
        os.write(member.fd, frame)
