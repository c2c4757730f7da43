"""The networking rules JSON Schema cannot express: ports forwarded twice to the same
local address, a range too small for the instances, host names two services would share,
and what needs the network (forwarded ports, http/tcp health checks) when there is none.

Like rules.py, these read the raw data defensively: a value of the wrong type or syntax
is the schema's to report (with the exact message from ports.py / network.py), so here
it is skipped.
"""

from __future__ import annotations

import re
from typing import Any

from golem_deploy.manifest.diagnostics import Report
from golem_deploy.manifest.load import JsonPath
from golem_deploy.manifest.model import PortSpec
from golem_deploy.manifest.network import (
    CIDR_PATTERN,
    cidr_problem,
    host_capacity,
    host_names,
    range_for,
    resolve_cidr,
)
from golem_deploy.manifest.ports import (
    PORT_PATTERN,
    PortSpecError,
    format_port,
    parse_port,
    same_listener,
)
from golem_deploy.manifest.wording import dotted

NEEDS_NETWORK = "forwarded ports and http/tcp health checks reach the instances over the VPN"


def network_diagnostics(data: dict[str, Any], error: Report) -> None:
    """Report every networking problem of the (schema-checked or not) manifest data."""
    network = data.get("network")
    cidr_path: JsonPath = ("network", "cidr")
    if isinstance(network, dict) and isinstance(network.get("cidr"), str):
        cidr = network["cidr"]
        problem = cidr_problem(cidr)
        if problem and re.search(CIDR_PATTERN, cidr):  # else the schema reported it
            error(cidr_path, f"network.cidr: {problem[0]}", problem[1])
    services = data.get("services")
    if not isinstance(services, dict):
        return
    services = {n: s for n, s in services.items() if isinstance(s, dict)}
    _check_ports(services, error)
    resolved = resolve_cidr(data)
    if resolved is not None:
        _check_capacity(services, resolved, network, error)
        _check_host_names(services, error)
    elif network is False or "network" not in data:
        _check_needs_network(services, network, error)
    # else: a `network` the schema or the cidr check rejected; no guessing what it meant


def _check_ports(services: dict[str, dict[str, Any]], error: Report) -> None:
    taken: list[tuple[PortSpec, JsonPath]] = []
    for name, service in services.items():
        ports = service.get("ports")
        if not isinstance(ports, list):
            continue
        for i, value in enumerate(ports):
            path: JsonPath = ("services", name, "ports", i)
            if isinstance(value, bool) or not isinstance(value, int | str):
                continue
            try:
                spec = parse_port(value)
            except PortSpecError as e:
                if isinstance(value, str) and re.search(PORT_PATTERN, value):
                    error(path, f"{dotted(path)}: {e.message}", e.hint)
                continue
            clash = next((t for t in taken if same_listener(t[0], spec)), None)
            if clash is not None:
                other, where = clash
                this = format_port(spec).rsplit(":", 1)[0]
                that = format_port(other).rsplit(":", 1)[0]
                why = "" if this == that else " (0.0.0.0 listens on every address)"
                error(
                    path,
                    f"{dotted(path)}: {this} is already taken by {that} in {dotted(where)}{why}",
                    "a local address and port can be forwarded once; pick another HOST_PORT, "
                    'or leave it out ("8000") to have a free one chosen',
                )
            else:
                taken.append((spec, path))


def _probes(service: dict[str, Any]) -> list[str]:
    check = service.get("healthcheck")
    return [k for k in ("http", "tcp") if isinstance(check, dict) and k in check]


def _check_needs_network(services: dict[str, dict[str, Any]], network: Any, error: Report) -> None:
    """Without a network, nothing may need one."""
    if network is False:
        hint = f"remove `network: false` ({NEEDS_NETWORK})"
    else:
        hint = f"add `network: true` at the top level ({NEEDS_NETWORK})"
    off = "`network: false` turns the VPN off" if network is False else "there is no network"
    for name, service in services.items():
        if service.get("ports"):
            path: JsonPath = ("services", name, "ports")
            message = f"{dotted(path)}: forwarding ports needs the network, but {off}"
            error(path, message, hint, key=True)
        for probe in _probes(service):
            path = ("services", name, "healthcheck", probe)
            error(
                path,
                f"{dotted(path)}: {'an' if probe == 'http' else 'a'} {probe} health check "
                f"needs the network, but {off}",
                hint,
                key=True,
            )


def _check_capacity(
    services: dict[str, dict[str, Any]], cidr: str, network: Any, error: Report
) -> None:
    """The range must hold the requestor plus one address per instance."""
    instances = 0
    for service in services.values():
        count = service.get("instances", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return  # the schema reports it
        instances += count
    needed = 1 + instances
    room = host_capacity(cidr)
    if needed <= room:
        return
    bigger = range_for(needed, cidr)
    path: JsonPath
    if isinstance(network, dict) and "cidr" in network:
        path, key = ("network", "cidr"), False
    elif network is not None:  # `network: true` or `network: {}`: the default range
        path, key = ("network",), True
    else:  # no `network:` at all
        path, key = ("services",), True
    message = (
        f"{dotted(path)}: the network {cidr} holds {room} hosts, but this deployment needs "
        f"{needed} (the requestor and {instances} instances)"
    )
    if bigger is None:
        hint = "run fewer instances; no IPv4 range holds this many"
    elif path == ("network", "cidr"):
        hint = f"use a larger range: `cidr: {bigger}`"
    else:
        hint = f"{cidr} is the default range; set a larger one: `network: {{cidr: {bigger}}}`"
    error(path, message, hint, key=key)


def _check_host_names(services: dict[str, dict[str, Any]], error: Report) -> None:
    """Every instance answers to host names derived from its service's name; two services
    must not claim the same one (`web` instance 1 is `web-1`, so no service `web-1`).
    Host names are case-insensitive."""
    owners: dict[str, str] = {}
    for name, service in services.items():
        count = service.get("instances", 1)
        count = count if isinstance(count, int) and not isinstance(count, bool) else 1
        for host in host_names(name, max(count, 0)):
            owner = owners.get(host.lower())
            if owner is not None and owner != name:
                path: JsonPath = ("services", name)
                error(
                    path,
                    f"services.{name}: host name {host!r} on the network is taken by "
                    f"service {owner!r}",
                    f"rename {name!r}: instances answer to <service> and <service>-<index>",
                    key=True,
                )
                break
            owners.setdefault(host.lower(), name)
