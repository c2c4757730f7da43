"""The deployment's VPN as the manifest decides it: whether there is one, its range, the
address of every instance and the host names that resolve to them.

When is there a network? `network: false`: never. `network: true` or a mapping: always.
Absent: when the deployment has two or more services (so they can talk) or forwards any
port (forwarding goes through the VPN). `resolve_cidr` is that decision, made once for the
rules and the model alike.

Addresses are fixed by the manifest, so they are known before anything starts and a
replacement instance takes over its predecessor's address: the requestor takes the first
host of the range (as yagna's Net API does), then every instance of every service in
manifest order (`web` instance 0, `web` instance 1, `db` instance 0, ...). Each instance
answers to `<service>-<index>`, instance 0 also to `<service>`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from golem_deploy.manifest.model import Manifest
from golem_deploy.manifest.ports import IPV4_PATTERN

DEFAULT_CIDR = "192.168.0.0/24"
CIDR_PATTERN = rf"^{IPV4_PATTERN}/(3[0-2]|[12]?[0-9])$"
CIDR_HINT = "give the first address and the prefix length, e.g. `cidr: 10.8.0.0/24`"


def cidr_problem(value: str) -> tuple[str, str] | None:
    """(message, hint) when `value` is not an IPv4 network in CIDR form, else None."""
    shown = repr(value)
    address, slash, prefix = value.partition("/")
    if not slash:
        return f"{shown} has no prefix length", f"e.g. `cidr: {value}/24`"
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return f"{shown} is not an IPv4 network", CIDR_HINT
    if not (prefix.isascii() and prefix.isdigit() and 0 <= int(prefix) <= 32) or (
        len(prefix) > 1 and prefix.startswith("0")
    ):
        return f"{shown}: the prefix length must be 0 to 32", CIDR_HINT
    try:
        ipaddress.IPv4Network(value)
    except ValueError:
        fixed = ipaddress.IPv4Network(value, strict=False)
        return f"{shown} has host bits set", f"did you mean {fixed}?"
    return None


def resolve_cidr(data: dict[str, Any]) -> str | None:
    """The range of the manifest's network, None when it has none. Reads raw (possibly
    ill-typed) data: an unusable `network` value counts as none (the schema reports it)."""
    network = data.get("network")
    if network is False:
        return None
    if network is True:
        return DEFAULT_CIDR
    if isinstance(network, dict):
        cidr = network.get("cidr", DEFAULT_CIDR)
        return cidr if isinstance(cidr, str) and cidr_problem(cidr) is None else None
    if "network" in data:
        return None
    services = data.get("services")
    if not isinstance(services, dict):
        return None
    forwards = any(isinstance(s, dict) and s.get("ports") for s in services.values())
    return DEFAULT_CIDR if len(services) >= 2 or forwards else None


def host_capacity(cidr: str) -> int:
    """How many hosts the range holds: every address but the network and broadcast ones."""
    return max(ipaddress.IPv4Network(cidr).num_addresses - 2, 0)


def range_for(hosts: int, cidr: str) -> str | None:
    """The smallest range starting like `cidr` that holds `hosts` hosts (None if none can)."""
    for prefix in range(30, -1, -1):
        if 2 ** (32 - prefix) - 2 >= hosts:
            return str(ipaddress.IPv4Network(cidr).supernet(new_prefix=prefix))
    return None


def host_names(service: str, instances: int) -> list[str]:
    """The names an instance of `service` answers to: `<service>` (instance 0) and
    `<service>-<index>` for every instance."""
    return [service, *(f"{service}-{i}" for i in range(instances))]


def requestor_address(manifest: Manifest) -> str | None:
    """The requestor's address on the network: its first host. None without a network."""
    if manifest.network is None:
        return None
    return str(next(ipaddress.IPv4Network(manifest.network.cidr).hosts()))


def instance_addresses(manifest: Manifest) -> dict[tuple[str, int], str]:
    """The address of each (service, instance index), fixed by the manifest; {} without a
    network. Validation guarantees the range holds them all."""
    if manifest.network is None:
        return {}
    network = ipaddress.IPv4Network(manifest.network.cidr)
    first = int(network.network_address) + 1  # the requestor's
    addresses: dict[tuple[str, int], str] = {}
    for name, spec in manifest.services.items():
        for index in range(spec.instances):
            addresses[(name, index)] = str(ipaddress.IPv4Address(first + 1 + len(addresses)))
    return addresses


def hosts(manifest: Manifest) -> dict[str, str]:
    """The `deploy` hosts map every instance gets: host name -> address."""
    addresses = instance_addresses(manifest)
    names: dict[str, str] = {}
    for (service, index), address in addresses.items():
        if index == 0:
            names[service] = address
        names[f"{service}-{index}"] = address
    return names
