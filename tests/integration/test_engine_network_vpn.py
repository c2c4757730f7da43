"""Services on a VPN against the real local network: what the engine tells yagna's Net API.

Every instance's provider is a node of the network at the instance's address (read back
with `GET /net-api/v1/net/{id}/nodes`), the deploy command carries the network and the
hosts, a replacement on another provider (after the first one died) takes over the same
address, and the network is gone from yagna once the Golem exits. (Traffic between
instances needs the local ExeUnit's VPN side; test_engine_probe.py covers the path
through yagna's TCP WebSocket.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _engine_helpers import Recorder, _payload, golem_for, wait_for

from golem_deploy.engine import Golem, RestartPolicy, Service, ServiceState
from golem_deploy.engine import events as ev
from golem_deploy.engine.payload import VmPayload
from golem_deploy.localnet import LocalNetInfo
from golem_deploy.yagna.net import NET_API

pytestmark = [pytest.mark.localnet, pytest.mark.anyio]


class Networked(Service):
    """Keeps the deploy command of every start it sends (the default start's script)."""

    deploys: list[dict[str, Any]]

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.deploys = []

    @staticmethod
    async def get_payload() -> VmPayload:
        return await _payload()

    async def start(self) -> AsyncIterator[Any]:
        async for script in super().start():
            self.deploys.append(script.steps[0].command["deploy"])
            yield script


class Restarting(Networked):
    restart = RestartPolicy(policy="on-failure", max_restarts=2, backoff=0.2)


async def nodes(golem: Golem, network_id: str) -> dict[str, str]:
    """ip -> node id, as yagna lists the network's nodes."""
    _, answer = await golem.client.request("GET", f"{NET_API}/net/{network_id}/nodes")
    return {node["ip"]: node["id"].lower() for node in answer}


async def networks(golem: Golem) -> set[str]:
    _, answer = await golem.client.request("GET", f"{NET_API}/net")
    return {network["id"] for network in answer}


async def test_instances_are_nodes_at_their_planned_addresses(
    shared_localnet: LocalNetInfo,
) -> None:
    rec = Recorder()
    hosts = {"web": "192.168.20.7", "web-0": "192.168.20.7", "web-1": "192.168.20.9"}
    async with golem_for(shared_localnet, rec) as golem:
        network = await golem.create_network("192.168.20.0/24")
        network.hosts.update(hosts)
        assert network.network_id in await networks(golem)
        cluster = await golem.run_service(
            Networked,
            num_instances=2,
            network=network,
            network_addresses=["192.168.20.7", "192.168.20.9"],
        )
        assert cluster.network is network
        await wait_for(
            lambda: all(i.state is ServiceState.running for i in cluster.instances),
            60,
            "both instances running",
        )
        listed = await nodes(golem, network.network_id)
        instances: list[Networked] = cluster.instances  # type: ignore[assignment]
        for instance, ip in zip(instances, ["192.168.20.7", "192.168.20.9"], strict=True):
            assert listed[ip] == (instance.provider_id or "").lower()
            assert instance.snapshot().ip == ip
            node = instance.network_node
            assert node is not None and (node.ip, node.node_id) == (ip, listed[ip])
            assert node.get_websocket_uri(80).endswith(f"/net/{network.network_id}/tcp/{ip}/80")
            [deploy] = instance.deploys
            [net] = deploy["net"]
            assert (net["id"], net["ip"], net["mask"], net["nodeIp"]) == (
                network.network_id,
                "192.168.20.0",
                "255.255.255.0",
                ip,
            )
            assert net["nodes"]["192.168.20.1"] == (golem.node_id or "").lower()
            assert net["nodes"][ip] == listed[ip]
            assert deploy["hosts"] == hosts
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
        assert await nodes(golem, network.network_id) == {}  # released instances leave
        assert all(i.network_node is None for i in cluster.instances)
    # the Golem removed the network it created, and said so
    async with golem_for(shared_localnet, Recorder()) as other:
        assert network.network_id not in await networks(other)
    assert [e.network_id for e in rec.of(ev.NetworkCreated)] == [network.network_id]
    assert [e.cidr for e in rec.of(ev.NetworkCreated)] == ["192.168.20.0/24"]
    assert [e.network_id for e in rec.of(ev.NetworkRemoved)] == [network.network_id]
    created = rec.events.index(rec.of(ev.NetworkRemoved)[0])
    released = rec.events.index(rec.of(ev.AllocationReleased)[0])
    assert created < released  # removed before the allocation is released


async def test_a_replacement_takes_over_the_instances_address(localnet: Any) -> None:
    # provider 1 is the cheapest, so it is chosen first; it dies while the instance runs
    info = localnet(providers=2, faults={"local-provider-1": {"die_after": "6s"}})
    names = {node: name for name, node in info.providers}
    rec = Recorder()
    async with golem_for(info, rec) as golem:
        network = await golem.create_network("10.30.0.0/24")
        cluster = await golem.run_service(Restarting, num_instances=1, network=network)
        [inst] = cluster.instances
        await wait_for(
            lambda: inst.snapshot().restarts == 1, 90, "the instance on the dead provider replaced"
        )
        await wait_for(lambda: inst.state is ServiceState.running, 60, "replacement running")
        assert names[inst.provider_id or ""] == "local-provider-2"
        # no address was planned: it got the next free one at its first start, and kept it
        assert inst.snapshot().ip == "10.30.0.2"
        assert [d["net"][0]["nodeIp"] for d in inst.deploys] == ["10.30.0.2", "10.30.0.2"]
        assert await nodes(golem, network.network_id) == {
            "10.30.0.2": (inst.provider_id or "").lower()
        }
        async with network:  # leaving it removes it early; the Golem does not try again
            pass
        assert network.network_id not in await networks(golem)
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
    assert len(rec.of(ev.NetworkRemoved)) == 1
