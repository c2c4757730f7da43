"""The vocabulary of the instance lifecycle: states, the events fed to the machine and the
actions it answers with. The rules that connect them live in lifecycle.py (which re-exports
everything here, so `lifecycle.X` is the one name to use)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "AcquireAgreement",
    "Action",
    "ActivityReady",
    "ActivityUnresponsive",
    "AgreementTerminatedByProvider",
    "AvoidProvider",
    "CheckProvider",
    "Event",
    "ExpirationReached",
    "HealthCheckFailed",
    "HealthCheckPassed",
    "IllegalTransition",
    "LifecycleConfig",
    "NetworkLost",
    "ProviderAlive",
    "ProviderMisbehaved",
    "ReleaseActivity",
    "ReleaseCause",
    "ReportHealth",
    "RestartDue",
    "RunHandler",
    "RunRaised",
    "RunReturned",
    "ScheduleRestart",
    "ServiceState",
    "ShutdownRaised",
    "ShutdownReturned",
    "Spawn",
    "StartRaised",
    "StartReturned",
    "StopRequested",
]


class ServiceState(Enum):
    """The state of one instance; the values are the names users see."""

    pending = "pending"
    starting = "starting"
    running = "running"
    stopping = "stopping"
    terminated = "terminated"
    unresponsive = "unresponsive"

    def __str__(self) -> str:
        return self.value


# ---------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Spawn:
    """The instance was created: go find a provider."""


@dataclass(frozen=True)
class ActivityReady:
    """An agreement was signed and an activity created on a provider."""


@dataclass(frozen=True)
class StartReturned:
    """The start handler finished normally."""


@dataclass(frozen=True)
class StartRaised:
    reason: str


@dataclass(frozen=True)
class RunReturned:
    """The run handler finished normally."""


@dataclass(frozen=True)
class RunRaised:
    reason: str


@dataclass(frozen=True)
class ShutdownReturned:
    """The shutdown handler finished normally."""


@dataclass(frozen=True)
class ShutdownRaised:
    reason: str


@dataclass(frozen=True)
class StopRequested:
    reason: str = "stop requested"


@dataclass(frozen=True)
class ExpirationReached:
    """The cluster's expiration time passed; stop cleanly, never restart."""


@dataclass(frozen=True)
class ActivityUnresponsive:
    """The provider vanished: yagna reports the activity Unresponsive/Terminated, or says
    its ExeUnit is gone, or it stopped answering at all."""

    reason: str = "activity unresponsive"


@dataclass(frozen=True)
class AgreementTerminatedByProvider:
    reason: str = "agreement terminated by the provider"


@dataclass(frozen=True)
class NetworkLost:
    """The network under the instance died with its activity (the supervisor's private local
    network lost a daemon or its provider host, and every activity on it ended). Like
    ActivityUnresponsive, but nobody's fault: the provider is not avoided afterwards."""

    reason: str = "the local network died"


@dataclass(frozen=True)
class ProviderMisbehaved:
    """The provider broke the agreed payment terms (debit notes too often): we end its
    agreement ourselves and never use it again; like its vanishing, the instance failed."""

    reason: str = "provider broke the payment terms"


@dataclass(frozen=True)
class ProviderAlive:
    """The answer to CheckProvider when the provider is still there: the handler failure
    (or the health checks) that asked for the check really failed."""


@dataclass(frozen=True)
class HealthCheckPassed:
    """A health check succeeded; the consecutive failure count starts over."""

    message: str = "ok"


@dataclass(frozen=True)
class HealthCheckFailed:
    reason: str = "health check failed"


@dataclass(frozen=True)
class RestartDue:
    """The backoff of a scheduled restart elapsed."""


Event = (
    Spawn
    | ActivityReady
    | StartReturned
    | StartRaised
    | RunReturned
    | RunRaised
    | ShutdownReturned
    | ShutdownRaised
    | StopRequested
    | ExpirationReached
    | ActivityUnresponsive
    | AgreementTerminatedByProvider
    | NetworkLost
    | ProviderMisbehaved
    | ProviderAlive
    | HealthCheckPassed
    | HealthCheckFailed
    | RestartDue
)

# --------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class AcquireAgreement:
    """Negotiate an agreement and create an activity (avoiding providers that failed us).

    `restart` is n for the n-th restart of an instance that ran, 0 otherwise (the first
    acquisition, or a respawn of an instance that never started); `respawn` is n for the
    n-th respawn of an instance whose start failed, else 0."""

    restart: int = 0
    respawn: int = 0

    @property
    def reset(self) -> bool:
        """The instance was on a provider before: its `reset()` hook runs first (yapapi
        calls it before every restart, so handlers start over from a clean object)."""
        return self.restart > 0 or self.respawn > 0


@dataclass(frozen=True)
class RunHandler:
    name: str  # "start" | "run" | "shutdown"


@dataclass(frozen=True)
class AvoidProvider:
    """Never sign with the current provider again in this deployment."""

    reason: str


class ReleaseCause(Enum):
    """Who ended the work on this provider; decides how the I/O layer releases it."""

    requestor = "requestor"  # we end it: terminate the agreement, the provider invoices
    vanished = "vanished"  # the provider is gone: be brief, no invoice will come
    provider = "provider"  # the provider terminated the agreement itself (and invoices)
    network_lost = "network_lost"  # as vanished, once the network is back (NetworkLost)


@dataclass(frozen=True)
class ReleaseActivity:
    """Stop everything running for the current provider, destroy the activity, terminate the
    agreement (or cancel a pending acquisition)."""

    reason: str
    cause: ReleaseCause = ReleaseCause.requestor

    @property
    def expect_invoice(self) -> bool:
        """A vanished provider will never send its invoice: don't wait for it."""
        return self.cause not in (ReleaseCause.vanished, ReleaseCause.network_lost)

    @property
    def terminate_agreement(self) -> bool:
        """Terminate the agreement ourselves, unless the provider already did."""
        return self.cause is not ReleaseCause.provider


@dataclass(frozen=True)
class ScheduleRestart:
    """Wait `delay` seconds, then feed RestartDue."""

    delay: float
    attempt: int  # 1 for the first restart
    reason: str = field(default="", compare=False)


@dataclass(frozen=True)
class CheckProvider:
    """A handler (or the health checks) failed; before that counts as the service's failure,
    find out whether the provider is still there: answer ProviderAlive, or
    ActivityUnresponsive when it is gone."""

    reason: str


@dataclass(frozen=True)
class ReportHealth:
    """Report a health check's result (with the machine's count of failures in a row)."""

    ok: bool
    consecutive_failures: int
    message: str


Action = (
    AcquireAgreement
    | RunHandler
    | AvoidProvider
    | ReleaseActivity
    | ScheduleRestart
    | CheckProvider
    | ReportHealth
)


class IllegalTransition(Exception):
    """An event that cannot happen in the current state: a bug in the runner, never a race
    (the races that can happen are listed in lifecycle.RACES and are no-ops)."""


@dataclass(frozen=True)
class LifecycleConfig:
    respawn_unstarted_instances: bool = True
    restart_policy: str = "never"  # never | on-failure | always
    max_restarts: int = 3
    backoff: float = 5.0
    healthcheck_retries: int = 3

    def __post_init__(self) -> None:
        if self.restart_policy not in ("never", "on-failure", "always"):
            raise ValueError(f"unknown restart policy {self.restart_policy!r}")
