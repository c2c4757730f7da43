"""The lifecycle of one service instance as a pure state machine (no I/O, no clock).

Like h11 does for HTTP, this module only *decides*: the instance runner feeds it what
happened (a handler returned, the provider vanished, a stop was requested, ...) and gets back
the new state plus the actions to perform (acquire an agreement, run a handler, check the
provider, release the activity with its cause, schedule a restart). Every rule that moves an
instance lives here, so it can be tested exhaustively without a network; TRANSITIONS lists
every state change the rules make (docs/engine.md's diagram is rendered from it and a test
pins the code to it), RACES every event that may arrive when it no longer matters. Anything
else raises IllegalTransition: it is a bug in the runner, and must be loud.

Size: about 510 lines on purpose: every rule of an instance's life (its renewals on fresh
agreements included), and the table of them, in one place.

Rules (yapapi's, plus restart and health checks):
- `start` runs once per provider. If it fails, the instance is respawned on ANOTHER provider
  when `respawn_unstarted_instances` is set (the provider is avoided), else it terminates.
- `run` runs while running. When it returns or raises, or a stop is requested, or the
  agreement expires, the instance goes to stopping and `shutdown` runs exactly once.
- When the provider vanishes (activity unresponsive, agreement terminated by the provider)
  the instance goes to unresponsive / terminated WITHOUT running shutdown, and no invoice is
  expected from a vanished provider.
- When the network under the instance dies (the supervisor's private local network lost a
  daemon or its provider host: NetworkLost), the instance vanished as above, but the
  provider is not avoided: it comes back with the restarted network.
- A handler failure (or the last allowed health check failure) first asks for CheckProvider:
  a step that failed because the provider vanished is the provider vanishing, not the
  service failing. Only ProviderAlive makes it the service's failure.
- A failure after the instance reached running (run raised, shutdown raised, provider
  vanished, health check failed `retries` times) is replaced on another provider when the
  restart policy says so (on-failure / always), at most `max_restarts` times, after a backoff
  that doubles with every restart. `always` also replaces instances whose run returned.
  An explicit stop or the expiration never causes a restart.
- Before every acquisition after the first (a respawn or a restart) the instance's
  `reset()` hook runs (AcquireAgreement.reset), as yapapi's does before a restart.

Renewal rules (an instance outliving its agreements; `plan_renewal`, `renewal_refusal`):
- An agreement lasts `expiration`; the service lasts `lifetime` (None: until stopped).
- A replacement for the same index starts on a fresh agreement early enough to be running
  (and healthy) before the old agreement ends: the slowest start measured so far plus a
  safety margin before the end -- but never earlier than halfway through the agreement.
- When the lifetime ends before the agreement does, nothing is renewed: the instance stops
  at the end of its lifetime.
- A renewal that would pass the budget (what is spent, plus the rest of the current
  agreement and a whole new one at the rate billed so far -- never below the offer's price
  of wall time) is refused with the reason; the instance then runs to the end of its
  agreement and stops cleanly.
- The old instance stops only once its replacement runs; it stops as on an explicit stop
  (StopRequested: shutdown runs, no restart). Its agreement reaching its end first is the
  plain ExpirationReached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from golem_deploy.engine.lifecycle_types import (
    AcquireAgreement,
    Action,
    ActivityReady,
    ActivityUnresponsive,
    AgreementTerminatedByProvider,
    AvoidProvider,
    CheckProvider,
    Event,
    ExpirationReached,
    HealthCheckFailed,
    HealthCheckPassed,
    IllegalTransition,
    LifecycleConfig,
    NetworkLost,
    ProviderAlive,
    ProviderMisbehaved,
    ReleaseActivity,
    ReleaseCause,
    ReportHealth,
    RestartDue,
    RunHandler,
    RunRaised,
    RunReturned,
    ScheduleRestart,
    ServiceState,
    ShutdownRaised,
    ShutdownReturned,
    Spawn,
    StartRaised,
    StartReturned,
    StopRequested,
)

__all__ = [
    "RACES",
    "TRANSITIONS",
    "AcquireAgreement",
    "Action",
    "ActivityReady",
    "ActivityUnresponsive",
    "AgreementPrice",
    "AgreementTerminatedByProvider",
    "AvoidProvider",
    "CheckProvider",
    "Event",
    "ExpirationReached",
    "HealthCheckFailed",
    "HealthCheckPassed",
    "IllegalTransition",
    "Lifecycle",
    "LifecycleConfig",
    "NetworkLost",
    "ProviderAlive",
    "ProviderMisbehaved",
    "ReleaseActivity",
    "ReleaseCause",
    "RenewAt",
    "RenewalPolicy",
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
    "StopAt",
    "StopRequested",
    "Transition",
    "plan_renewal",
    "render_mermaid",
    "render_races",
    "renewal_refusal",
]

S = ServiceState
_STOP = ("StopRequested", "ExpirationReached")
_Gone = NetworkLost | ProviderMisbehaved  # with the two above, what _vanished handles
_VANISH = ("ActivityUnresponsive", "AgreementTerminatedByProvider", "ProviderMisbehaved")
_LOST = ("ActivityUnresponsive", "NetworkLost")  # gone without a word: unresponsive


@dataclass(frozen=True)
class Transition:
    """One edge of the state diagram: any of `events` may take `source` to `target`."""

    source: ServiceState
    target: ServiceState
    events: tuple[str, ...]
    note: str = ""


TRANSITIONS: tuple[Transition, ...] = (
    Transition(S.pending, S.starting, ("ActivityReady",)),
    Transition(S.pending, S.terminated, _STOP),
    Transition(S.starting, S.running, ("StartReturned",)),
    Transition(
        S.starting, S.pending, ("ProviderAlive", *_VANISH, "NetworkLost"), "start failed: respawn"
    ),
    Transition(S.starting, S.terminated, ("ProviderAlive", *_STOP, *_VANISH[1:]), "no respawn"),
    Transition(S.starting, S.unresponsive, _LOST, "no respawn"),
    Transition(S.running, S.stopping, ("RunReturned", "ProviderAlive", *_STOP), "shutdown"),
    Transition(S.running, S.unresponsive, _LOST, "no shutdown"),
    Transition(S.running, S.terminated, _VANISH[1:], "no shutdown"),
    Transition(
        S.stopping, S.terminated, ("ShutdownReturned", "ProviderAlive", *_VANISH, "NetworkLost")
    ),
    Transition(S.terminated, S.pending, ("RestartDue",), "restart"),
    Transition(S.unresponsive, S.pending, ("RestartDue",), "restart"),
)

RACES: tuple[tuple[str, str], ...] = (
    ("StopRequested, ExpirationReached in stopping", "shutdown already runs; no restart"),
    ("StopRequested, ExpirationReached in terminated, unresponsive", "cancels a restart"),
    ("StopRequested, ExpirationReached while a provider check runs", "decided after it"),
    ("RunReturned, RunRaised in stopping", "run may finish while shutdown runs"),
    ("RunReturned, RunRaised while a provider check runs", "the check decides"),
    ("HealthCheckPassed, HealthCheckFailed outside running", "a check outlived running"),
    ("HealthCheckPassed, HealthCheckFailed while a provider check runs", "the check decides"),
    ("AgreementTerminatedByProvider in pending", "the acquisition sees it fail"),
    ("ProviderMisbehaved in pending", "no activity runs yet to send notes"),
    (
        "ActivityUnresponsive, AgreementTerminatedByProvider, ProviderMisbehaved when final",
        "already released",
    ),
    ("NetworkLost in pending, or when final", "the acquisition sees it fail; or released"),
    ("RestartDue after a stop cancelled the restart", "the timer still fired"),
)


def render_mermaid() -> str:
    """TRANSITIONS as a mermaid state diagram (what docs/engine.md shows)."""
    lines = ["stateDiagram-v2", "    [*] --> pending: Spawn"]
    for t in TRANSITIONS:
        label = ", ".join(t.events) + (f" ({t.note})" if t.note else "")
        lines.append(f"    {t.source.value} --> {t.target.value}: {label}")
    lines += ["    terminated --> [*]", "    unresponsive --> [*]"]
    return "\n".join(lines) + "\n"


def render_races() -> str:
    """RACES as a markdown list (what docs/engine.md shows)."""
    return "".join(f"- {when}: {why}\n" for when, why in RACES)


@dataclass
class Lifecycle:
    """The state of one instance and the rules that move it."""

    config: LifecycleConfig = field(default_factory=LifecycleConfig)
    state: ServiceState = ServiceState.pending
    restarts: int = 0  # replacements after running (respawns of unstarted ones don't count)
    respawns: int = 0
    health_failures: int = 0
    last_reason: str = ""  # why the instance is where it is (shown to users)
    transition_reason: str = ""  # why the last event changed the state
    # set when entering stopping: why we stop, and whether that counts as a failure
    _stop_is_failure: bool = False
    _stop_may_restart: bool = True
    _restart_scheduled: bool = False
    _restart_cancelled: bool = False
    _stop_requested: bool = False
    _spawned: bool = False
    _acquiring: bool = False
    _shutdown_ran: bool = False  # per provider attempt
    _suspect: Event | None = None  # the failure waiting for CheckProvider's answer

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

    @property
    def checking_provider(self) -> bool:
        """A CheckProvider is out and its answer not yet in."""
        return self._suspect is not None

    def handle(self, event: Event) -> list[Action]:
        """Apply `event`; return the actions to perform, in order. Events listed in RACES
        change nothing; any other event out of place raises IllegalTransition."""
        before = self.state
        self.transition_reason = ""
        actions = self._dispatch(event)
        if self.state is not before and not self.transition_reason:
            self.transition_reason = self.last_reason
        return actions

    def _dispatch(self, event: Event) -> list[Action]:
        s = self.state
        match event:
            case Spawn():
                if self._spawned:
                    raise IllegalTransition("spawned twice")
                self._spawned = self._acquiring = True
                self.transition_reason = "instance created"
                return [AcquireAgreement()]
            case ActivityReady():
                if s is not S.pending or not self._acquiring:
                    raise IllegalTransition(f"activity ready in {s.value}, not acquiring")
                self._acquiring = False
                self.state = S.starting
                self._shutdown_ran = False
                self.health_failures = 0
                self.transition_reason = "activity created"
                return [RunHandler("start")]
            case StartReturned():
                self._require(S.starting, event)
                self.state = S.running
                self.transition_reason = "started"
                return [RunHandler("run")]
            case StartRaised(reason=reason):
                self._require(S.starting, event)
                return self._suspect_failure(event, f"start failed: {reason}")
            case RunReturned() | RunRaised():
                if s is S.stopping or (s is S.running and self._suspect is not None):
                    return []  # RACES
                self._require(S.running, event)
                if isinstance(event, RunReturned):
                    return self._begin_stop("run finished", failure=False, may_restart=True)
                return self._suspect_failure(event, f"run failed: {event.reason}")
            case ShutdownReturned():
                self._require(S.stopping, event)
                return self._shutdown_over()
            case ShutdownRaised(reason=reason):
                self._require(S.stopping, event)
                why = f"{self.last_reason}; shutdown failed: {reason}"
                return self._suspect_failure(event, why)
            case ProviderAlive():
                return self._provider_alive(event)
            case StopRequested() | ExpirationReached():
                reason = event.reason if isinstance(event, StopRequested) else "expiration reached"
                return self._stop(reason)
            case (
                ActivityUnresponsive()
                | AgreementTerminatedByProvider()
                | NetworkLost()
                | ProviderMisbehaved()
            ):
                return self._vanished(event)
            case HealthCheckPassed(message=message):
                if s is not S.running or self._suspect is not None:
                    return []  # RACES
                self.health_failures = 0
                return [ReportHealth(True, 0, message)]
            case HealthCheckFailed(reason=reason):
                if s is not S.running or self._suspect is not None:
                    return []  # RACES
                self.health_failures += 1
                report = ReportHealth(False, self.health_failures, reason)
                if self.health_failures < self.config.healthcheck_retries:
                    return [report]
                why = f"unhealthy: {self.health_failures} health checks failed ({reason})"
                return [report, *self._suspect_failure(event, why)]
            case RestartDue():
                if not self._restart_scheduled:
                    if self._restart_cancelled:
                        return []  # RACES
                    raise IllegalTransition("restart due but none scheduled")
                self._restart_scheduled = False
                self._acquiring = True
                self.restarts += 1
                self.state = S.pending
                self.transition_reason = "restarting"
                return [AcquireAgreement(restart=self.restarts)]
        raise IllegalTransition(f"unknown event {event!r}")  # pragma: no cover

    # ------------------------------------------------------------------------- rules

    def _suspect_failure(self, event: Event, reason: str) -> list[Action]:
        """A failure that may only be the provider vanishing: ask before deciding."""
        if self._suspect is not None:
            raise IllegalTransition(f"{type(event).__name__} while a provider check runs")
        self._suspect = event
        self.last_reason = reason
        return [CheckProvider(reason)]

    def _provider_alive(self, event: ProviderAlive) -> list[Action]:
        """The provider is there: the suspected failure was the service's own."""
        failure, self._suspect = self._suspect, None
        reason = self.last_reason
        match failure:
            case StartRaised():
                return self._unstarted_failure(reason, ReleaseCause.requestor)
            case RunRaised():
                return self._begin_stop(reason, failure=True, may_restart=True)
            case HealthCheckFailed():
                return [AvoidProvider(reason), *self._begin_stop(reason, True, True)]
            case ShutdownRaised():
                self._stop_is_failure = True
                return self._shutdown_over()
        raise IllegalTransition(f"{type(event).__name__} but no provider check asked")

    def _stop(self, reason: str) -> list[Action]:
        s = self.state
        self._stop_requested = True
        if self._restart_scheduled:  # waiting for a restart: just don't
            self._restart_scheduled = False
            self._restart_cancelled = True
            self.last_reason = reason
            return []
        if s in (S.pending, S.starting):  # yapapi: a stop while starting terminates at once
            self.state = S.terminated
            self._suspect = None
            self._acquiring = False
            self.last_reason = reason
            return [ReleaseActivity(reason)]
        if s is S.running and self._suspect is None:
            return self._begin_stop(reason, failure=False, may_restart=False)
        # stopping, final, or a provider check out: RACES (the stop forbids any restart)
        self._stop_may_restart = False
        return []

    def _vanished(
        self, event: ActivityUnresponsive | AgreementTerminatedByProvider | _Gone
    ) -> list[Action]:
        """The provider is gone (or broke the payment terms: we end its agreement): never
        run shutdown on it, expect no invoice if it vanished.

        NetworkLost is a vanishing that is nobody's fault (the local network under every
        provider died and was restarted): the provider is not avoided afterwards, and it may
        arrive while the instance is acquiring (that acquisition fails by itself). Its release
        waits for the network to be back (ReleaseCause.network_lost) to end the agreement."""
        s, reason = self.state, event.reason
        avoid = not isinstance(event, NetworkLost)
        if isinstance(event, AgreementTerminatedByProvider):
            new, cause = S.terminated, ReleaseCause.provider
        elif isinstance(event, ProviderMisbehaved):
            new, cause = S.terminated, ReleaseCause.requestor
        else:
            new = S.unresponsive
            cause = ReleaseCause.vanished if avoid else ReleaseCause.network_lost
        if s in (S.terminated, S.unresponsive) or (
            s is S.pending and not isinstance(event, ActivityUnresponsive)
        ):
            return []  # RACES
        if s is S.pending:
            raise IllegalTransition(f"{type(event).__name__} while acquiring")
        self._suspect = None
        if s is S.starting:
            self.state = new
            return self._unstarted_failure(reason, cause, released_state=new, avoid=avoid)
        release: list[Action] = [ReleaseActivity(reason, cause)]
        if avoid:
            release.insert(0, AvoidProvider(reason))
        if s is S.running:
            self.state = new
            self.last_reason = reason
            self._stop_may_restart = not self._stop_requested
            return [*release, *self._maybe_restart(True, reason)]
        # stopping: shutdown can't finish; don't wait for it
        self.state = S.terminated
        self.last_reason = f"{self.last_reason}; {reason}"
        return [*release, *self._maybe_restart(self._stop_is_failure, self.last_reason)]

    def _shutdown_over(self) -> list[Action]:
        self.state = S.terminated
        actions: list[Action] = [ReleaseActivity(self.last_reason)]
        return actions + self._maybe_restart(self._stop_is_failure, self.last_reason)

    def _require(self, state: ServiceState, event: Event) -> None:
        if self.state is not state or self._suspect is not None:
            raise IllegalTransition(f"{type(event).__name__} in state {self.state.value}")

    def _unstarted_failure(
        self,
        reason: str,
        cause: ReleaseCause,
        released_state: ServiceState | None = None,
        avoid: bool = True,
    ) -> list[Action]:
        """`start` never completed on this provider: respawn elsewhere or give up."""
        self.last_reason = reason
        actions: list[Action] = [ReleaseActivity(reason, cause)]
        if avoid:
            actions.insert(0, AvoidProvider(reason))
        if self.config.respawn_unstarted_instances and not self._stop_requested:
            self.state = S.pending
            self._acquiring = True
            self.respawns += 1
            return [*actions, AcquireAgreement(respawn=self.respawns)]
        self.state = released_state or S.terminated
        return actions

    def _begin_stop(self, reason: str, failure: bool, may_restart: bool) -> list[Action]:
        """running -> stopping; shutdown runs exactly once per provider."""
        if self._shutdown_ran:  # pragma: no cover - guarded by the state checks
            raise IllegalTransition("shutdown already ran")
        self.state = S.stopping
        self.last_reason = reason
        self._stop_is_failure = failure
        self._stop_may_restart = may_restart and not self._stop_requested
        self._shutdown_ran = True
        return [RunHandler("shutdown")]

    def _maybe_restart(self, failure: bool, reason: str) -> list[Action]:
        """After the instance left running for good on this provider: replace it?"""
        policy = self.config.restart_policy
        if self._stop_requested or not self._stop_may_restart:
            return []
        wanted = policy == "always" or (policy == "on-failure" and failure)
        if not wanted or self.restarts >= self.config.max_restarts:
            return []
        self._restart_scheduled = True
        delay = self.config.backoff * (2**self.restarts)
        return [ScheduleRestart(delay=delay, attempt=self.restarts + 1, reason=reason)]


# ----------------------------------------------------------------------------- renewals


@dataclass(frozen=True)
class RenewalPolicy:
    """How the instances of a service outlive their agreements (the compiler makes it from
    the manifest's `expiration` and `lifetime`). Seconds throughout."""

    agreement: float  # how long each agreement lasts (`expiration`)
    lifetime: float | None = None  # how long the service runs; None: until stopped
    margin: float = 5.0  # how much earlier than the slowest start a replacement begins

    def __post_init__(self) -> None:
        if self.agreement <= 0:
            raise ValueError("an agreement must last longer than 0 s")
        if self.lifetime is not None and self.lifetime <= 0:
            raise ValueError("a lifetime must be longer than 0 s")
        if self.margin < 0:
            raise ValueError("the renewal margin cannot be negative")


@dataclass(frozen=True)
class RenewAt:
    """Start the replacement at `at` (the clock the times were given on)."""

    at: float


@dataclass(frozen=True)
class StopAt:
    """Renew no more: stop the instance at `at`, for `reason`."""

    at: float
    reason: str


def plan_renewal(
    policy: RenewalPolicy,
    *,
    signed_at: float,
    expires_at: float,
    lifetime_ends_at: float | None,
    start_durations: Sequence[float],
) -> RenewAt | StopAt:
    """When to start the replacement of an instance whose agreement runs from `signed_at`
    to `expires_at`, given how long starts took so far (from asking for an agreement to
    running and healthy); or, when the service's lifetime ends first, when to stop it."""
    if lifetime_ends_at is not None and lifetime_ends_at <= expires_at:
        return StopAt(max(lifetime_ends_at, signed_at), "lifetime reached")
    lead = max(start_durations, default=0.0) + policy.margin
    halfway = signed_at + (expires_at - signed_at) / 2
    return RenewAt(max(halfway, expires_at - lead))


@dataclass(frozen=True)
class AgreementPrice:
    """What an agreement costs at least, known from its offer before any debit note: the
    fixed start price and the price of a second of wall time (GLM)."""

    start: Decimal = Decimal(0)
    per_second: Decimal = Decimal(0)


def renewal_refusal(
    *,
    spent: Decimal,
    budget: Decimal,
    agreement_cost: Decimal,
    agreement_age: float,
    agreement_length: float,
    price: AgreementPrice = AgreementPrice(),
) -> str | None:
    """Why renewing an instance would pass the budget, or None when it fits.

    Renewing commits the rest of the current agreement (it runs until its successor does;
    counted to its end) plus one whole new agreement priced like it. The rate is what the
    agreement has billed so far past its start price (`agreement_cost` after
    `agreement_age` seconds), but never less than the offer's price of wall time: debit
    notes may not have come yet (they come every few minutes on the real network)."""
    billed = max(agreement_cost - price.start, Decimal(0))
    observed = billed / Decimal(str(agreement_age)) if agreement_age > 0 else Decimal(0)
    rate = max(observed, price.per_second)
    rest = rate * Decimal(str(max(agreement_length - agreement_age, 0.0)))
    projected = (rest + price.start + rate * Decimal(str(agreement_length))).quantize(
        Decimal("0.000001")
    )
    if spent + projected <= budget:
        return None
    return (
        f"budget: renewing would spend about {projected.normalize():f} GLM more "
        f"(spent {spent} of {budget}); stopping when the current agreement ends"
    )
