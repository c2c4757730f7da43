"""Addresses, names and deploy arguments of a deployment's VPN (pure parts)."""

from __future__ import annotations

import ipaddress

import pytest

from golem_deploy.engine.network import (
    Network,
    NetworkError,
    Node,
    host_names,
    plan_addresses,
)
from golem_deploy.yagna.net import NetApi


def test_every_instance_gets_a_stable_address_after_the_requestors() -> None:
    plan = plan_addresses("192.168.0.0/24", [("db", 1), ("web", 2)])
    assert plan == {
        ("db", 0): "192.168.0.2",
        ("web", 0): "192.168.0.3",
        ("web", 1): "192.168.0.4",
    }
    # The same manifest always gives the same plan: a replacement takes over its address.
    assert plan_addresses("192.168.0.0/24", [("db", 1), ("web", 2)]) == plan


def test_names_resolve_to_instance_zero_and_to_each_instance() -> None:
    plan = plan_addresses("10.8.0.0/24", [("db", 1), ("web", 2)])
    assert host_names(plan) == {
        "db": "10.8.0.2",
        "db-0": "10.8.0.2",
        "web": "10.8.0.3",
        "web-0": "10.8.0.3",
        "web-1": "10.8.0.4",
    }


def test_a_range_too_small_says_what_would_fit() -> None:
    assert len(plan_addresses("10.0.0.0/29", [("web", 5)])) == 5  # 6 hosts: requestor + 5
    with pytest.raises(NetworkError) as error:
        plan_addresses("10.0.0.0/29", [("web", 6)])
    assert "room for 5 instances, the deployment has 6" in str(error.value)
    assert error.value.hint == "use a larger range, e.g. /28"


def test_deploy_arguments_carry_the_network_the_node_and_the_names() -> None:
    network = Network(
        NetApi.__new__(NetApi),  # no request is made here
        "abc",
        ipaddress.IPv4Network("192.168.0.0/24"),
        "0xREQ",
        "192.168.0.1",
        None,
    )
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
