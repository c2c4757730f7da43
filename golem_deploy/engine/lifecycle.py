"""The lifecycle of one service instance as a pure state machine (no I/O, no clock).

Like h11 does for HTTP, this module only *decides*: the instance runner (cluster.py) feeds it
what happened (a handler returned, the provider vanished, a stop was requested, ...) and gets
back the new state plus a list of actions to perform (acquire an agreement, run a handler,
release the activity, schedule a restart). Every rule of the Services API lives here, so it can
be tested exhaustively without a network.

Rules (yapapi's, plus restart and health checks):
- `start` runs once per provider. If it fails, the instance is respawned on ANOTHER provider
  when `respawn_unstarted_instances` is set (the provider is avoided), else it terminates.
- `run` runs while running. When it returns or raises, or a stop is requested, or the
  agreement expires, the instance goes to stopping and `shutdown` runs exactly once.
- When the provider vanishes (activity unresponsive, agreement terminated by the provider)
  the instance goes to unresponsive / terminated WITHOUT running shutdown.
- A failure after the instance reached running (run raised, shutdown raised, provider
  vanished, health check failed `retries` times) is replaced on another provider when the
  restart policy says so (on-failure / always), at most `max_restarts` times, after a backoff
  that doubles with every restart. `always` also replaces instances whose run returned.
  An explicit stop or the expiration never causes a restart.
"""

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
    "Event",
    "ExpirationReached",
    "HealthCheckFailed",
    "HealthCheckPassed",
    "IllegalTransition",
    "Lifecycle",
    "LifecycleConfig",
    "ReleaseActivity",
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
    reason: str = "activity unresponsive"


@dataclass(frozen=True)
class AgreementTerminatedByProvider:
    reason: str = "agreement terminated by the provider"


@dataclass(frozen=True)
class HealthCheckPassed:
    """A health check succeeded; the consecutive failure count starts over."""


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
    | HealthCheckPassed
    | HealthCheckFailed
    | RestartDue
)

# --------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class AcquireAgreement:
    """Negotiate an agreement and create an activity (avoiding providers that failed us)."""


@dataclass(frozen=True)
class RunHandler:
    name: str  # "start" | "run" | "shutdown"


@dataclass(frozen=True)
class AvoidProvider:
    """Never sign with the current provider again in this deployment."""

    reason: str


@dataclass(frozen=True)
class ReleaseActivity:
    """Stop everything running for the current provider, destroy the activity, terminate the
    agreement (or cancel a pending acquisition)."""

    reason: str


@dataclass(frozen=True)
class ScheduleRestart:
    """Wait `delay` seconds, then feed RestartDue."""

    delay: float
    attempt: int  # 1 for the first restart


Action = AcquireAgreement | RunHandler | AvoidProvider | ReleaseActivity | ScheduleRestart


class IllegalTransition(Exception):
    """An event that cannot happen in the current state (a bug in the runner)."""


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


@dataclass
class Lifecycle:
    """The state of one instance and the rules that move it."""

    config: LifecycleConfig = field(default_factory=LifecycleConfig)
    state: ServiceState = ServiceState.pending
    restarts: int = 0  # replacements after running (respawns of unstarted ones don't count)
    respawns: int = 0
    health_failures: int = 0
    last_reason: str = ""
    # set when entering stopping: why we stop, and whether that counts as a failure
    _stop_is_failure: bool = False
    _stop_may_restart: bool = True
    _restart_scheduled: bool = False
    _stop_requested: bool = False
    _spawned: bool = False
    _shutdown_ran: bool = False  # per provider attempt
    _start_ran: bool = False  # per provider attempt

    @property
    def final(self) -> bool:
        """True when nothing will ever happen to this instance again."""
        return (
            self.state in (ServiceState.terminated, ServiceState.unresponsive)
            and not self._restart_scheduled
        )

    @property
    def restart_scheduled(self) -> bool:
        return self._restart_scheduled

    def handle(self, event: Event) -> list[Action]:
        """Apply `event`; return the actions to perform, in order.

        External events (stop, expiration, provider vanished, health results) that do not
        apply in the current state are ignored (they race with the runner). Events that only
        the runner's own tasks produce raise IllegalTransition when out of place.
        """
        s = self.state
        S = ServiceState
        match event:
            case Spawn():
                if self._spawned:
                    raise IllegalTransition("spawned twice")
                self._spawned = True
                return [AcquireAgreement()]
            case ActivityReady():
                self._require(S.pending, event)
                if self._restart_scheduled or self._stop_requested:
                    raise IllegalTransition("activity ready while not acquiring")
                self.state = S.starting
                self._start_ran = True
                self._shutdown_ran = False
                self.health_failures = 0
                return [RunHandler("start")]
            case StartReturned():
                self._require(S.starting, event)
                self.state = S.running
                return [RunHandler("run")]
            case StartRaised(reason=reason):
                self._require(S.starting, event)
                return self._unstarted_failure(f"start failed: {reason}")
            case RunReturned():
                self._require(S.running, event)
                return self._begin_stop("run finished", failure=False, may_restart=True)
            case RunRaised(reason=reason):
                self._require(S.running, event)
                return self._begin_stop(f"run failed: {reason}", failure=True, may_restart=True)
            case ShutdownReturned() | ShutdownRaised():
                self._require(S.stopping, event)
                if isinstance(event, ShutdownRaised):
                    self._stop_is_failure = True
                    self.last_reason = f"{self.last_reason}; shutdown failed: {event.reason}"
                self.state = S.terminated
                actions: list[Action] = [ReleaseActivity(self.last_reason)]
                return actions + self._maybe_restart(self._stop_is_failure)
            case StopRequested() | ExpirationReached():
                reason = event.reason if isinstance(event, StopRequested) else "expiration reached"
                self._stop_requested = True
                if self._restart_scheduled:  # waiting for a restart: just don't
                    self._restart_scheduled = False
                    self.last_reason = reason
                    return []
                if s is S.pending:
                    self.state = S.terminated
                    self.last_reason = reason
                    return [ReleaseActivity(reason)]
                if s is S.starting:  # yapapi: a stop while starting terminates at once
                    self.state = S.terminated
                    self.last_reason = reason
                    return [ReleaseActivity(reason)]
                if s is S.running:
                    return self._begin_stop(reason, failure=False, may_restart=False)
                if s is S.stopping:
                    self._stop_may_restart = False
                return []
            case ActivityUnresponsive(reason=reason) | AgreementTerminatedByProvider(reason=reason):
                new = S.unresponsive if isinstance(event, ActivityUnresponsive) else S.terminated
                if s is S.starting:
                    self.state = new
                    return self._unstarted_failure(reason, released_state=new)
                if s is S.running:
                    self.state = new
                    self.last_reason = reason
                    self._stop_may_restart = True
                    return [
                        AvoidProvider(reason),
                        ReleaseActivity(reason),
                        *self._maybe_restart(True),
                    ]
                if s is S.stopping:  # shutdown can't finish; don't wait for it
                    self.state = S.terminated
                    self.last_reason = f"{self.last_reason}; {reason}"
                    return [
                        AvoidProvider(reason),
                        ReleaseActivity(reason),
                        *self._maybe_restart(self._stop_is_failure),
                    ]
                return []
            case HealthCheckPassed():
                if s is S.running:
                    self.health_failures = 0
                return []
            case HealthCheckFailed(reason=reason):
                if s is not S.running:
                    return []
                self.health_failures += 1
                if self.health_failures < self.config.healthcheck_retries:
                    return []
                why = f"unhealthy: {self.health_failures} health checks failed ({reason})"
                return [
                    AvoidProvider(why),
                    *self._begin_stop(why, failure=True, may_restart=True),
                ]
            case RestartDue():
                if not self._restart_scheduled:
                    raise IllegalTransition("restart due but none scheduled")
                self._restart_scheduled = False
                self.restarts += 1
                self.state = S.pending
                return [AcquireAgreement()]
        raise IllegalTransition(f"unknown event {event!r}")  # pragma: no cover

    # ------------------------------------------------------------------------- helpers

    def _require(self, state: ServiceState, event: Event) -> None:
        if self.state is not state:
            raise IllegalTransition(f"{type(event).__name__} in state {self.state.value}")

    def _unstarted_failure(
        self, reason: str, released_state: ServiceState | None = None
    ) -> list[Action]:
        """`start` never completed on this provider: respawn elsewhere or give up."""
        self.last_reason = reason
        actions: list[Action] = [AvoidProvider(reason), ReleaseActivity(reason)]
        if self.config.respawn_unstarted_instances and not self._stop_requested:
            self.state = ServiceState.pending
            self.respawns += 1
            return [*actions, AcquireAgreement()]
        self.state = released_state or ServiceState.terminated
        return actions

    def _begin_stop(self, reason: str, *, failure: bool, may_restart: bool) -> list[Action]:
        """running -> stopping; shutdown runs exactly once per provider."""
        self.state = ServiceState.stopping
        self.last_reason = reason
        self._stop_is_failure = failure
        self._stop_may_restart = may_restart and not self._stop_requested
        if self._shutdown_ran:  # pragma: no cover - guarded by the state checks above
            raise IllegalTransition("shutdown already ran")
        self._shutdown_ran = True
        return [RunHandler("shutdown")]

    def _maybe_restart(self, failure: bool) -> list[Action]:
        """After the instance left running for good on this provider: replace it?"""
        policy = self.config.restart_policy
        if self._stop_requested or not self._stop_may_restart:
            return []
        wanted = policy == "always" or (policy == "on-failure" and failure)
        if not wanted or self.restarts >= self.config.max_restarts:
            return []
        self._restart_scheduled = True
        delay = self.config.backoff * (2**self.restarts)
        return [ScheduleRestart(delay=delay, attempt=self.restarts + 1)]
