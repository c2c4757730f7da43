"""Reading a snapshot's plain (JSON) form back into the typed one: the CLI's side of the
control API. Lenient on purpose: missing or mistyped fields read as unknown rather than
failing, because a newer supervisor may send more."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from golem_deploy.supervisor.snapshot import (
    DeploymentSnapshot,
    DownloadView,
    InstanceView,
    OutageView,
    PortView,
    VpnView,
)


def from_plain(data: object) -> DeploymentSnapshot:
    """The typed snapshot of a plain one (what /snapshot answers)."""
    top = _mapping(data)
    supervisor, network, budget = (
        _mapping(top.get(k)) for k in ("supervisor", "network", "budget")
    )
    services = []
    ports = []
    for service in _list(top.get("services")):
        entry = _mapping(service)
        name = str(entry.get("name", "?"))
        rows = tuple(_instance_from_plain(_mapping(row)) for row in _list(entry.get("instances")))
        services.append((name, rows))
        for port in map(_mapping, _list(entry.get("ports"))):
            ports.append(
                PortView(
                    name,
                    str(port.get("host") or "127.0.0.1"),
                    _int(port.get("host_port")),
                    _int(port.get("port")) or 0,
                )
            )
    vpn = _mapping(network.get("vpn"))
    held = top.get("held")
    return DeploymentSnapshot(
        name=str(top.get("name") or "?"),
        state=str(top.get("state") or "?"),
        reason=_str(top.get("reason")),
        supervisor_pid=_int(supervisor.get("pid")),
        supervisor_alive=bool(supervisor.get("alive")),
        network_kind=_str(network.get("kind")),
        api_url=_str(network.get("api_url")),
        budget=_str(budget.get("total")),
        spent=_decimal(budget.get("spent")),
        services=tuple(services),
        held=tuple(str(line) for line in _list(held)) if held is not None else None,
        ports=tuple(ports),
        vpn=VpnView(str(vpn["id"]), str(vpn.get("cidr"))) if vpn.get("id") else None,
        burn_per_hour=_decimal(budget.get("burn_rate_per_hour"))
        if budget.get("burn_rate_per_hour") is not None
        else None,
        runs_out_at=_str(budget.get("runs_out_at")),
        outage=_outage(network.get("outage"), _str(network.get("api_url"))),
    )


def _instance_from_plain(row: Mapping[str, object]) -> InstanceView:
    return InstanceView(
        index=_int(row.get("index")) or 0,
        state=str(row.get("state") or "?"),
        provider_id=_str(row.get("provider_id")),
        provider_name=_str(row.get("provider_name")),
        agreement_id=_str(row.get("agreement_id")),
        activity_id=_str(row.get("activity_id")),
        started_at=_str(row.get("started_at")),
        restarts=_int(row.get("restarts")) or 0,
        renewals=_int(row.get("renewals")) or 0,
        cost=_decimal(row.get("cost")),
        last_output=_str(row.get("last_output")),
        expires_at=_str(row.get("expires_at")),
        reason=_str(row.get("reason")),
        ip=_str(row.get("ip")),
        download=_download(row.get("download")),
    )


def _outage(value: object, api_url: str | None) -> OutageView | None:
    plain = _mapping(value)
    if not plain.get("since"):
        return None
    seconds = plain.get("seconds")
    return OutageView(
        api_url=api_url or "?",
        since=str(plain["since"]),
        seconds=float(seconds) if isinstance(seconds, int | float) else 0.0,
        error=_str(plain.get("error")),
    )


def _download(value: object) -> DownloadView | None:
    plain = _mapping(value)
    done = _int(plain.get("done"))
    if done is None:
        return None
    rate = plain.get("bytes_per_s")
    return DownloadView(
        done=done,
        total=_int(plain.get("total")),
        bytes_per_s=float(rate) if isinstance(rate, int | float) else 0.0,
    )


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _decimal(value: object) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except ArithmeticError:
        return Decimal(0)
