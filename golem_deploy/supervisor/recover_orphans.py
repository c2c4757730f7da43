"""Recovery's look for `Proposal` agreements orphaned by a lost `POST /agreements` answer.

Why: during a run the engine finds such an orphan right after the create call that lost
its answer (engine/orphans.py). A supervisor that dies (SIGKILL, power loss) while that
call is in flight, or whose own look failed (yagna did not answer it), leaves the orphan
unreported: nobody else knows it exists. `down` recovers from the journal, and the journal
knows enough to find it: the demand subscriptions the deployment held (`DemandSubscribed`,
per service) and every agreement that was ours. An agreement yagna holds in `Proposal`,
from one of those subscriptions, that the journal never names is an orphan: it is
cancelled, or (yagna 0.17.6 refuses to cancel a `Proposal`) reported and left to expire at
its validTo, journaled as `AgreementOrphaned` either way, as during a run.

Limit: a journal compaction (supervisor/journal_compact.py, past 10,000 records) folds
away the older `DemandSubscribed` records; only subscriptions made since the last
compaction are searched. An orphan binds no one and expires by itself, so that is a
report missed, not money spent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from golem_deploy.supervisor.journal import Journal
    from golem_deploy.yagna.client import YagnaClient


@dataclass
class JournaledDemands:
    """What a journal says about the deployment's demands and agreements."""

    subscriptions: dict[str, set[str]] = field(default_factory=dict)  # service -> ids
    since: datetime | None = None  # the first subscription: no agreement of ours is older
    known: set[str] = field(default_factory=set)  # every agreement id the journal names


def journaled_demands(records: Iterable[Mapping[str, object]]) -> JournaledDemands:
    """Fold journal records into the subscriptions per service, the first one's time and
    every agreement id any record names (created, terminated, orphaned, rejected...)."""
    demands = JournaledDemands()
    for record in records:
        agreement_id = record.get("agreement_id")
        if isinstance(agreement_id, str):
            demands.known.add(agreement_id)
        if record.get("kind") != "DemandSubscribed":
            continue
        service, subscription = record.get("service"), record.get("subscription_id")
        if not (isinstance(service, str) and isinstance(subscription, str)):
            continue
        demands.subscriptions.setdefault(service, set()).add(subscription)
        ts = record.get("ts")
        if isinstance(ts, int | float):
            at = datetime.fromtimestamp(ts, UTC)
            demands.since = at if demands.since is None else min(demands.since, at)
    return demands


async def sweep_orphans(
    client: YagnaClient, journal: Journal, progress: Callable[[str], None]
) -> int:
    """Find (and cancel or report) the orphans of the journal's subscriptions; each one is
    journaled as `AgreementOrphaned` and said. Returns how many were found. Best effort
    and bounded (engine/orphans.py's SWEEP_TIMEOUT per service)."""
    from golem_deploy.engine import events as ev
    from golem_deploy.engine import orphans
    from golem_deploy.supervisor import journal as journal_file

    demands = journaled_demands(journal_file.read(journal.path))
    if demands.since is None:
        return 0

    def record(event: ev.EngineEvent) -> None:
        journal.append_event(event)
        if isinstance(event, ev.AgreementOrphaned):
            what = "cancelled" if event.cancelled else event.reason
            progress(f"orphaned agreement {event.agreement_id[:12]}… (Proposal): {what}")

    found = 0
    for service, subscriptions in sorted(demands.subscriptions.items()):
        found += await orphans.sweep(
            client,
            service=service,
            subscriptions=subscriptions,
            provider_id=None,
            since=demands.since,
            known=demands.known.__contains__,
            emit=record,
        )
    return found
