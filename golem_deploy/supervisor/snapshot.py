"""The snapshot: what a deployment looks like at one moment, typed, and its plain JSON form.

Why a separate, light module: the supervisor builds snapshots, the CLI and the ui only read
them, and `status --json` must start fast, so this imports nothing heavy (the engine's and
the journal's types only for the type checker).

One builder, `build()`, makes every snapshot: the live one (the supervisor, from the
engine's `InstanceSnapshot`s via `live_instance()`) and the one rebuilt from the journal
when no supervisor answers (`from_journal()`). Both therefore list every instance the
manifest declares, in manifest order, with the same fields. On the wire (the control API)
a snapshot is `DeploymentSnapshot.plain()`: JSON-ready dicts, a superset of the documented
`status --json` shape that `public_status()` cuts down to exactly that shape; the CLI reads
it back with `snapshot_plain.from_plain()`.

Times are ISO-8601 UTC strings (or null); amounts are decimal strings.

Size: the typed views, their plain form and the one builder belong together, so every
field is added in one place (reading the plain form back is snapshot_plain.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from golem_deploy.supervisor.pace import budget_plain, runs_out_at

if TYPE_CHECKING:
    from golem_deploy.engine.service import InstanceSnapshot
    from golem_deploy.supervisor.journal import Held

# The plain (JSON-ready) form, as the control API and `status --json` give it.
Snapshot = dict[str, object]

INSTANCE_KEYS = (
    "index",
    "state",
    "ip",
    "provider_id",
    "provider_name",
    "agreement_id",
    "activity_id",
    "started_at",
    "restarts",
    "renewals",
    "cost",
    "last_output",
    "download",
)

# Deployment-level states: the live ones are supervisor.machine.DeploymentState's values;
# GONE is the journal's verdict when the supervisor died without a clean down.
STARTING, RUNNING, FAILED, STOPPING, STOPPED, GONE = (
    "starting",
    "running",
    "failed",
    "stopping",
    "stopped",
    "gone",
)


@dataclass(frozen=True)
class DownloadView:
    """The image download of a starting instance: bytes done, of total (None: unknown)."""

    done: int
    total: int | None
    bytes_per_s: float

    def plain(self) -> Snapshot:
        return {"done": self.done, "total": self.total, "bytes_per_s": round(self.bytes_per_s)}


@dataclass(frozen=True)
class InstanceView:
    """One row of the table: an instance as a user sees it."""

    index: int
    state: str = "pending"
    provider_id: str | None = None
    provider_name: str | None = None
    agreement_id: str | None = None
    activity_id: str | None = None
    started_at: str | None = None
    restarts: int = 0
    cost: Decimal = Decimal(0)
    last_output: str | None = None
    expires_at: str | None = None
    reason: str | None = None
    ip: str | None = None  # the instance's address in the deployment's VPN
    download: DownloadView | None = None  # while its image downloads
    renewals: int = 0  # agreements renewed before they ended (the service outlives them)

    def plain(self) -> Snapshot:
        return {
            "index": self.index,
            "state": self.state,
            "ip": self.ip,
            "provider_id": self.provider_id,
            "provider_name": self.provider_name,
            "agreement_id": self.agreement_id,
            "activity_id": self.activity_id,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "renewals": self.renewals,
            "cost": str(self.cost),
            "last_output": self.last_output,
            "expires_at": self.expires_at,
            "reason": self.reason,
            "download": self.download.plain() if self.download else None,
        }


@dataclass(frozen=True)
class PortView:
    """A forwarded port: `host:host_port` here -> `port` of `service`'s instances."""

    service: str
    host: str
    host_port: int | None  # None until the listener is bound (a free port is chosen)
    port: int

    def plain(self) -> Snapshot:
        return {"host": self.host, "host_port": self.host_port, "port": self.port}

    def describe(self) -> str:
        where = f"{self.host}:{self.host_port}" if self.host_port else f"{self.host}:?"
        return f"{where} -> {self.service}:{self.port}"


@dataclass(frozen=True)
class VpnView:
    id: str
    cidr: str


@dataclass(frozen=True)
class OutageView:
    """yagna at `api_url` has not answered the instances since `since` (ISO-8601 UTC):
    `seconds` long when the snapshot was taken; `error` is how the last wait began."""

    api_url: str
    since: str
    seconds: float
    error: str | None = None

    def plain(self) -> Snapshot:
        return {"since": self.since, "seconds": self.seconds, "error": self.error}


@dataclass(frozen=True)
class DeploymentSnapshot:
    name: str
    state: str
    reason: str | None
    supervisor_pid: int | None
    supervisor_alive: bool
    network_kind: str | None
    api_url: str | None
    budget: str | None  # the total, a decimal string (None: unknown)
    spent: Decimal
    services: tuple[tuple[str, tuple[InstanceView, ...]], ...]
    held: tuple[str, ...] | None = field(default=None)  # journal snapshots: what is held
    ports: tuple[PortView, ...] = ()
    vpn: VpnView | None = None
    burn_per_hour: Decimal | None = None  # GLM per hour at the current pace (None: unknown)
    runs_out_at: str | None = None  # when the budget is spent at that pace (ISO-8601 UTC)
    outage: OutageView | None = None  # yagna not answering the instances right now

    def plain(self) -> Snapshot:
        plain: Snapshot = {
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "supervisor": {"pid": self.supervisor_pid, "alive": self.supervisor_alive},
            "network": {
                "kind": self.network_kind,
                "api_url": self.api_url,
                "vpn": {"id": self.vpn.id, "cidr": self.vpn.cidr} if self.vpn else None,
                "outage": self.outage.plain() if self.outage else None,
            },
            "budget": budget_plain(self.budget, self.spent, self.burn_per_hour, self.runs_out_at),
            "services": [
                {
                    "name": name,
                    "ports": [p.plain() for p in self.ports if p.service == name],
                    "instances": [row.plain() for row in rows],
                }
                for name, rows in self.services
            ],
        }
        if self.held is not None:
            plain["held"] = list(self.held)
        return plain


def build(
    *,
    name: str,
    state: str,
    reason: str | None,
    supervisor_pid: int | None,
    supervisor_alive: bool,
    network_kind: str | None,
    api_url: str | None,
    budget: str | None,
    spent: Decimal,
    services: Sequence[tuple[str, int]],
    rows: Mapping[tuple[str, int], InstanceView],
    held: Sequence[str] | None = None,
    ports: Sequence[PortView] = (),
    vpn: VpnView | None = None,
    burn_per_hour: Decimal | None = None,
    now: dt.datetime | None = None,
    outage: OutageView | None = None,
) -> DeploymentSnapshot:
    """The one builder: every declared instance (pending when nothing is known about it),
    plus any extra instance `rows` knows, per service in manifest order."""
    listed = []
    for service, count in services:
        indexes = set(range(count)) | {index for (s, index) in rows if s == service}
        listed.append(
            (
                service,
                tuple(rows.get((service, i)) or InstanceView(index=i) for i in sorted(indexes)),
            )
        )
    return DeploymentSnapshot(
        name=name,
        state=state,
        reason=reason,
        supervisor_pid=supervisor_pid,
        supervisor_alive=supervisor_alive,
        network_kind=network_kind,
        api_url=api_url,
        budget=budget,
        spent=spent,
        services=tuple(listed),
        held=tuple(held) if held is not None else None,
        ports=tuple(ports),
        vpn=vpn,
        burn_per_hour=burn_per_hour,
        runs_out_at=runs_out_at(budget, spent, burn_per_hour, now),
        outage=outage,
    )


def live_instance(
    instance: InstanceSnapshot,
    *,
    expires_at: dt.datetime | None,
    last_output: str | None,
    redact: Callable[[str], str],
) -> InstanceView:
    """A row from the engine's own snapshot of an instance (the supervisor's case).

    `last_output` is the supervisor's own record of the instance's output, used when the
    engine has none; only its last non-empty line is shown, redacted."""
    output = _last_line(instance.last_output or last_output or "")
    return InstanceView(
        index=instance.index,
        state=instance.state.value,
        provider_id=instance.provider_id,
        provider_name=instance.provider_name,
        agreement_id=instance.agreement_id,
        activity_id=instance.activity_id,
        started_at=iso(instance.started_at),
        restarts=instance.restarts,
        cost=instance.cost,
        last_output=redact(output) if output else None,
        expires_at=iso(expires_at) if instance.agreement_id else None,
        reason=instance.reason or None,
        ip=instance.ip,
        download=_download(instance),
        renewals=instance.renewals,
    )


def _download(instance: InstanceSnapshot) -> DownloadView | None:
    got = instance.download
    if got is None or instance.state.value != "starting":
        return None
    return DownloadView(done=got.done, total=got.total, bytes_per_s=got.bytes_per_s)


def from_journal(
    held: Held, *, name: str, pid: int | None, alive: bool = False
) -> DeploymentSnapshot:
    """A snapshot rebuilt from the journal alone, for when no supervisor answers.

    Its state is "stopped" after a clean down (or "failed" when the deployment failed),
    otherwise "gone", with `held` listing what the journal says is still acquired (what
    `down` will release)."""
    clean = held.stopped and held.empty
    state, reason = (STOPPED, held.ended) if clean else (GONE, None)
    if clean and held.failure:
        state, reason = FAILED, held.failure
    if not clean:
        reason = f"the supervisor (pid {pid}) is gone"
        if not held.empty:
            reason += "; run `golem-deploy down` to release what it still holds"
    rows: dict[tuple[str, int], InstanceView] = {}
    for service, count in held.services:
        for index in range(count):
            key = (service, index)
            info = held.instance_info.get(key, {})
            rows[key] = InstanceView(
                index=index,
                state="terminated" if clean else held.instance_states.get(key, "pending"),
                provider_id=info.get("provider_id"),
                provider_name=info.get("provider_name"),
                agreement_id=info.get("agreement_id"),
                activity_id=info.get("activity_id"),
                restarts=held.instance_restarts.get(key, 0),
                renewals=held.instance_renewals.get(key, 0),
                cost=held.instance_cost.get(key, Decimal(0)),
                ip=held.instance_ips.get(key),
            )
    return build(
        name=held.name or name,
        state=state,
        reason=reason,
        supervisor_pid=pid,
        supervisor_alive=alive,
        network_kind=held.network_kind,
        api_url=held.api_url,
        budget=held.budget,
        spent=held.spent,
        services=held.services,
        rows=rows,
        held=held.summary(),
        vpn=VpnView(*next(iter(held.networks.items()))) if held.networks else None,
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def iso(value: float | dt.datetime | None) -> str | None:
    """Epoch seconds or a datetime -> ISO-8601 UTC string; None stays None."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    else:
        moment = dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_iso(value: object) -> float | None:
    """ISO-8601 string -> epoch seconds (None on anything else)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def public_status(snapshot: DeploymentSnapshot) -> Snapshot:
    """Exactly the `status --json` shape of the CLI reference (README.md, CLI reference).
    `reason` says why the deployment is degraded, failed or ended (null otherwise)."""
    public = snapshot.plain()
    public.pop("held", None)
    public["services"] = [
        {
            "name": name,
            "ports": [p.plain() for p in snapshot.ports if p.service == name],
            "instances": [
                {key: value for key, value in row.plain().items() if key in INSTANCE_KEYS}
                for row in rows
            ],
        }
        for name, rows in snapshot.services
    ]
    return public


def instances(snapshot: DeploymentSnapshot) -> list[tuple[str, InstanceView]]:
    """Every (service name, instance) in manifest order."""
    return [(name, row) for name, rows in snapshot.services for row in rows]


def state_counts(snapshot: DeploymentSnapshot) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, instance in instances(snapshot):
        counts[instance.state] = counts.get(instance.state, 0) + 1
    return counts


def merge_final(live: DeploymentSnapshot, ended: DeploymentSnapshot) -> DeploymentSnapshot:
    """The last live picture with the journal's final word (states, spent): the journal
    does not keep output lines, and the last picture should still show them."""
    final_states = {(name, row.index): row.state for name, row in instances(ended)}
    return dataclasses.replace(
        live,
        state=ended.state,
        reason=ended.reason,
        supervisor_pid=ended.supervisor_pid,
        supervisor_alive=ended.supervisor_alive,
        budget=ended.budget,
        spent=ended.spent,
        held=ended.held,
        services=tuple(
            (
                name,
                tuple(
                    dataclasses.replace(row, state=final_states.get((name, row.index), row.state))
                    for row in rows
                ),
            )
            for name, rows in live.services
        ),
    )
