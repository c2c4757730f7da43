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
    degraded --ServicesChanged--> degraded (a change made while degraded, see below)
    starting --an instance of the current wave ended before running--> failed
    starting | running | degraded | failed --DownRequested--> stopping
    any but stopped --Crashed--> failed (stays failed through Finished)
    stopping | starting | running | degraded --Finished--> stopped

The private local network (degraded):

    starting | running --LocalnetDied--> degraded (restart the network; every instance on
        it lost its activity)
    degraded --LocalnetRestarted, then every instance that was not final at the death
        runs again (or ended for good, one at least running)--> the state before
    degraded --LocalnetRestartFailed--> failed
    starting | running | degraded --LocalnetDied a 4th time in a row (no recovery between
        them)--> failed

A death while stopping, stopped or failed restarts nothing (down releases through the
journal's recovery, which starts the network again itself).

Changes (`up` again, `scale`, `restart`) are taken while running, and while degraded once
the local network runs again (`change_refusal`): degraded can last (an instance whose
provider stays dead waits for another), and a user must still be able to scale meanwhile.
While the network is being restarted there is no engine to apply a change to.

Races the engine and the supervisor cannot avoid are explicit no-ops: instance events in any
state (they are recorded, and only decide something while starting), a second `down`, a
service finishing while the deployment still starts. Anything else out of place raises
IllegalTransition: it is a bug in the supervisor, and must not look like a race.

Size: about 500 lines on purpose: every rule of a deployment (waves, down, failures, the
local network's degraded path) and their vocabulary in one place, as in lifecycle.py.

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
    "MAX_LOCALNET_DEATHS",
    "Action",
    "AllEnded",
    "Crashed",
    "DeploymentDegraded",
    "DeploymentFailed",
    "DeploymentMachine",
    "DeploymentRecovered",
    "DeploymentRunning",
    "DeploymentState",
    "DownRequested",
    "DownTimedOut",
    "Event",
    "Finished",
    "IllegalTransition",
    "InstanceChanged",
    "LocalnetDied",
    "LocalnetRestartFailed",
    "LocalnetRestarted",
    "NetworkReady",
    "RestartLocalnet",
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
    degraded = "degraded"  # the private local network lost a daemon: being restarted
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


MAX_LOCALNET_DEATHS = 3
"""Deaths of the private local network in a row (no recovery between them) that are
restarted; one more fails the deployment, since something keeps killing it."""


@dataclass(frozen=True)
class LocalnetDied:
    """A process of the deployment's private local network died (`reason` says which)."""

    reason: str


@dataclass(frozen=True)
class LocalnetRestarted:
    """The private local network runs again, at the same address, on the same state."""


@dataclass(frozen=True)
class LocalnetRestartFailed:
    reason: str


Event = (
    NetworkReady
    | InstanceChanged
    | ServiceFinished
    | ServicesChanged
    | DownRequested
    | DownTimedOut
    | Crashed
    | Finished
    | LocalnetDied
    | LocalnetRestarted
    | LocalnetRestartFailed
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


@dataclass(frozen=True)
class DeploymentDegraded:
    """Journal and report it (state `degraded`, with the reason)."""

    reason: str


@dataclass(frozen=True)
class RestartLocalnet:
    """Tell every instance its activity is gone (NetworkLost), then start the private local
    network again on its state folder; report LocalnetRestarted or LocalnetRestartFailed."""

    reason: str


@dataclass(frozen=True)
class DeploymentRecovered:
    """The instances run again after the local network's death: back to `state`."""

    state: DeploymentState
    after: str  # the death it recovered from


Action = (
    StartWave
    | WaveRunning
    | DeploymentRunning
    | DeploymentFailed
    | AllEnded
    | StopServices
    | DeploymentDegraded
    | RestartLocalnet
    | DeploymentRecovered
)

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
    # While degraded: the state to go back to, the instances to see running again (or end
    # for good), whether the network is back, and deaths since the last recovery.
    _before: DeploymentState = DeploymentState.starting
    _awaited: set[tuple[str, int]] = field(default_factory=set)
    _network_back: bool = False
    _rerunning: int = 0  # awaited instances seen running on the restarted network
    _deaths: int = 0
    _death: str = ""  # why the network died, the last time

    def __post_init__(self) -> None:
        self._waves: tuple[Wave, ...] = tuple(tuple(wave) for wave in self.waves)

    def change_refusal(self) -> str | None:
        """Why a change (`up` again, `scale`, `restart`) cannot start now; None: it can."""
        S = DeploymentState
        if self.state is S.running or (self.state is S.degraded and self._network_back):
            return None
        if self.state is S.degraded:
            return (
                "the deployment is degraded and its local network is being restarted: "
                "a change applies once the network runs again"
            )
        return f"the deployment is {self.state}: a change applies once it runs"

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
                if self.state is S.degraded:
                    return self._check_recovered(key, new, final)
                return self._check_wave() if self.state is S.starting else []
            case ServiceFinished(service=service, reasons=reasons):
                self._finished[service] = reasons
                if self.state in (S.running, S.degraded):
                    return self._check_all_ended()
                return []
            case LocalnetDied(reason=reason):
                return self._localnet_died(reason)
            case LocalnetRestarted():
                if self.state is not S.degraded:
                    return []  # down or a failure came first: nothing to resume
                self._network_back = True
                self.reason = f"{self._death}; the local network runs again, replacing instances"
                return self._check_recovered(None, None, False)
            case LocalnetRestartFailed(reason=reason):
                if self.state is not S.degraded:
                    return []
                self.state = S.failed
                self.reason = f"{self.reason}, and it could not be restarted: {reason}"
                return [DeploymentFailed(self.reason)]
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
                if self.state not in (S.running, S.degraded):
                    raise IllegalTransition(f"services changed while {self.state}")
                self._waves = tuple(tuple(wave) for wave in waves)
                names = {name for wave in self._waves for name, _ in wave}
                self._finished = {
                    name: reasons
                    for name, reasons in self._finished.items()
                    if name in names and name not in started
                }
                if self.state is S.degraded:
                    # instances the change removed will not run again: not awaited any more
                    wanted = {name: count for wave in self._waves for name, count in wave}
                    self._awaited = {
                        (name, index)
                        for name, index in self._awaited
                        if index < wanted.get(name, 0)
                    }
                    return [*self._check_recovered(None, None, False), *self._check_all_ended()]
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

    def _localnet_died(self, reason: str) -> list[Action]:
        S = DeploymentState
        if self.state not in (S.starting, S.running, S.degraded):
            return []  # stopping, stopped, failed: recovery restarts it for `down` if needed
        self._deaths += 1
        if self.state is not S.degraded:
            self._before = self.state
        self.state = S.degraded
        if self._deaths > MAX_LOCALNET_DEATHS:
            self.state = S.failed
            self.reason = (
                f"{reason}: the local network died {self._deaths} times in a row, "
                "before its instances ran again; not restarting it again"
            )
            return [DeploymentFailed(self.reason)]
        self._awaited = {key for key in self.instance_states if key not in self._final}
        self._network_back = False
        self._rerunning = 0
        self._death = reason
        self.reason = f"{reason}; restarting the local network"
        return [DeploymentDegraded(self.reason), RestartLocalnet(reason)]

    def _check_recovered(
        self, key: tuple[str, int] | None, new: ServiceState | None, final: bool
    ) -> list[Action]:
        """While degraded: back to the state before once the network is back and every
        instance that was on it runs again on the restarted network or ended for good (at
        least one running: when all ended, ServiceFinished ends the deployment instead)."""
        if key is not None and key in self._awaited:
            if final:
                self._awaited.discard(key)
            elif new is ServiceState.running and self._network_back:
                self._awaited.discard(key)
                self._rerunning += 1
        if not self._network_back or self._awaited:
            return []
        if self._rerunning == 0 and self.instance_states:
            return []
        self.state, self.reason, self._deaths = self._before, None, 0
        recovered: list[Action] = [DeploymentRecovered(self.state, self._death)]
        if self.state is DeploymentState.starting:
            return [*recovered, *self._check_wave()]
        return recovered

    def _check_all_ended(self) -> list[Action]:
        """While running: once every service finished, nothing is left to supervise."""
        services = [name for wave in self._waves for name, _ in wave]
        if self._ended or any(name not in self._finished for name in services):
            return []
        self._ended = True
        reasons = sorted({r or "ended" for name in services for r in self._finished[name]})
        self.reason = "every instance ended: " + "; ".join(reasons)
        return [AllEnded(self.reason)]
