"""Which providers the engine passes over (engine/context.py: Providers)."""

from __future__ import annotations

from golem_deploy.engine import events as ev
from golem_deploy.engine.context import Providers


def test_a_provider_that_failed_is_avoided_for_a_while_not_for_ever() -> None:
    now = [100.0]
    emitted: list[ev.EngineEvent] = []
    providers = Providers(emitted.append, ["0xbad"], avoid_for=60.0, clock=lambda: now[0])
    providers.avoid("0xp", "local-provider-1", "start failed")
    providers.avoid("0xp", "local-provider-1", "start failed again")  # already avoided
    assert providers.is_avoided("0xp") and providers.avoided == {"0xp": "start failed"}
    assert len(emitted) == 1 and isinstance(emitted[0], ev.ProviderAvoided)
    now[0] = 159.9
    assert providers.is_avoided("0xp")
    now[0] = 160.0
    assert not providers.is_avoided("0xp") and providers.avoided == {}
    providers.avoid("0xp", "local-provider-1", "unhealthy")  # a new failure counts anew
    assert providers.is_avoided("0xp") and len(emitted) == 2
    now[0] = 10_000.0
    assert providers.is_avoided("0xbad")  # the user's blacklist is for ever
