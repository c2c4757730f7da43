"""yapapi-shaped events: yapapi 0.13.1's event classes, names and attributes, for
`Golem.add_event_consumer` (yapapi's `from yapapi import events` becomes
`from golem_deploy.engine import yapapi_events as events`).

The engine's own events (engine/events.py) stay what the supervisor journals; these are
made from them (engine/dispatch.py) for programs written against yapapi. The hierarchy and
the names are yapapi's: `Event` (`exc_info`, `timestamp`, `exception`) > `JobEvent` (`job`,
`job_id`) > `AgreementEvent` (`agreement`, `agr_id`, `provider_id`, `provider_info`) >
`ActivityEvent` (`activity`) > `ServiceEvent` (`service`, the user's Service object) and
`CommandEvent` (`command`); `InvoiceEvent`/`DebitNoteEvent` (`amount`). yapapi's REST
objects (`job`, `agreement`, `activity`, `invoice`, ...) are small frozen records here with
the attributes yapapi programs read (`.id`, `provider_info.name`, `.amount`).

Differences, each for a reason: `agreement`/`activity` of a `ServiceStateChanged` are None
while the instance holds no provider (yapapi never emits then: it has no WorkContext);
`CommandEvent.command` is the command as text (yapapi's Command objects are the engine's
script steps); `AgreementTerminated.reason` is `{"message": ..., "terminator": ...}`.
Task API events (TaskStarted, ...) do not exist: the engine has no Task API.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING

from golem_deploy.engine.lifecycle import ServiceState

if TYPE_CHECKING:
    from golem_deploy.engine.service import Service

__all__ = [
    "ActivityCreateFailed",
    "ActivityCreated",
    "ActivityEvent",
    "ActivityRef",
    "AgreementConfirmed",
    "AgreementCreated",
    "AgreementEvent",
    "AgreementRef",
    "AgreementRejected",
    "AgreementTerminated",
    "CommandEvent",
    "CommandExecuted",
    "CommandStarted",
    "CommandStdErr",
    "CommandStdOut",
    "DebitNoteAccepted",
    "DebitNoteEvent",
    "DebitNoteRef",
    "Event",
    "ExcInfo",
    "InvoiceAccepted",
    "InvoiceEvent",
    "InvoiceRef",
    "Job",
    "JobEvent",
    "JobFinished",
    "JobStarted",
    "PaymentFailed",
    "ProposalEvent",
    "ProposalRef",
    "ProposalRejected",
    "ProviderInfo",
    "ServiceEvent",
    "ServiceFinished",
    "ServiceStateChanged",
    "ShutdownFinished",
    "Subscription",
    "SubscriptionCreated",
    "SubscriptionEvent",
]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


# ----------------------------------------------------- what yapapi's REST objects carry


@dataclass(frozen=True)
class Job:
    """One `run_service` call (yapapi's Job): `id` is the Cluster's id."""

    id: str
    service: str  # the service's name


@dataclass(frozen=True)
class Subscription:
    id: str


@dataclass(frozen=True)
class ProviderInfo:
    """yapapi's NodeInfo, as far as events use it."""

    name: str
    subnet_tag: str | None = None


@dataclass(frozen=True)
class ProposalRef:
    """An offer, by its issuer (the engine's events do not name proposals)."""

    issuer: str
    provider_name: str


@dataclass(frozen=True)
class AgreementRef:
    id: str
    provider_id: str
    provider_info: ProviderInfo


@dataclass(frozen=True)
class ActivityRef:
    id: str


@dataclass(frozen=True)
class InvoiceRef:
    id: str
    amount: str  # GLM, as yapapi's (a decimal string)


@dataclass(frozen=True)
class DebitNoteRef:
    id: str
    total_amount_due: str


# ------------------------------------------------------------------ abstract events


def _now() -> datetime:
    return datetime.now()  # local time, as yapapi's `timestamp`


@dataclass(frozen=True, kw_only=True, repr=False)
class Event:
    """Base of every yapapi-shaped event: `exc_info` as `sys.exc_info()` when an error
    goes with it, `timestamp` (local time) when it was made."""

    exc_info: ExcInfo | None = None
    timestamp: datetime = field(default_factory=_now, compare=False)

    def __str__(self) -> str:
        """yapapi's format: the fields but `exc_info` (shown as `exception=`) and
        `timestamp`."""
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "exc_info":
                if value:
                    shown.append(f"exception={value[1]!r}")
            elif f.name != "timestamp":
                shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def __repr__(self) -> str:
        return str(self)

    @property
    def exception(self) -> BaseException | None:
        return self.exc_info[1] if self.exc_info else None


@dataclass(frozen=True, kw_only=True, repr=False)
class JobEvent(Event):
    job: Job

    @property
    def job_id(self) -> str:
        return self.job.id


@dataclass(frozen=True, kw_only=True, repr=False)
class SubscriptionEvent(JobEvent):
    subscription: Subscription


@dataclass(frozen=True, kw_only=True, repr=False)
class ProposalEvent(JobEvent):
    proposal: ProposalRef

    @property
    def provider_id(self) -> str:
        return self.proposal.issuer


@dataclass(frozen=True, kw_only=True, repr=False)
class AgreementEvent(JobEvent):
    agreement: AgreementRef | None  # None: the instance holds no provider now

    @property
    def agr_id(self) -> str | None:
        return self.agreement.id if self.agreement is not None else None

    @property
    def provider_id(self) -> str | None:
        return self.agreement.provider_id if self.agreement is not None else None

    @property
    def provider_info(self) -> ProviderInfo | None:
        return self.agreement.provider_info if self.agreement is not None else None


@dataclass(frozen=True, kw_only=True, repr=False)
class ActivityEvent(AgreementEvent):
    activity: ActivityRef | None


@dataclass(frozen=True, kw_only=True, repr=False)
class ServiceEvent(ActivityEvent):
    service: Service


@dataclass(frozen=True, kw_only=True, repr=False)
class CommandEvent(ActivityEvent):
    command: str


@dataclass(frozen=True, kw_only=True, repr=False)
class InvoiceEvent(AgreementEvent):
    invoice: InvoiceRef

    @property
    def amount(self) -> str:
        return self.invoice.amount


@dataclass(frozen=True, kw_only=True, repr=False)
class DebitNoteEvent(AgreementEvent):
    debit_note: DebitNoteRef

    @property
    def amount(self) -> str:
        return self.debit_note.total_amount_due


# ---------------------------------------------------------------------- real events


@dataclass(frozen=True, kw_only=True, repr=False)
class JobStarted(JobEvent):
    """`run_service` started a cluster."""


@dataclass(frozen=True, kw_only=True, repr=False)
class JobFinished(JobEvent):
    """The cluster ended; failed if `exception` is set."""


@dataclass(frozen=True, kw_only=True, repr=False)
class SubscriptionCreated(SubscriptionEvent):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class ProposalRejected(ProposalEvent):
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class AgreementCreated(AgreementEvent):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class AgreementConfirmed(AgreementEvent):
    """The provider approved (made when the engine learns it: the activity is created)."""


@dataclass(frozen=True, kw_only=True, repr=False)
class AgreementRejected(AgreementEvent):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class AgreementTerminated(AgreementEvent):
    reason: dict[str, str]


@dataclass(frozen=True, kw_only=True, repr=False)
class ActivityCreated(ActivityEvent):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class ActivityCreateFailed(AgreementEvent):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class ServiceStateChanged(ServiceEvent):
    """The instance `service` moved from `old` to `new`; `exc_info` is the error behind the
    move when there is one (golem-deploy's addition: yapapi leaves it None here)."""

    old: ServiceState
    new: ServiceState


@dataclass(frozen=True, kw_only=True, repr=False)
class ServiceFinished(ServiceEvent):
    """The instance ended on its provider (terminated or unresponsive)."""


@dataclass(frozen=True, kw_only=True, repr=False)
class CommandStarted(CommandEvent):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class CommandStdOut(CommandEvent):
    output: str


@dataclass(frozen=True, kw_only=True, repr=False)
class CommandStdErr(CommandEvent):
    output: str


@dataclass(frozen=True, kw_only=True, repr=False)
class CommandExecuted(CommandEvent):
    success: bool
    message: str
    stdout: str | None = None
    stderr: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class DebitNoteAccepted(DebitNoteEvent):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class InvoiceAccepted(InvoiceEvent):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class PaymentFailed(AgreementEvent):
    """An invoice or debit note was not accepted (over budget); `exception` says why."""


@dataclass(frozen=True, kw_only=True, repr=False)
class ShutdownFinished(Event):
    """The Golem stopped and is no longer operative."""


def amount_text(amount: Decimal) -> str:
    """An amount as yapapi's REST objects give it: a plain decimal string."""
    return format(amount.normalize(), "f")
