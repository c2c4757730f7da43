"""The local provider agent: what ya-provider does, for one identity, over yagna's REST API.

    terms.py       what a provider offers and charges (pure: offer, rules, prices, bills)
    api.py         the provider side of yagna's REST API, typed, one error type
    events.py      what that API returns, as dataclasses (and the JSON parsing)
    loops.py       the long-poll loop (and its staggered lanes) and the retry, written once
    agent.py       ProviderAgent: offer, negotiation, agreements, invoices
    activities.py  its activities: their events (polled in lanes), one ExeUnit each, debit notes
    state.py       its config and what it keeps per agreement and activity
    exeunits.py    the ExeUnit as the agent sees it
    lives.py       ProviderLives: a provider that dies and comes back (come_back_after)

The host (host.py) runs one ProviderLives per provider identity: one ProviderAgent, or
one per life when the provider comes back.
"""

from golem_deploy.localnet.provider.agent import ProviderAgent
from golem_deploy.localnet.provider.state import ProviderConfig
from golem_deploy.localnet.provider.terms import (
    CAPACITY,
    CPU_THREADS,
    PLATFORM,
    SUBNET,
    offer_properties,
    price_coeffs,
)

__all__ = [
    "CAPACITY",
    "CPU_THREADS",
    "PLATFORM",
    "SUBNET",
    "ProviderAgent",
    "ProviderConfig",
    "offer_properties",
    "price_coeffs",
]
