"""The deployment's state machine, pure (no I/O, no clock), like engine/lifecycle.py.

Why: a deployment has states of its own (starting, running, stopping, stopped, failed) above
its instances' ones, and rules that move it: a wave of services starts once every instance of
the previous wave runs; an instance that ends before running fails the deployment; once
every instance ended by itself there is nothing left to supervise; `down` stops it. The
supervisor (daemon.py) feeds this machine what happened -- engine events translated into the
machine's own vocabulary, plus its own milestones (network ready, down requested, finished)
-- and performs the actions it gets back (journal a milestone, launch a wave, go down). Every
rule lives here, so it is tested without an engine.

States (`gone` is not one of them: it is the journal's verdict when no supervisor answers,
see snapshot.from_journal):

    starting --last wave running--> running
    running --ServicesChanged--> running (a change: the services it supervises are new)
    starting --an instance of the current wave ended before running--> failed
    starting | running | failed --DownRequested--> stopping
    any but stopped --Crashed--> failed (stays failed through Finished)
    stopping | starting | running --Finished--> stopped

Races the engine and the supervisor cannot avoid are explicit no-ops: instance events in any
state (they are recorded, and only decide something while starting), a second `down`, a
service finishing while the deployment still starts. Anything else out of place raises
IllegalTransition: it is a bug in the supervisor, and must not look like a race.

Whether an instance has ended for good is the instance lifecycle's knowledge
(`Lifecycle.final`); the engine's InstanceStateChanged carries it (`final`), so an
instance that terminates with a restart scheduled is never mistaken for one that ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from golem_deploy.engine.lifecycle import ServiceState

__all__ = [
    "Action",
    "AllEnded",
    "Crashed",
    "DeploymentFailed",
    "DeploymentMachine",
    "DeploymentRunning",
    "DeploymentState",
    "DownRequested",
    "DownTimedOut",
    "Event",
    "Finished",
    "IllegalTransition",
    "InstanceChanged",
    "NetworkReady",
    "ServiceFinished",
    "ServicesChanged",
    "StartWave",
    "StopServices",
    "WaveRunning",
]


class DeploymentState(Enum):
    """The state of a whole deployment; the values are the names users see."""

    starting = "starting"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    failed = "failed"

    def __str__(self) -> str:
        return self.value


class IllegalTransition(Exception):
    """An event that cannot happen in the current state (a bug in the supervisor)."""


# ---- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkReady:
    """The network (private or the user's yagna) is ready: the first wave may start."""


@dataclass(frozen=True)
class InstanceChanged:
    """An instance reached `state` (the engine's InstanceStateChanged)."""

    service: str
    index: int
    state: ServiceState
    reason: str = ""
    final: bool = False  # ended for good: no restart will follow


@dataclass(frozen=True)
class ServiceFinished:
    """Every instance of `service` is final (the engine's Cluster.wait_finished returned)."""

    service: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServicesChanged:
    """A change to the running deployment (`up` again, `scale`, `restart`) is being applied:
    `waves` are its services now; `started` the services it starts instances of (finished
    or not before, they have instances to supervise again)."""

    waves: tuple[tuple[tuple[str, int], ...], ...]
    started: tuple[str, ...] = ()


@dataclass(frozen=True)
class DownRequested:
    reason: str


@dataclass(frozen=True)
class DownTimedOut:
    """The graceful part of `down` took longer than its timeout and was cut."""

    timeout: float


@dataclass(frozen=True)
class Crashed:
    """The supervisor's deployment task raised: the deployment failed."""

    reason: str


@dataclass(frozen=True)
class Finished:
    """Everything is stopped and released: the supervisor is about to exit."""


Event = (
    NetworkReady
    | InstanceChanged
    | ServiceFinished
    | ServicesChanged
    | DownRequested
    | DownTimedOut
    | Crashed
    | Finished
)


# ---- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartWave:
    """Launch the services of wave `number` (journal WaveStarting first)."""

    number: int
    services: tuple[str, ...]


@dataclass(frozen=True)
class WaveRunning:
    number: int
    services: tuple[str, ...]


@dataclass(frozen=True)
class DeploymentRunning:
    """Every wave runs."""


@dataclass(frozen=True)
class DeploymentFailed:
    reason: str


@dataclass(frozen=True)
class AllEnded:
    """Every instance ended by itself (budget, expiration, restarts exhausted): go down."""

    reason: str


@dataclass(frozen=True)
class StopServices:
    """Launch no further wave; stop the services in reverse wave order."""

    reason: str


Action = StartWave | WaveRunning | DeploymentRunning | DeploymentFailed | AllEnded | StopServices

Wave = tuple[tuple[str, int], ...]  # (service name, instance count) in manifest order


@dataclass
class DeploymentMachine:
    """The state of one deployment and the rules that move it."""

    waves: Sequence[Sequence[tuple[str, int]]]
    state: DeploymentState = DeploymentState.starting
    reason: str | None = None
    wave: int = -1  # the wave being started; -1 until the network is ready
    instance_states: dict[tuple[str, int], ServiceState] = field(default_factory=dict)
    _instance_reasons: dict[tuple[str, int], str] = field(default_factory=dict)
    _final: set[tuple[str, int]] = field(default_factory=set)
    _finished: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _ended: bool = False
    _crashed: bool = False

    def __post_init__(self) -> None:
        self._waves: tuple[Wave, ...] = tuple(tuple(wave) for wave in self.waves)

    def handle(self, event: Event) -> list[Action]:
        """Apply `event`; return the actions to perform, in order."""
        S = DeploymentState
        match event:
            case NetworkReady():
                if self.state is not S.starting or self.wave != -1:
                    raise IllegalTransition(f"network ready while {self.state} (wave {self.wave})")
                return self._start_wave(0)
            case InstanceChanged(
                service=service, index=index, state=new, reason=reason, final=final
            ):
                key = (service, index)
                self.instance_states[key] = new
                self._instance_reasons[key] = reason
                if final:
                    self._final.add(key)
                else:
                    self._final.discard(key)
                return self._check_wave() if self.state is S.starting else []
            case ServiceFinished(service=service, reasons=reasons):
                self._finished[service] = reasons
                return self._check_all_ended() if self.state is S.running else []
            case DownRequested(reason=reason):
                if self.state in (S.stopping, S.stopped):
                    return []  # asked again: the first request is being served
                self.state = S.stopping
                return [StopServices(reason)]
            case DownTimedOut(timeout=timeout):
                if self.state is not S.stopping:
                    raise IllegalTransition(f"down timed out while {self.state}")
                self.reason = f"down timed out after {timeout:g}s"
                return []
            case Crashed(reason=reason):
                if self.state is S.stopped:
                    raise IllegalTransition("crashed after it stopped")
                self.state, self.reason, self._crashed = S.failed, reason, True
                return [DeploymentFailed(reason)]
            case ServicesChanged(waves=waves, started=started):
                if self.state is not S.running:
                    raise IllegalTransition(f"services changed while {self.state}")
                self._waves = tuple(tuple(wave) for wave in waves)
                names = {name for wave in self._waves for name, _ in wave}
                self._finished = {
                    name: reasons
                    for name, reasons in self._finished.items()
                    if name in names and name not in started
                }
                return self._check_all_ended()
            case Finished():
                if self.state is S.stopped:
                    raise IllegalTransition("finished twice")
                if not (self.state is S.failed and self._crashed):
                    self.state = S.stopped
                return []
        raise IllegalTransition(f"unknown event {event!r}")  # pragma: no cover

    # ------------------------------------------------------------------------- helpers

    def _start_wave(self, number: int) -> list[Action]:
        if number >= len(self._waves):
            self.state = DeploymentState.running
            return [DeploymentRunning(), *self._check_all_ended()]
        self.wave = number
        names = tuple(name for name, _ in self._waves[number])
        return [StartWave(number, names), *self._check_wave()]

    def _check_wave(self) -> list[Action]:
        """While starting: has the current wave failed, or is it running?"""
        if self.wave < 0:
            return []
        wave = self._waves[self.wave]
        names = [name for name, _ in wave]
        for name in names:
            for service, index in sorted(self._final):
                if service != name:
                    continue
                key = (service, index)
                why = self._instance_reasons.get(key) or "it terminated before running"
                self.state = DeploymentState.failed
                self.reason = f"{service}.{index} did not start: {why}"
                return [DeploymentFailed(self.reason)]
        expected = sum(count for _, count in wave)
        running = sum(
            1
            for (service, _), state in self.instance_states.items()
            if service in names and state is ServiceState.running
        )
        if running < expected:
            return []
        return [WaveRunning(self.wave, tuple(names)), *self._start_wave(self.wave + 1)]

    def _check_all_ended(self) -> list[Action]:
        """While running: once every service finished, nothing is left to supervise."""
        services = [name for wave in self._waves for name, _ in wave]
        if self._ended or any(name not in self._finished for name in services):
            return []
        self._ended = True
        reasons = sorted({r or "ended" for name in services for r in self._finished[name]})
        self.reason = "every instance ended: " + "; ".join(reasons)
        return [AllEnded(self.reason)]
