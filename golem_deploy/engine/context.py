"""What every part of a running engine shares, passed down instead of reached for.

`Golem` builds one EngineContext when it starts and hands it to each Cluster, which hands it
to each instance runner; so imports run one way (golem -> cluster -> runner -> context) and
no part reaches into another's internals. The AgreementRouter is how news about one
agreement (the provider terminated it; it went over budget) finds the runner holding it:
runners register their agreement while they hold it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from golem_deploy.engine import events as ev
from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.config import PriceCaps
from golem_deploy.engine.payments import PaymentManager
from golem_deploy.engine.service import Storage
from golem_deploy.engine.strategy import BaseMarketStrategy, default_strategy
from golem_deploy.engine.timing import Timings
from golem_deploy.yagna.client import YagnaClient

__all__ = ["AgreementRouter", "EngineContext", "Providers"]

log = logging.getLogger(__name__)

Emit = Callable[[ev.EngineEvent], None]


class Providers:
    """Which providers not to sign with: the user's blacklist, plus every provider that
    failed us in this deployment (with why)."""

    def __init__(self, emit: Emit, blacklist: Iterable[str] = ()) -> None:
        self._emit = emit
        self.blacklist = frozenset(blacklist)
        self.avoided: dict[str, str] = {}

    def is_avoided(self, provider_id: str) -> bool:
        return provider_id in self.avoided or provider_id in self.blacklist

    def avoid(self, provider_id: str, provider_name: str, reason: str) -> None:
        if provider_id in self.avoided:
            return
        self.avoided[provider_id] = reason
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
    timings: Timings = field(default_factory=Timings)
    router: AgreementRouter = field(default_factory=AgreementRouter)
    strategy: BaseMarketStrategy = field(default_factory=default_strategy)
