"""yagna's Net API (VPN) for a requestor: networks, their nodes, TCP into them.

Paths and bodies as yagna 0.17.6 serves them under ``/net-api/v1`` (vpn-protocol.md §1):
``POST /net`` creates a network owned by the app key's identity (its first host is the
requestor's own address), ``POST /net/{id}/nodes`` tells yagna which provider node owns an
address (yagna then sends ``VpnControl`` to the other members), and a WebSocket on
``/net/{id}/tcp/{ip}/{port}`` is one TCP connection from the requestor's stack into the VPN.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from golem_deploy.yagna.client import NET, YagnaClient
from golem_deploy.yagna.errors import YagnaBadAnswer, YagnaStatusError

__all__ = ["NET_API", "NetApi", "NetworkInfo"]

NET_API = NET


@dataclass(frozen=True)
class NetworkInfo:
    """A network as yagna describes it: ``ip`` is the network in CIDR form."""

    id: str
    ip: str
    mask: str
    gateway: str | None


class NetApi:
    """The Net API calls of one requestor yagna, over its :class:`YagnaClient`."""

    def __init__(self, client: YagnaClient) -> None:
        self._client = client

    async def create_network(
        self, ip: str, mask: str | None = None, gateway: str | None = None
    ) -> NetworkInfo:
        body: dict[str, str] = {"ip": ip}
        if mask is not None:
            body["mask"] = mask
        if gateway is not None:
            body["gateway"] = gateway
        # Not retried: a lost answer would leave a second network behind.
        _, answer = await self._client.request("POST", f"{NET_API}/net", body=body, retry=False)
        what = f"POST {NET_API}/net"
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
            raise YagnaBadAnswer(f"expected a network, got {answer!r}", what)
        gateway_answer = answer.get("gateway")
        return NetworkInfo(
            id=answer["id"],
            ip=str(answer.get("ip", ip)),
            mask=str(answer.get("mask", mask or "")),
            gateway=str(gateway_answer) if gateway_answer else None,
        )

    async def remove_network(self, network_id: str) -> None:
        """Delete the network; one that is already gone is fine."""
        try:
            await self._client.request("DELETE", f"{NET_API}/net/{network_id}")
        except YagnaStatusError as e:
            if e.status != 404:
                raise

    async def add_address(self, network_id: str, ip: str) -> None:
        """Give the requestor's own stack another address in the network."""
        await self._client.request("POST", f"{NET_API}/net/{network_id}/addresses", body={"ip": ip})

    async def add_node(self, network_id: str, node_id: str, ip: str) -> None:
        """Say that provider ``node_id`` owns ``ip`` (repeating it is harmless)."""
        body = {"id": node_id.lower(), "ip": ip}
        await self._client.request("POST", f"{NET_API}/net/{network_id}/nodes", body=body)

    async def remove_node(self, network_id: str, node_id: str) -> None:
        try:
            await self._client.request(
                "DELETE", f"{NET_API}/net/{network_id}/nodes/{node_id.lower()}"
            )
        except YagnaStatusError as e:
            if e.status != 404:
                raise

    def tcp_url(self, network_id: str, ip: str, port: int) -> str:
        """The WebSocket URL of a TCP connection to ``ip:port`` in the network."""
        url = self._client.config.url(f"{NET_API}/net/{network_id}/tcp/{ip}/{port}")
        url = url.replace("http://", "ws://", 1)
        return url.replace("https://", "wss://", 1)

    async def connect_tcp(
        self, network_id: str, ip: str, port: int
    ) -> aiohttp.ClientWebSocketResponse:
        """Open a TCP connection into the VPN. yagna connects before it upgrades, so a
        refused or unreachable target is an HTTP error here (504 after its 5 s timeout).
        Pings are answered automatically, which keeps yagna from dropping the socket."""
        return await self._client.session.ws_connect(
            self.tcp_url(network_id, ip, port), max_msg_size=0
        )
