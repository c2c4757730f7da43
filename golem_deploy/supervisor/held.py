"""What a deployment still holds, folded from its journal records.

Why a module of its own: the journal (journal.py) is only the durable list of records; this
is their meaning. `fold` replays records into a `Held` -- allocations, agreements,
activities, VPN networks and the local network not yet released, plus the last known state
of every instance and the money spent -- which is what `down` releases after a crash and
what `status` shows without a supervisor. `held_to_plain` / `held_from_plain` turn a Held
into JSON and back exactly, so a compacted journal (one snapshot record, then the newer
records; see journal_compact.py) folds to the very same Held as the full one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from golem_deploy.errors import GolemDeployError

SNAPSHOT_KIND = "JournalSnapshot"
"""The record kind of a compaction snapshot: {"kind": SNAPSHOT_KIND, "held": <plain Held>}."""

SNAPSHOT_VERSION = 1


@dataclass
class HeldAgreement:
    agreement_id: str
    provider_id: str | None = None
    provider_name: str | None = None
    service: str | None = None
    index: int | None = None


@dataclass
class Held:
    """What the journal says a deployment still holds (and what it last knew about it)."""

    name: str | None = None
    network_kind: str | None = None  # "local" | "yagna"
    api_url: str | None = None
    budget: str | None = None
    supervisor_pid: int | None = None
    allocations: dict[str, dict[str, Any]] = field(default_factory=dict)
    agreements: dict[str, HeldAgreement] = field(default_factory=dict)
    activities: dict[str, str | None] = field(default_factory=dict)  # activity -> agreement
    # The private local network's state folder: its own pid files there name every
    # process it started, which is what `golem_deploy.localnet.stop` ends.
    localnet_dir: str | None = None
    localnet_providers: int | None = None  # how many providers it was started with
    networks: dict[str, str] = field(default_factory=dict)  # VPN id -> cidr, not yet removed
    instance_ips: dict[tuple[str, int], str] = field(default_factory=dict)
    services: list[tuple[str, int]] = field(default_factory=list)  # (name, instances)
    instance_states: dict[tuple[str, int], str] = field(default_factory=dict)
    # last known agreement/provider/activity per instance, for a snapshot after a crash
    instance_info: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    agreement_owner: dict[str, tuple[str, int]] = field(default_factory=dict)
    # agreements that had an activity (work was done: an invoice is due) and those whose
    # invoice was accepted; with what debit notes already covered, per agreement
    worked: set[str] = field(default_factory=set)
    invoiced: set[str] = field(default_factory=set)
    accepted_by_agreement: dict[str, Decimal] = field(default_factory=dict)
    instance_cost: dict[tuple[str, int], Decimal] = field(default_factory=dict)
    # replacements per instance (the engine's `restarts`), for status after the supervisor
    instance_restarts: dict[tuple[str, int], int] = field(default_factory=dict)
    # restarts scheduled (InstanceRestartScheduled.attempt) but not yet performed: a restart
    # counts once the instance leaves its ended state (a stop may cancel it before)
    restarts_scheduled: dict[tuple[str, int], int] = field(default_factory=dict)
    # renewals per instance (InstanceRenewed.renewals): agreements it moved to before one ended
    instance_renewals: dict[tuple[str, int], int] = field(default_factory=dict)
    spent: Decimal = Decimal(0)
    stopped: bool = False  # a DeploymentStopped was the last word
    failure: str | None = None  # why the deployment failed, if it did
    ended: str | None = None  # why it went down by itself (budget, expiration), if it did
    # this run's agreements whose invoice never came (agreement, seconds waited)
    invoices_missing: list[tuple[str, Any]] = field(default_factory=list)
    last_ts: float | None = None

    @property
    def empty(self) -> bool:
        """True when nothing costs money or runs any more."""
        return not (
            self.allocations
            or self.agreements
            or self.activities
            or self.networks
            or self.localnet_dir
        )

    def summary(self) -> list[str]:
        """Human lines: one per kind of thing still held."""
        lines: list[str] = []
        if self.allocations:
            lines.append(f"{len(self.allocations)} allocation(s): {', '.join(self.allocations)}")
        if self.agreements:
            lines.append(
                f"{len(self.agreements)} agreement(s): "
                + ", ".join(_short(a) for a in self.agreements)
            )
        if self.activities:
            lines.append(
                f"{len(self.activities)} activity(ies): "
                + ", ".join(_short(a) for a in self.activities)
            )
        if self.networks:
            lines.append(f"{len(self.networks)} VPN network(s): {', '.join(self.networks)}")
        if self.localnet_dir:
            lines.append(f"local network in {self.localnet_dir}")
        return lines


def _short(ident: str) -> str:
    return ident if len(ident) <= 12 else ident[:12] + "…"


def _get(record: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = record.get(name)
        if value is not None:
            return value
    return None


def _instance_key(record: Mapping[str, Any]) -> tuple[str, int] | None:
    service, index = record.get("service"), record.get("index")
    if isinstance(service, str) and isinstance(index, int):
        return (service, index)
    return None


def fold(records: Iterable[Mapping[str, Any]]) -> Held:
    """Replay records into what is still held. Pure: no I/O, order matters, unknown kinds skip."""
    held = Held()
    for record in records:
        held = apply(held, record)
    return held


def apply(held: Held, rec: Mapping[str, Any]) -> Held:
    """One record's effect on `held` (changed in place and returned; a snapshot record
    replaces it with the state it carries -- see journal_compact)."""
    kind = rec.get("kind")
    if kind == SNAPSHOT_KIND:
        return held_from_plain(rec.get("held"))
    held.last_ts = rec.get("ts", held.last_ts)
    if kind == "DeploymentStarted":
        held.name = rec.get("name", held.name)
        held.network_kind = rec.get("network_kind", held.network_kind)
        held.api_url = rec.get("api_url", held.api_url)
        held.budget = rec.get("budget", held.budget)
        held.supervisor_pid = rec.get("pid", held.supervisor_pid)
        held.services = [
            (str(s.get("name")), int(s.get("instances", 0)))
            for s in rec.get("services") or []
            if isinstance(s, dict)
        ]
        held.stopped = False
        held.failure = None
        held.ended = None
        held.invoices_missing = []
    elif kind == "ReconcileFinished" and isinstance(rec.get("services"), list):
        # A change to the running deployment: the services it runs now (reconcile.py).
        held.services = [
            (str(s.get("name")), int(s.get("instances", 0)))
            for s in rec["services"]
            if isinstance(s, dict)
        ]
    elif kind == "NetworkReady":
        held.network_kind = rec.get("network_kind", held.network_kind)
        held.api_url = rec.get("api_url", held.api_url)
    elif kind == "LocalnetStarting" or kind == "LocalnetStarted":
        held.localnet_dir = rec.get("state_dir", held.localnet_dir)
        if isinstance(rec.get("providers"), int):
            held.localnet_providers = rec["providers"]
        if rec.get("api_url"):
            held.api_url = rec["api_url"]
    elif kind == "LocalnetStopped":
        held.localnet_dir = None
    elif kind == "NetworkCreated":
        if rec.get("network_id"):
            held.networks[str(rec["network_id"])] = str(rec.get("cidr"))
    elif kind == "NetworkRemoved":
        held.networks.pop(str(rec.get("network_id")), None)
    elif kind == "NetworkPlanned":  # the supervisor's: every instance's fixed address
        for entry in rec.get("addresses") or []:
            if isinstance(entry, list) and len(entry) == 3:
                service, index, ip = entry
                if isinstance(service, str) and isinstance(index, int):
                    held.instance_ips[(service, index)] = str(ip)
    elif kind == "AllocationCreated":
        alloc = _get(rec, "allocation_id", "id")
        if alloc:
            held.allocations[alloc] = {"amount": rec.get("amount")}
    elif kind == "AllocationAmended":  # the budget changed while the deployment ran
        held.allocations[_get(rec, "allocation_id", "id")] = {"amount": rec.get("amount")}
        held.budget = rec.get("amount", held.budget)
    elif kind == "AllocationReleased":
        held.allocations.pop(_get(rec, "allocation_id", "id"), None)
    elif kind == "AgreementCreated":
        agr = _get(rec, "agreement_id", "id")
        if agr:
            held.agreements[agr] = HeldAgreement(
                agreement_id=agr,
                provider_id=rec.get("provider_id"),
                provider_name=rec.get("provider_name"),
                service=rec.get("service"),
                index=rec.get("index"),
            )
            key = _instance_key(rec)
            if key:
                held.agreement_owner[agr] = key
                info = held.instance_info.setdefault(key, {})
                info.update(
                    agreement_id=agr,
                    provider_id=rec.get("provider_id"),
                    provider_name=rec.get("provider_name"),
                    activity_id=None,
                )
    elif kind == "AgreementTerminated":
        held.agreements.pop(_get(rec, "agreement_id", "id"), None)
    elif kind == "ActivityCreated":
        act = _get(rec, "activity_id", "id")
        if act:
            held.activities[act] = rec.get("agreement_id")
            if rec.get("agreement_id"):
                held.worked.add(str(rec["agreement_id"]))
            key = _instance_key(rec)
            if key:
                held.instance_info.setdefault(key, {})["activity_id"] = act
    elif kind == "ActivityDestroyed":
        held.activities.pop(_get(rec, "activity_id", "id"), None)
    elif kind == "InstanceStateChanged" and not rec.get("renewal"):
        # (a renewal's successor or retiring instance does not speak for the instance)
        service, index, new = rec.get("service"), rec.get("index"), rec.get("new")
        if isinstance(service, str) and isinstance(index, int) and isinstance(new, str):
            key = (service, index)
            held.instance_states[key] = new
            if new not in ("terminated", "unresponsive") and key in held.restarts_scheduled:
                held.instance_restarts[key] = held.restarts_scheduled.pop(key)
    elif kind == "InstanceRenewed":
        key = _instance_key(rec)
        renewals = rec.get("renewals")
        if key is not None and isinstance(renewals, int):
            held.instance_renewals[key] = renewals
            held.instance_states[key] = "running"
    elif kind == "InstanceRestartScheduled":
        key = _instance_key(rec)
        attempt = rec.get("attempt")
        if key is not None and isinstance(attempt, int):
            held.restarts_scheduled[key] = attempt
    elif kind in ("DebitNoteAccepted", "InvoiceAccepted"):
        # The engine reports the newly spent part: a debit note's `amount` is its total
        # due minus what was accepted before; an invoice's `new_spend` is what debit
        # notes had not already covered. So the sum is what was spent.
        new = rec.get("new_spend") if kind == "InvoiceAccepted" else rec.get("amount")
        try:
            amount = Decimal(str(new))
        except (ArithmeticError, ValueError):
            return held
        held.spent += amount
        agreement = str(rec.get("agreement_id"))
        held.accepted_by_agreement[agreement] = (
            held.accepted_by_agreement.get(agreement, Decimal(0)) + amount
        )
        if kind == "InvoiceAccepted":
            held.invoiced.add(agreement)
        owner = held.agreement_owner.get(agreement)
        if owner is not None:
            held.instance_cost[owner] = held.instance_cost.get(owner, Decimal(0)) + amount
    elif kind == "DeploymentFailed":
        held.failure = rec.get("reason") or "failed"
    elif kind == "DeploymentEnded":
        held.ended = rec.get("reason") or "every instance ended"
    elif kind == "InvoiceMissing":
        held.invoices_missing.append((str(rec.get("agreement_id")), rec.get("waited")))
    elif kind == "DeploymentStopped":
        held.stopped = True
    return held


# ---- the exact JSON form of a Held (a compaction snapshot carries it) --------------------


class SnapshotUnreadable(GolemDeployError):
    """A snapshot record that does not decode: the journal was edited or is from a newer
    golem-deploy. Never guessed around: an empty Held would make `down` release nothing."""


_Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]
"""(encode, decode) of one Held field."""


def _same(value: Any) -> Any:
    return value


def _dict(value: Any) -> Any:
    return dict(value)


def _instance_rows(convert: Callable[[Any], Any]) -> _Codec:
    """A dict keyed by instance (service, index) <-> a list of [service, index, value]."""
    return (
        lambda mapping: [[service, index, convert(v)] for (service, index), v in mapping.items()],
        lambda rows: {(str(row[0]), int(row[1])): convert(row[2]) for row in rows},
    )


def _decimal_rows() -> _Codec:
    return (
        lambda mapping: [[s, i, str(v)] for (s, i), v in mapping.items()],
        lambda rows: {(str(row[0]), int(row[1])): Decimal(str(row[2])) for row in rows},
    )


_PLAIN: _Codec = (_same, _same)
_DICT: _Codec = (_dict, _dict)

# Every field of Held, and how it goes to JSON and back. A field missing here makes
# held_to_plain fail loudly (and the unit test that checks the table), never drop it.
_CODECS: dict[str, _Codec] = {
    "name": _PLAIN,
    "network_kind": _PLAIN,
    "api_url": _PLAIN,
    "budget": _PLAIN,
    "supervisor_pid": _PLAIN,
    "allocations": (
        lambda m: {k: dict(v) for k, v in m.items()},
        lambda m: {str(k): dict(v) for k, v in m.items()},
    ),
    "agreements": (
        lambda m: [dataclasses.asdict(agreement) for agreement in m.values()],
        lambda rows: {str(r["agreement_id"]): HeldAgreement(**r) for r in rows},
    ),
    "activities": _DICT,
    "localnet_dir": _PLAIN,
    "localnet_providers": _PLAIN,
    "networks": _DICT,
    "instance_ips": _instance_rows(_same),
    "services": (
        lambda pairs: [[name, count] for name, count in pairs],
        lambda rows: [(str(name), int(count)) for name, count in rows],
    ),
    "instance_states": _instance_rows(_same),
    "instance_info": _instance_rows(_dict),
    "agreement_owner": (
        lambda m: {agreement: [s, i] for agreement, (s, i) in m.items()},
        lambda m: {str(agreement): (str(s), int(i)) for agreement, (s, i) in m.items()},
    ),
    "worked": (sorted, set),
    "invoiced": (sorted, set),
    "accepted_by_agreement": (
        lambda m: {k: str(v) for k, v in m.items()},
        lambda m: {str(k): Decimal(str(v)) for k, v in m.items()},
    ),
    "instance_cost": _decimal_rows(),
    "instance_restarts": _instance_rows(_same),
    "restarts_scheduled": _instance_rows(_same),
    "instance_renewals": _instance_rows(_same),
    "spent": (str, lambda v: Decimal(str(v))),
    "stopped": _PLAIN,
    "failure": _PLAIN,
    "ended": _PLAIN,
    "invoices_missing": (
        lambda pairs: [[agreement, waited] for agreement, waited in pairs],
        lambda rows: [(str(agreement), waited) for agreement, waited in rows],
    ),
    "last_ts": _PLAIN,
}


def held_to_plain(held: Held) -> dict[str, Any]:
    """`held` as JSON-ready data that held_from_plain turns back into an equal Held."""
    plain: dict[str, Any] = {"version": SNAPSHOT_VERSION}
    for spec in dataclasses.fields(Held):
        encode, _ = _CODECS[spec.name]  # KeyError: a new field needs its codec
        plain[spec.name] = encode(getattr(held, spec.name))
    return plain


def held_from_plain(data: object) -> Held:
    """The Held a snapshot record carries (fields it lacks keep their defaults)."""
    if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
        raise SnapshotUnreadable(
            "the journal's snapshot record is not one this golem-deploy can read",
            hint="was the journal edited, or written by a newer golem-deploy?",
        )
    values: dict[str, Any] = {}
    try:
        for name, (_, decode) in _CODECS.items():
            if name in data and data[name] is not None:
                values[name] = decode(data[name])
        return Held(**values)
    except (TypeError, ValueError, KeyError, ArithmeticError) as error:
        raise SnapshotUnreadable(
            f"the journal's snapshot record is damaged ({error})",
            hint="was the journal edited by hand?",
        ) from None
