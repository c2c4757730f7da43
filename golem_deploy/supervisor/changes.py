"""What changing a running deployment means: the plan `up` (again), `scale` and `restart` apply.

Pure: the manifest the deployment runs and the manifest wanted go in, a `Plan` comes out, per
service one `ServiceChange` saying which instance indices start, stop or are replaced. The
supervisor's reconciler (reconcile.py) performs it; `up --dry-run` only prints it. Keeping
the decision here means every rule is unit-tested without an engine:

- A service only in the wanted manifest is `added`, one only in the running one `removed`.
- A service whose spec changed (anything but `instances`, `depends_on`, `update`, `logs`) is
  `replaced`: each of its instances that stays gets a new one, `update.parallelism` at a
  time, the new one running before the old one stops.
- Fewer instances stop the highest indices first; more instances take the next indices. A
  service only changing its count is `scaled`, otherwise it is `unchanged` and untouched.
- Changes are applied in dependency order: removed services first, dependants before what
  they depend on; then the others in the wanted manifest's `depends_on` waves.
- A new budget is taken (the allocation is amended before anything else changes) unless it
  is below what was already spent.
- What a running deployment cannot take is refused, with the reason, and nothing happens:
  a budget below what was already spent, a different network range, payment platform,
  subnet or market settings, and different forwarded ports (their listeners are bound at
  start); and, for
  `scale` (which changes counts without a file to validate), more instances than the
  network range holds or a host name two services would claim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from golem_deploy.manifest.model import Manifest, ServiceSpec
from golem_deploy.manifest.network import host_capacity, host_names

__all__ = ["ChangeStatus", "Kind", "Plan", "ServiceChange", "batches", "plan"]

# Keys of a service whose change never needs a new instance: the count is scaling, the
# order only decides when things start, `update` is how to replace, `logs` is local.
_NOT_SPEC = ("instances", "depends_on", "update", "logs", "name")


class Kind(Enum):
    """What happens to one service; the values are what `--dry-run` prints."""

    added = "added"
    removed = "removed"
    replaced = "replaced"
    scaled = "scaled"
    unchanged = "unchanged"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ServiceChange:
    """One service's part of a plan. Indices are instance indices (`web.2` is index 2)."""

    service: str
    kind: Kind
    before: int  # instances running now (0 for an added service)
    after: int  # instances once applied (0 for a removed service)
    start: tuple[int, ...] = ()  # new instances, lowest index first
    stop: tuple[int, ...] = ()  # instances stopped for good, highest index first
    replace: tuple[int, ...] = ()  # instances replaced one by one (new runs, then old stops)
    parallelism: int = 1
    changed: tuple[str, ...] = ()  # the spec keys that differ, for `replaced`

    def describe(self) -> str:
        """One line of `--dry-run`: `web: replaced (run changed), 2 -> 3 instances ...`."""
        text = f"{self.service}: {self.kind}"
        if self.changed:
            text += f" ({', '.join(self.changed)} changed)"
        if self.kind is not Kind.unchanged or self.before:
            text += f", {self.before} -> {self.after} instance{'s' * (self.after != 1)}"
        parts = []
        if self.start:
            parts.append("start " + _indices(self.service, self.start))
        if self.replace:
            parts.append("replace " + _indices(self.service, self.replace))
            if self.parallelism > 1:
                parts[-1] += f" ({self.parallelism} at a time)"
        if self.stop:
            parts.append("stop " + _indices(self.service, self.stop))
        if parts:
            text += ": " + "; ".join(parts)
        return text

    def plain(self) -> dict[str, object]:
        return {
            "service": self.service,
            "change": self.kind.value,
            "before": self.before,
            "after": self.after,
            "start": list(self.start),
            "stop": list(self.stop),
            "replace": list(self.replace),
            "parallelism": self.parallelism,
            "changed": list(self.changed),
        }


def _indices(service: str, indices: Sequence[int]) -> str:
    return ", ".join(f"{service}.{i}" for i in indices)


@dataclass(frozen=True)
class Plan:
    """Every service's change, in the order they are applied; or why it is refused."""

    changes: tuple[ServiceChange, ...]
    refused: tuple[str, ...] = ()
    budget: tuple[Decimal, Decimal] | None = None  # (running, wanted) when it changes

    @property
    def empty(self) -> bool:
        """Nothing to do: every service is unchanged, the budget too (nothing refused)."""
        unchanged = all(c.kind is Kind.unchanged for c in self.changes)
        return not self.refused and self.budget is None and unchanged

    def lines(self) -> list[str]:
        if self.refused:
            return [f"refused: {reason}" for reason in self.refused]
        lines = [change.describe() for change in self.changes]
        if self.budget is not None:
            lines.insert(0, f"budget: {self.budget[0]} -> {self.budget[1]} GLM")
        return lines

    def plain(self) -> dict[str, object]:
        budget = (
            None
            if self.budget is None
            else {"from": str(self.budget[0]), "to": str(self.budget[1])}
        )
        return {
            "refused": list(self.refused),
            "empty": self.empty,
            "budget": budget,
            "services": [change.plain() for change in self.changes],
        }


def plan(
    running: Manifest,
    wanted: Manifest,
    *,
    spent: Decimal = Decimal(0),
    restart: Mapping[str, Sequence[int]] | None = None,
) -> Plan:
    """The change from `running` to `wanted`; `restart` forces the replacement of these
    instances of services that stay (`golem-deploy restart`), even with an unchanged spec."""
    refused = _refusals(running, wanted, spent)
    restart = restart or {}
    removed = [
        _removed(running.services[name])
        for wave in reversed(running.start_order())
        for name in reversed(wave)
        if name not in wanted.services
    ]
    kept = [
        _change(running.services.get(name), wanted.services[name], restart.get(name, ()))
        for wave in wanted.start_order()
        for name in wave
    ]
    budget = None if wanted.budget == running.budget else (running.budget, wanted.budget)
    return Plan(tuple(removed + kept), tuple(refused), budget)


def _removed(spec: ServiceSpec) -> ServiceChange:
    stop = tuple(reversed(range(spec.instances)))
    return ServiceChange(spec.name, Kind.removed, spec.instances, 0, stop=stop)


def _change(old: ServiceSpec | None, new: ServiceSpec, restart: Sequence[int]) -> ServiceChange:
    if old is None:
        start = tuple(range(new.instances))
        return ServiceChange(new.name, Kind.added, 0, new.instances, start=start)
    before, after = old.instances, new.instances
    start = tuple(range(before, after))
    stop = tuple(reversed(range(after, before)))
    changed = _changed_keys(old, new)
    if changed:
        replace = tuple(range(min(before, after)))
    else:
        replace = tuple(sorted({i for i in restart if 0 <= i < min(before, after)}))
    if changed or replace:
        kind = Kind.replaced
    elif before != after:
        kind = Kind.scaled
    else:
        kind = Kind.unchanged
    return ServiceChange(
        new.name,
        kind,
        before,
        after,
        start=start,
        stop=stop,
        replace=replace,
        parallelism=new.update.parallelism,
        changed=changed,
    )


def _changed_keys(old: ServiceSpec, new: ServiceSpec) -> tuple[str, ...]:
    return tuple(
        f.name
        for f in dataclasses.fields(ServiceSpec)
        if f.name not in _NOT_SPEC and getattr(old, f.name) != getattr(new, f.name)
    )


def _refusals(running: Manifest, wanted: Manifest, spent: Decimal) -> list[str]:
    """Why the running deployment cannot take `wanted` (empty: it can)."""
    reasons: list[str] = []
    if wanted.budget < spent:
        reasons.append(f"the budget {wanted.budget} GLM is below the {spent} GLM already spent")
    old_range = running.network.cidr if running.network else "none"
    new_range = wanted.network.cidr if wanted.network else "none"
    if old_range != new_range:
        reasons.append(
            f"the network range cannot change while the deployment is up "
            f"(it runs on {old_range}, the manifest asks for {new_range})"
        )
    for what, old, new in (
        ("payment platform", running.payment, wanted.payment),
        ("subnet", running.subnet, wanted.subnet),
        ("market settings", running.market, wanted.market),
    ):
        if old != new:
            reasons.append(f"the {what} cannot change while the deployment is up")
    reasons += _network_room(wanted)
    if _ports(running) != _ports(wanted):
        reasons.append(
            "forwarded ports cannot change while the deployment is up (their listeners "
            "are bound when it starts); `down`, then `up`"
        )
    return reasons


def _network_room(wanted: Manifest) -> list[str]:
    """The checks `validate` makes of a file, for a `scale` that changes counts only: the
    range holds every instance, and no two services claim one host name."""
    if wanted.network is None:
        return []
    reasons = []
    instances = sum(spec.instances for spec in wanted.services.values())
    room = host_capacity(wanted.network.cidr)
    if 1 + instances > room:
        reasons.append(
            f"the network {wanted.network.cidr} holds {room} hosts, but the requestor and "
            f"{instances} instances need {1 + instances}"
        )
    owners: dict[str, str] = {}
    for name, spec in wanted.services.items():
        for host in host_names(name, spec.instances):
            owner = owners.setdefault(host.lower(), name)
            if owner != name:
                reasons.append(
                    f"services {owner!r} and {name!r} would both answer to host name {host!r}"
                )
                return reasons
    return reasons


def _ports(manifest: Manifest) -> dict[str, object]:
    return {name: spec.ports for name, spec in manifest.services.items() if spec.ports}


@dataclass
class ChangeStatus:
    """The last change asked for: what `up`, `scale`, `restart` wait on (GET /reconcile)."""

    id: int
    plan: Plan
    done: bool = False
    ok: bool = False
    reason: str = ""

    def plain(self) -> dict[str, object]:
        return {
            "id": self.id,
            "done": self.done,
            "ok": self.ok,
            "reason": self.reason,
            "plan": self.plan.plain(),
            "lines": self.plan.lines(),
        }


def batches(indices: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """The replacements run together: `update.parallelism` indices at a time, in order."""
    return [tuple(indices[k : k + size]) for k in range(0, len(indices), max(1, size))]
