"""A deployment's VPN and forwarded ports, while the supervisor runs it.

Each `ports` entry of a service becomes one local listener (a :class:`TcpProxy`) that pipes
every accepted connection into the VPN to one running instance of the service, round robin.
Listeners are bound when the supervisor starts, before anything is negotiated (`up` checked
the ports even earlier: supervisor/ports.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from golem_deploy.engine.connections import Connections
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.proxy import TcpProxy
from golem_deploy.manifest.model import Manifest, PortSpec
from golem_deploy.supervisor.snapshot import PortView, VpnView
from golem_deploy.yagna.net import NetApi

if TYPE_CHECKING:
    from golem_deploy.engine import Cluster, Golem
    from golem_deploy.engine.network import Network, NetworkPlan

__all__ = ["DeploymentVpn", "Forward", "PortForwards"]


@dataclass
class Forward:
    """One listening forward: what the table and `status --json` show."""

    service: str
    spec: PortSpec
    proxy: TcpProxy
    host_port: int  # the bound port (chosen by the system when spec.host_port is None)

    def describe(self) -> str:
        return f"{self.spec.host}:{self.host_port} -> {self.service}:{self.spec.port}"


def _targets_of(
    targets: Callable[[str], Sequence[str]], service: str
) -> Callable[[], Sequence[str]]:
    return lambda: targets(service)


class PortForwards:
    """Every forwarded port of a deployment, listening while the deployment lives."""

    def __init__(self) -> None:
        self.forwards: list[Forward] = []
        self._scopes: list[anyio.CancelScope] = []  # one per listener: a scope is single-use

    async def open(
        self,
        tg: TaskGroup,
        manifest: Manifest,
        api: NetApi,
        network_id: str | Callable[[], str],
        targets: Callable[[str], Sequence[str]],
        draining: Callable[[str], Sequence[str]] = lambda service: (),
        connections: Connections | None = None,
    ) -> None:
        """Bind every listener (PortInUse at the first that cannot be) and serve them in
        ``tg`` into ``network_id`` (a function: the current id of a network that may be
        created again, Network.recreate); ``targets(service)`` lists the addresses of its
        running instances, ``draining(service)`` those a renewal replaced that finish their
        connections."""
        for name, spec in manifest.services.items():
            for forward in spec.ports:
                proxy = TcpProxy(
                    api,
                    network_id,
                    forward.port,
                    _targets_of(targets, name),
                    _targets_of(draining, name),
                    connections,
                )
                bound = await tg.start(self._serve, proxy, forward)
                self.forwards.append(Forward(name, forward, proxy, bound))

    async def _serve(
        self, proxy: TcpProxy, forward: PortSpec, *, task_status: anyio.abc.TaskStatus[int]
    ) -> None:
        scope = anyio.CancelScope()
        self._scopes.append(scope)
        with scope:
            await proxy.serve(forward.host, forward.host_port or 0, task_status=task_status)

    def close(self) -> None:
        """Stop listening (`down` does this first, so no new connection starts)."""
        for scope in self._scopes:
            scope.cancel()

    def refused(self) -> int:
        return sum(forward.proxy.stats.refused for forward in self.forwards)


class DeploymentVpn:
    """The deployment's network: made before anything is negotiated, its forwards serving
    while the deployment lives, removed by the engine when the Golem ends."""

    def __init__(self, network: Network, plan: NetworkPlan) -> None:
        self.network = network
        self.plan = plan
        self.forwards = PortForwards()

    @classmethod
    async def open(
        cls,
        golem: Golem,
        plan: NetworkPlan,
        manifest: Manifest,
        tg: TaskGroup,
        clusters: Callable[[str], Sequence[Cluster]],
    ) -> DeploymentVpn:
        """Create the VPN with its names, then bind every forwarded port (PortInUse).
        `clusters(service)` lists the service's clusters (more than one while a change
        replaces its instances: the old ones serve until their replacements run)."""
        network = await golem.create_network(plan.cidr)
        network.hosts.update(plan.hosts)
        vpn = cls(network, plan)

        def running(service: str) -> list[str]:
            views = [i.snapshot() for cluster in clusters(service) for i in cluster.serving]
            return [v.ip for v in views if v.ip and v.state is ServiceState.running]

        def draining(service: str) -> list[str]:
            views = [i.snapshot() for cluster in clusters(service) for i in cluster.draining]
            return [v.ip for v in views if v.ip and v.state is ServiceState.running]

        def network_id() -> str:  # it changes when the network is created again
            return network.network_id

        await vpn.forwards.open(
            tg, manifest, network.api, network_id, running, draining, network.connections
        )
        return vpn

    def addresses(self) -> list[list[str | int]]:
        """[service, index, ip] for every planned instance (journaled for `status`)."""
        return [
            [service, index, ip]
            for service, ips in self.plan.addresses.items()
            for index, ip in enumerate(ips)
        ]

    def ports(self) -> list[PortView]:
        return [
            PortView(f.service, f.spec.host, f.host_port, f.spec.port)
            for f in self.forwards.forwards
        ]

    def view(self) -> VpnView:
        return VpnView(self.network.network_id, self.network.cidr)
