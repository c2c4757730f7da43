"""The deployment journal: append-only JSON lines, fsync'd per record.

Why: the supervisor can be SIGKILLed at any moment. Whatever it had acquired on the market
(allocation, agreements, activities) and locally (the private local network) keeps costing
money or CPU until someone releases it. So every acquisition and every release is appended
here *before the engine proceeds* (the engine calls its event consumer synchronously), and
`fold()` turns the journal back into "what is still held" -- the truth after a crash that
`golem-deploy down` uses to clean up.

One record per line: {"ts": <unix seconds>, "kind": <event name>, ...plain fields}. The kinds
written by the engine are its event class names (AllocationCreated, AgreementTerminated, ...);
the supervisor adds its own (DeploymentStarted, LocalnetStarted, LocalnetStopped,
SupervisorStopped, DeploymentStopped). Secrets never reach the file: the writer redacts the
app key and every manifest env value from every string it writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from golem_deploy.supervisor.redact import (
    MIN_SECRET_LENGTH,
    REDACTED,
    Redactor,
    secret_name,
    to_plain,
)

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "Held",
    "HeldAgreement",
    "Journal",
    "Redactor",
    "fold",
    "load",
    "read",
    "secret_name",
    "to_plain",
]

log = logging.getLogger(__name__)


# Field names that carry credentials; dropped entirely, whatever the event.
_SECRET_FIELDS = frozenset({"app_key", "appkey", "api_key", "token", "env", "password"})


class Journal:
    """Appends records to one file; each record is flushed and fsync'd before `append` returns.

    Thread-safe (the daemon writes from the event loop and, rarely, from worker threads).
    """

    def __init__(
        self, path: Path, *, secrets: Iterable[str] = (), redactor: Redactor | None = None
    ) -> None:
        self.path = path
        self._redactor = redactor if redactor is not None else Redactor(secrets)
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        _end_torn_line(fd)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def append(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Write one record durably and return it (as written, secrets redacted).

        A field named like a record key (`ts`, `kind`: e.g. PaymentRejected.kind, the kind of
        document) is written as `event_<name>`, so it never replaces the record's own."""
        record: dict[str, Any] = {"ts": time.time(), "kind": kind}
        for name, value in fields.items():
            if name.lower() in _SECRET_FIELDS:
                continue
            key = f"event_{name}" if name in record else name
            record[key] = to_plain(value, self._redactor)
        line = json.dumps(record, separators=(",", ":"), sort_keys=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        return record

    def append_event(self, event: Any) -> dict[str, Any]:
        """Journal an engine event (a frozen dataclass): kind = class name, fields as data."""
        fields: dict[str, Any] = {}
        if dataclasses.is_dataclass(event) and not isinstance(event, type):
            fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        return self.append(type(event).__name__, **fields)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _end_torn_line(fd: int) -> None:
    """A power loss mid-write leaves a last line without its newline: end it, so the next
    record starts a line of its own instead of being glued to (and lost with) the torn one."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")
        os.fsync(fd)


def read(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a journal; a torn line (crash mid-write) is skipped with a warning.

    Only a last line can be torn (fsync made the rest whole); once a writer reopened the
    journal the torn line is ended with a newline and stays, skipped, in the middle."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                log.warning("%s: line %d is torn (a crash mid-write?); skipped", path, number)
                continue
            if isinstance(record, dict) and isinstance(record.get("kind"), str):
                yield record


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
    spent: Decimal = Decimal(0)
    stopped: bool = False  # a DeploymentStopped was the last word
    failure: str | None = None  # why the deployment failed, if it did
    ended: str | None = None  # why it went down by itself (budget, expiration), if it did
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
    for rec in records:
        kind = rec.get("kind")
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
        elif kind == "NetworkReady":
            held.network_kind = rec.get("network_kind", held.network_kind)
            held.api_url = rec.get("api_url", held.api_url)
        elif kind == "LocalnetStarting" or kind == "LocalnetStarted":
            held.localnet_dir = rec.get("state_dir", held.localnet_dir)
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
        elif kind == "InstanceStateChanged":
            service, index, new = rec.get("service"), rec.get("index"), rec.get("new")
            if isinstance(service, str) and isinstance(index, int) and isinstance(new, str):
                key = (service, index)
                held.instance_states[key] = new
                if new not in ("terminated", "unresponsive") and key in held.restarts_scheduled:
                    held.instance_restarts[key] = held.restarts_scheduled.pop(key)
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
                continue
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
        elif kind == "DeploymentStopped":
            held.stopped = True
    return held


def load(path: Path) -> Held:
    """Fold the journal file at `path` (an absent file holds nothing)."""
    return fold(read(path))
