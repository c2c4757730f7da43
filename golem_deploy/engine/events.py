"""The engine's one typed event stream.

Every effect the engine has on the world (allocation, agreement, activity, payment) and every
state change of an instance is reported as one of these frozen dataclasses, passed to the
`event_consumer` given to `Golem`. The consumer is called synchronously and in order, BEFORE
the engine goes further, so a supervisor can journal an id before anything else depends on it
(decision 5: journal before effect). An exception raised by the consumer propagates into the
engine and stops the deployment: a journal that cannot be written must not be ignored.

Amounts are Decimal GLM. `service` is the service's name, `index` the instance's position in
its cluster (stable across replacements on other providers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from golem_deploy.engine.lifecycle import ServiceState

__all__ = [
    "ActivityCreateFailed",
    "ActivityCreated",
    "ActivityDestroyed",
    "AgreementCreated",
    "AgreementOrphaned",
    "AgreementRejected",
    "AgreementTerminated",
    "AllocationAmended",
    "AllocationCreated",
    "AllocationReleased",
    "CommandFinished",
    "CommandOutput",
    "CommandStarted",
    "DebitNoteAccepted",
    "DemandSubscribed",
    "DemandUnsubscribed",
    "EngineEvent",
    "HealthCheckResult",
    "InstanceRenewalRefused",
    "InstanceRenewed",
    "InstanceRenewing",
    "InstanceRestartScheduled",
    "InstanceRestarted",
    "InstanceStateChanged",
    "InvoiceAccepted",
    "NetworkCreated",
    "NetworkRemoved",
    "PaymentRejected",
    "ProposalRejected",
    "ProviderAvoided",
    "YagnaOutage",
    "YagnaOutageBegan",
]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class EngineEvent:
    """Base of every event; `at` is when the engine produced it (UTC)."""

    at: datetime = field(default_factory=_now, compare=False)


@dataclass(frozen=True, kw_only=True)
class AllocationCreated(EngineEvent):
    allocation_id: str
    amount: Decimal
    platform: str


@dataclass(frozen=True, kw_only=True)
class AllocationAmended(EngineEvent):
    """The budget changed while the deployment runs: the allocation now holds `amount`."""

    allocation_id: str
    amount: Decimal


@dataclass(frozen=True, kw_only=True)
class AllocationReleased(EngineEvent):
    allocation_id: str


@dataclass(frozen=True, kw_only=True)
class NetworkCreated(EngineEvent):
    """A VPN now exists in yagna (removed by the Golem on exit; after a crash, by `down`)."""

    network_id: str
    cidr: str


@dataclass(frozen=True, kw_only=True)
class NetworkRemoved(EngineEvent):
    network_id: str


@dataclass(frozen=True, kw_only=True)
class DemandSubscribed(EngineEvent):
    service: str
    subscription_id: str


@dataclass(frozen=True, kw_only=True)
class DemandUnsubscribed(EngineEvent):
    service: str
    subscription_id: str


@dataclass(frozen=True, kw_only=True)
class ProposalRejected(EngineEvent):
    """We refused an offer (price over a cap, no common payment platform, avoided...)."""

    service: str
    provider_id: str
    provider_name: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class AgreementCreated(EngineEvent):
    """An agreement was created (and is being confirmed) for an instance."""

    service: str
    index: int
    agreement_id: str
    provider_id: str
    provider_name: str


@dataclass(frozen=True, kw_only=True)
class AgreementRejected(EngineEvent):
    """The provider did not approve our agreement (or approval timed out)."""

    service: str
    index: int
    agreement_id: str
    provider_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class AgreementOrphaned(EngineEvent):
    """yagna created an agreement whose id never reached us (the answer to
    `POST /agreements` was lost). Found by our demand's subscription; `cancelled` says
    whether it was cancelled, else `reason` says why it is left to expire at its validTo.
    It never bound anyone: nobody confirmed it and the provider never saw it."""

    service: str
    agreement_id: str
    provider_id: str
    cancelled: bool
    reason: str


@dataclass(frozen=True, kw_only=True)
class AgreementTerminated(EngineEvent):
    agreement_id: str
    provider_id: str
    by: str  # "requestor" | "provider"
    reason: str


@dataclass(frozen=True, kw_only=True)
class ActivityCreated(EngineEvent):
    service: str
    index: int
    activity_id: str
    agreement_id: str


@dataclass(frozen=True, kw_only=True)
class ActivityCreateFailed(EngineEvent):
    service: str
    index: int
    agreement_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class ActivityDestroyed(EngineEvent):
    """The activity ended. `abandoned`: its provider vanished, so yagna could not confirm
    the end (DELETE needs the provider) and never will; its agreement is terminated, nothing
    runs or bills there, and there is nothing left to clean up."""

    service: str
    index: int
    activity_id: str
    abandoned: bool = False


@dataclass(frozen=True, kw_only=True)
class InstanceStateChanged(EngineEvent):
    service: str
    index: int
    old: ServiceState
    new: ServiceState
    reason: str
    final: bool = False  # the instance ended for good (no restart will follow)
    #: "" for the instance holding its index; "successor" while a renewal's replacement
    #: starts, "retiring" for the instance it replaced (engine/replace.py)
    renewal: str = ""


@dataclass(frozen=True, kw_only=True)
class InstanceRenewing(EngineEvent):
    """A replacement for the instance starts on a fresh agreement, because its current
    agreement ends at `expires_at` (engine/renewal.py)."""

    service: str
    index: int
    agreement_id: str | None
    expires_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class InstanceRenewed(EngineEvent):
    """The replacement runs and now holds the index; the old instance stops (its shutdown
    runs). `renewals` counts the instance's renewals so far."""

    service: str
    index: int
    old_agreement_id: str | None
    agreement_id: str | None
    provider_name: str | None
    renewals: int
    took: float  # seconds from asking for the agreement to running (and healthy)


@dataclass(frozen=True, kw_only=True)
class InstanceRenewalRefused(EngineEvent):
    """The instance is not renewed (its lifetime ends, the budget would pass): it stops
    when its agreement ends (or its lifetime does)."""

    service: str
    index: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class InstanceRestartScheduled(EngineEvent):
    service: str
    index: int
    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, kw_only=True)
class InstanceRestarted(EngineEvent):
    """A scheduled restart is due: the instance looks for a new provider (the n-th time)."""

    service: str
    index: int
    attempt: int


@dataclass(frozen=True, kw_only=True)
class ProviderAvoided(EngineEvent):
    """The provider failed us; no further agreements with it in this deployment."""

    provider_id: str
    provider_name: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class CommandStarted(EngineEvent):
    service: str
    index: int
    command: str  # a readable one-liner, e.g. "run /bin/echo hi"


@dataclass(frozen=True, kw_only=True)
class CommandOutput(EngineEvent):
    """A chunk of live output of a command (as it arrives, not line-split)."""

    service: str
    index: int
    stream: str  # "stdout" | "stderr"
    text: str


@dataclass(frozen=True, kw_only=True)
class CommandFinished(EngineEvent):
    service: str
    index: int
    command: str
    return_code: int
    message: str | None


@dataclass(frozen=True, kw_only=True)
class HealthCheckResult(EngineEvent):
    service: str
    index: int
    ok: bool
    consecutive_failures: int
    message: str
    # Which instance (its record id): while a replacement runs beside the instance it
    # replaces, both report under the same (service, index).
    instance_id: str = ""


@dataclass(frozen=True, kw_only=True)
class DebitNoteAccepted(EngineEvent):
    debit_note_id: str
    agreement_id: str
    activity_id: str
    amount: Decimal  # the newly accepted part (total due minus what was accepted before)
    total_due: Decimal


@dataclass(frozen=True, kw_only=True)
class InvoiceAccepted(EngineEvent):
    invoice_id: str
    agreement_id: str
    amount: Decimal  # the invoice's full amount
    new_spend: Decimal  # the part not already covered by accepted debit notes


@dataclass(frozen=True, kw_only=True)
class PaymentRejected(EngineEvent):
    kind: str  # "invoice" | "debit_note"
    document_id: str
    agreement_id: str
    amount: Decimal
    reason: str


@dataclass(frozen=True, kw_only=True)
class YagnaOutageBegan(EngineEvent):
    """yagna at `api_url` stopped answering while this instance ran (`error`: how): the
    instance now waits for it, and a YagnaOutage follows when the wait ends. The supervisor
    shows the outage in the live table and `status` meanwhile."""

    service: str
    index: int
    api_url: str
    error: str


@dataclass(frozen=True, kw_only=True)
class YagnaOutage(EngineEvent):
    """yagna itself did not answer (stopped, restarting) while this instance ran: the
    instance waited for it instead of blaming its provider. `seconds` is how long it
    waited; `back` whether yagna answers again (else the engine's grace ran out)."""

    service: str
    index: int
    seconds: float
    back: bool
