"""The local network's VPN switch routes Ethernet frames as yagna's exe-unit does."""

from __future__ import annotations

import pytest

from golem_deploy.localnet.vpn import (
    VpnControl,
    VpnSwitch,
    destination,
    parse_vpn_control,
    source,
)

REQUESTOR = "0x04e778cf680e21db9265361d7796d5ab7eebd07f"
OTHER = "0x6076409ad73e95de617315b57e0684527643bceb"

# The ARP request yagna's requestor stack sent in a real run: who-has 192.168.7.2 tell .1.
ARP_WHO_HAS_2 = bytes.fromhex(
    "ffffffffffffa013c0a8070108060001080006040001a013c0a80701c0a80701ffffffffffffc0a80702"
)


def ipv4(src: str, dst: str) -> bytes:
    """A minimal Ethernet + IPv4 header (enough for routing)."""
    header = bytes([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0])
    addresses = bytes(int(x) for x in src.split(".")) + bytes(int(x) for x in dst.split("."))
    return b"\x90\x13" + b"\0" * 10 + b"\x08\x00" + header + addresses


def test_addresses_are_read_from_arp_and_ipv4_frames() -> None:
    assert destination(ARP_WHO_HAS_2) == bytes([192, 168, 7, 2])
    assert source(ARP_WHO_HAS_2) == bytes([192, 168, 7, 1])
    frame = ipv4("192.168.7.3", "192.168.7.4")
    assert (source(frame), destination(frame)) == (bytes([192, 168, 7, 3]), bytes([192, 168, 7, 4]))
    ipv6 = b"\0" * 12 + b"\x86\xdd" + b"\x60" + b"\0" * 60
    assert destination(ipv6) is None and source(ipv6) is None  # dropped, as in yagna
    assert destination(b"\x01\x02") is None  # runt frame


def test_frames_from_the_bus_reach_the_interface_that_owns_the_target() -> None:
    switch: VpnSwitch[str] = VpnSwitch("net")
    switch.attach("192.168.7.2", "tap-a", {"192.168.7.1": REQUESTOR})
    switch.attach("192.168.7.3", "tap-b", {})
    assert switch.ingress(ARP_WHO_HAS_2, REQUESTOR) == ["tap-a"]
    assert switch.ingress(ipv4("192.168.7.1", "192.168.7.3"), REQUESTOR) == ["tap-b"]
    assert switch.ingress(ipv4("192.168.7.1", "192.168.7.9"), REQUESTOR) == []  # nobody
    assert sorted(switch.ingress(ipv4("192.168.7.1", "255.255.255.255"), REQUESTOR)) == [
        "tap-a",
        "tap-b",
    ]


def test_local_traffic_stays_local_and_remote_traffic_goes_to_the_owner_node() -> None:
    switch: VpnSwitch[str] = VpnSwitch("net")
    switch.attach("192.168.7.2", "tap-a", {"192.168.7.1": REQUESTOR, "192.168.7.5": OTHER})
    switch.attach("192.168.7.3", "tap-b", {})
    to_b = switch.egress(ipv4("192.168.7.2", "192.168.7.3"), "tap-a")
    assert (to_b.local, to_b.remote) == (["tap-b"], [])
    to_requestor = switch.egress(ipv4("192.168.7.2", "192.168.7.1"), "tap-a")
    assert (to_requestor.local, to_requestor.remote) == ([], [REQUESTOR])
    broadcast = switch.egress(ipv4("192.168.7.2", "255.255.255.255"), "tap-a")
    assert (broadcast.local, broadcast.remote) == (["tap-b"], sorted([REQUESTOR, OTHER]))
    assert switch.egress(ipv4("192.168.7.2", "192.168.7.77"), "tap-a").remote == []


def test_nodes_come_and_go_by_vpn_control_and_are_learned_from_frames() -> None:
    switch: VpnSwitch[str] = VpnSwitch("net")
    switch.attach("192.168.7.2", "tap-a", {})
    # The requestor's address is learned from its first ARP request.
    switch.ingress(ARP_WHO_HAS_2, REQUESTOR.upper().replace("0X", "0x"))
    assert switch.egress(ipv4("192.168.7.2", "192.168.7.1"), "tap-a").remote == [REQUESTOR]
    switch.control(
        parse_vpn_control({"addNodes": {"network_id": "net", "nodes": {"192.168.7.6": OTHER}}})
    )
    assert switch.egress(ipv4("192.168.7.2", "192.168.7.6"), "tap-a").remote == [OTHER]
    switch.control(parse_vpn_control({"removeNodes": {"network_id": "net", "node_ids": [OTHER]}}))
    assert switch.egress(ipv4("192.168.7.2", "192.168.7.6"), "tap-a").remote == []
    assert switch.detach("tap-a") is True  # the last local port: unbind the network


def test_malformed_vpn_control_is_refused() -> None:
    assert parse_vpn_control({"removeNodes": {"network_id": "n", "node_ids": []}}) == VpnControl(
        "n"
    )
    for bad in ({}, {"addNodes": {}}, {"addNodes": {"network_id": "n"}}, {"other": {}}, [1]):
        with pytest.raises(ValueError, match="not a VpnControl"):
            parse_vpn_control(bad)
