"""Agreements yagna created but whose id never reached us: find them and cancel them.

Why: `POST /agreements` is not idempotent. When its answer is lost (the connection dropped
after yagna created the agreement, a 5xx from a proxy in front of it, a timeout), yagna
holds an agreement in state `Proposal` that the engine never heard of. Nobody confirmed it
and the provider never saw it, so it binds no one; but it sits in yagna's records until
its validTo, and a deployment that cannot account for every agreement it caused is harder
to trust. It is found by what we do know: it came from our demand's subscription, for the
provider whose proposal we used, after we sent the request, and no create call of ours
returned its id. Then it is cancelled (`POST /agreements/{id}/cancel`), or, when that
fails, reported: either way an `AgreementOrphaned` event says so (the supervisor journals
it, and the reliability audit counts it). yagna 0.17.6 refuses the cancel of a `Proposal`
(it asks the provider, who never saw it), so there every orphan is reported and left to
expire; the cancel is still tried, for a yagna that can.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.yagna.client import YagnaClient
from golem_deploy.yagna.errors import YagnaError, YagnaStatusError

log = logging.getLogger(__name__)

CANCEL_REASON = "the answer to its creation was lost; not used"
CLOCK_SLACK = timedelta(seconds=30)  # yagna's timestamps vs ours (same host, or not)
SWEEP_TIMEOUT = 20.0  # the sweep is best effort: an unreachable yagna ends it


def answer_may_be_lost(error: YagnaError) -> bool:
    """Whether yagna may have created the agreement although we got no id: anything but
    a 4xx, which is yagna itself refusing the request."""
    return not (isinstance(error, YagnaStatusError) and 400 <= error.status < 500)


@dataclass
class OrphanWatch:
    """What one market session knows to tell an orphan from its own agreements: every
    subscription it held, every agreement id a create call returned, and how many create
    calls per provider are in flight. While another create for the same provider is in
    flight its agreement cannot be told from an orphan: then nothing is touched (an
    orphan expires by itself)."""

    subscriptions: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)
    in_flight: dict[str, int] = field(default_factory=dict)

    @contextlib.contextmanager
    def creating(self, provider_id: str) -> Iterator[Callable[[str], None]]:
        """Around one create call; call the yielded function with the id it returned."""
        self.in_flight[provider_id] = self.in_flight.get(provider_id, 0) + 1
        try:
            yield self.created.add
        finally:
            self.in_flight[provider_id] -= 1

    async def sweep(
        self,
        client: YagnaClient,
        service: str,
        provider_id: str,
        since: datetime,
        emit: Callable[[ev.EngineEvent], None],
    ) -> int:
        def known(agreement_id: str) -> bool:
            return agreement_id in self.created or self.in_flight.get(provider_id, 0) > 0

        return await sweep(
            client,
            service=service,
            subscriptions=set(self.subscriptions),
            provider_id=provider_id,
            since=since,
            known=known,
            emit=emit,
        )


async def sweep(
    client: YagnaClient,
    *,
    service: str,
    subscriptions: Collection[str],
    provider_id: str | None,
    since: datetime,
    known: Callable[[str], bool],
    emit: Callable[[ev.EngineEvent], None],
) -> int:
    """Cancel (or report) the `Proposal`-state agreements of `subscriptions` with
    `provider_id` (None: with any provider), created after `since`, that `known` does not
    claim; returns how many were found. `known` is asked again right before each cancel: a
    create call of ours that was still in flight may have returned that id meanwhile.
    Recovery (`down` after the supervisor died) sweeps with every provider: nothing of
    ours is in flight any more, and the journal names every agreement that was ours."""
    found = 0
    with anyio.move_on_after(SWEEP_TIMEOUT) as scope:
        try:
            for agreement_id in await client.agreement_ids("Proposal", since - CLOCK_SLACK):
                if known(agreement_id):
                    continue
                agreement = await client.get_agreement(agreement_id)
                if (
                    agreement.state != "Proposal"
                    or agreement.demand_id not in subscriptions
                    or provider_id not in (None, agreement.provider_id)
                    or known(agreement_id)
                ):
                    continue
                found += 1
                await _cancel(client, service, agreement_id, agreement.provider_id, emit)
        except YagnaError as error:
            log.warning("%s: could not look for an orphaned agreement: %s", service, error)
    if scope.cancelled_caught:
        log.warning("%s: the look for an orphaned agreement timed out", service)
    return found


async def _cancel(
    client: YagnaClient,
    service: str,
    agreement_id: str,
    provider_id: str,
    emit: Callable[[ev.EngineEvent], None],
) -> None:
    try:
        await client.cancel_agreement(agreement_id, CANCEL_REASON)
    except YagnaError as error:
        # yagna 0.17.6 forwards the cancel to the provider, which never saw a Proposal-state
        # agreement ("not found"): the orphan stays until its validTo, reported.
        reason = f"left to expire at its validTo (yagna could not cancel it: {error.detail})"
        log.warning("%s: orphaned agreement %s %s", service, agreement_id, reason)
        emit(_event(service, agreement_id, provider_id, False, reason))
        return
    emit(_event(service, agreement_id, provider_id, True, CANCEL_REASON))


def _event(
    service: str, agreement_id: str, provider_id: str, cancelled: bool, reason: str
) -> ev.AgreementOrphaned:
    return ev.AgreementOrphaned(
        service=service,
        agreement_id=agreement_id,
        provider_id=provider_id,
        cancelled=cancelled,
        reason=reason,
    )
