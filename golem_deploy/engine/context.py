"""What every part of a running engine shares, passed down instead of reached for.

`Golem` builds one EngineContext when it starts and hands it to each Cluster, which hands it
to each instance runner; so imports run one way (golem -> cluster -> runner -> context) and
no part reaches into another's internals. The AgreementRouter is how news about one
agreement (the provider terminated it; it went over budget) finds the runner holding it:
runners register their agreement while they hold it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.config import PriceCaps
from golem_deploy.engine.pacing import StartGate
from golem_deploy.engine.payment_terms import PaymentTerms
from golem_deploy.engine.payments import PaymentManager
from golem_deploy.engine.service import Storage
from golem_deploy.engine.strategy import BaseMarketStrategy, default_strategy
from golem_deploy.engine.timing import Timings
from golem_deploy.yagna.client import YagnaClient

__all__ = ["AgreementRouter", "EngineContext", "Providers"]

log = logging.getLogger(__name__)

Emit = Callable[[ev.EngineEvent], None]


AVOID_FOR = Timings.avoid_for
"""Seconds a provider that failed us is passed over. Not for the whole deployment: on a
busy machine a health check can time out on a healthy provider, and a deployment meant to
run for weeks that once avoided every provider could never place an instance again
(bench/soak.py found exactly that)."""


class Providers:
    """Which providers not to sign with: the user's blacklist, plus every provider that
    failed us in the last `avoid_for` seconds (with why)."""

    def __init__(
        self,
        emit: Emit,
        blacklist: Iterable[str] = (),
        *,
        avoid_for: float = AVOID_FOR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self.blacklist = frozenset(blacklist)
        self.avoided: dict[str, str] = {}
        self._until: dict[str, float] = {}
        self._avoid_for = avoid_for
        self._clock = clock

    def is_avoided(self, provider_id: str) -> bool:
        if provider_id in self.blacklist:
            return True
        until = self._until.get(provider_id)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._until[provider_id], self.avoided[provider_id]  # its time is served
        return False

    def avoid(self, provider_id: str, provider_name: str, reason: str) -> None:
        if self.is_avoided(provider_id) and provider_id in self.avoided:
            return
        self.avoided[provider_id] = reason
        self._until[provider_id] = self._clock() + self._avoid_for
        self._emit(
            ev.ProviderAvoided(provider_id=provider_id, provider_name=provider_name, reason=reason)
        )


class AgreementRouter:
    """agreement id -> how to tell the runner that holds it about an event."""

    def __init__(self) -> None:
        self._routes: dict[str, Callable[[lc.Event], None]] = {}

    def register(self, agreement_id: str, deliver: Callable[[lc.Event], None]) -> None:
        self._routes[agreement_id] = deliver

    def unregister(self, agreement_id: str) -> None:
        self._routes.pop(agreement_id, None)

    def send(self, agreement_id: str, event: lc.Event) -> bool:
        """Deliver `event` to the holder of `agreement_id`; False if nobody holds it."""
        deliver = self._routes.get(agreement_id)
        if deliver is None:
            return False
        deliver(event)
        return True


class NetworkGate:
    """Closed while the network under the engine is known to be down and coming back (the
    supervisor's local network died and restarts, Golem.network_lost): the releases of the
    instances it took wait here (bounded), so their agreements are terminated on the
    restarted network instead of failing against a dead one and being left for `down`."""

    def __init__(self) -> None:
        self._back: anyio.Event | None = None

    def close(self) -> None:
        if self._back is None:
            self._back = anyio.Event()

    def open(self) -> None:
        back, self._back = self._back, None
        if back is not None:
            back.set()

    async def wait(self, timeout: float) -> None:
        """Until open (at once when it is), at most `timeout` seconds."""
        back = self._back
        if back is not None:
            with anyio.move_on_after(timeout):
                await back.wait()


@dataclass(frozen=True)
class EngineContext:
    """The running engine's shared parts (valid while the Golem is entered)."""

    client: YagnaClient
    payments: PaymentManager
    storage: Storage | None
    emit: Emit
    providers: Providers
    platform: str
    price_caps: PriceCaps
    payment_terms: PaymentTerms = field(default_factory=PaymentTerms)
    timings: Timings = field(default_factory=Timings)
    router: AgreementRouter = field(default_factory=AgreementRouter)
    network: NetworkGate = field(default_factory=NetworkGate)
    strategy: BaseMarketStrategy = field(default_factory=default_strategy)
    #: Paces activity starts (engine/pacing.py), as `timings` say; one for the whole
    #: engine (a cluster's copy of the context shares it).
    starts: StartGate | None = None

    def __post_init__(self) -> None:
        if self.starts is None:
            t = self.timings
            gate = StartGate(t.start_slots_per_provider, t.start_slots, t.start_slot_hold_max)
            object.__setattr__(self, "starts", gate)  # frozen: the usual way to fill it in

    @property
    def start_gate(self) -> StartGate:
        assert self.starts is not None  # filled in by __post_init__
        return self.starts
