"""Replace one instance by a fresh one without a gap in service: the engine's "replace this
instance" primitive.

`replace_instance(cluster, index)` starts a successor for the instance at `index` on a fresh
agreement (same or another provider: the market prefers providers not busy with this
service), beside the instance it replaces. Only once the successor runs -- and is healthy,
when the service has a health probe -- does it take over the index (`Cluster.promote`):
status shows it, forwarded ports send new connections to it, and its VPN names
(`<service>-<index>`, `<service>`) point at its address in every running instance's
/etc/hosts and in later deploys (engine/names.py). The old instance keeps running until the
names moved and the connections it serves through forwarded ports finished -- at least
`DRAIN_MIN` seconds (clients inside the VPN that looked its name up before it moved connect
to it directly, uncounted), at most `drain` (the proxy does not reset them meanwhile:
`Cluster.draining`) -- then stops as on an explicit stop (its shutdown runs, no restart)
and its agreement is terminated.

If the successor ends without ever being ready (every provider failed it), the old instance
is untouched and None is returned. If the old instance ends first (its agreement expired),
the successor still takes over once it is ready. Cancelling the call (the deployment goes
down) stops a successor that has not taken over.

Renewals (engine/renewal.py) use it for the same spec; the journal sees every agreement and
activity of both instances through the usual events, so `down` after a crash in the middle
releases both.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine import names
from golem_deploy.engine.lifecycle import ServiceState

if TYPE_CHECKING:
    from golem_deploy.engine.cluster import Cluster
    from golem_deploy.engine.runner import InstanceRunner

__all__ = ["Replacement", "drained", "ready", "replace_instance"]

DRAIN_MIN = 5.0
"""Seconds a replaced instance keeps serving at least (see the module docstring)."""
DRAIN = 30.0
"""Seconds a replaced instance keeps serving the connections it has, at most, before it
stops; it stops as soon as it serves none (engine/connections.py)."""


@dataclass(frozen=True)
class Replacement:
    """A finished replacement: who took over, and how long the successor took to be ready
    (from asking for its agreement to running and healthy)."""

    index: int
    old_agreement_id: str | None
    agreement_id: str | None
    provider_name: str | None
    took: float


def ready(runner: InstanceRunner, probes: bool) -> bool:
    """Running on its provider, and healthy when the service has a health probe."""
    record = runner.record
    return record.state is ServiceState.running and (not probes or record.healthy is True)


async def replace_instance(
    cluster: Cluster, index: int, *, reason: str, drain: float = DRAIN
) -> Replacement | None:
    """Replace instance `index` of `cluster` by a successor on a fresh agreement (see the
    module docstring); returns None when no successor became ready."""
    ctx = cluster.ctx
    old = cluster.runners[index]
    old_agreement = old.record.agreement_id
    began = anyio.current_time()
    successor = cluster.start_successor(index)
    probes = cluster.healthcheck.probes
    promoted = False
    try:
        while not ready(successor, probes):
            if successor.done.is_set():
                cluster.retired(successor)
                return None
            await successor.changed()
        cluster.promote(successor)
        promoted = True
    finally:
        if not promoted:
            successor.send(lc.StopRequested("replacement abandoned"))
    took = anyio.current_time() - began
    record = successor.record
    ctx.emit(
        ev.InstanceRenewed(
            service=cluster.service_name,
            index=index,
            old_agreement_id=old_agreement,
            agreement_id=record.agreement_id,
            provider_name=record.provider_name,
            renewals=record.renewals,
            took=took,
        )
    )
    async with anyio.create_task_group() as tg:
        # Its names (`<service>-<index>`, `<service>`) move to the successor in every
        # running instance while the old one drains; it stops once both are done, so a
        # client inside the VPN that resolved the old address meanwhile still gets answers.
        tg.start_soon(names.follow, cluster, successor)
        if not old.done.is_set():
            await drained(old, drain)  # new connections go to the successor; old ones finish
    if not old.done.is_set():  # (its agreement may have ended it meanwhile)
        old.send(lc.StopRequested(reason))
        await old.done.wait()
    cluster.retired(old)
    return Replacement(index, old_agreement, record.agreement_id, record.provider_name, took)


async def drained(old: InstanceRunner, at_most: float = DRAIN) -> None:
    """`DRAIN_MIN` seconds, then until the forwarded ports serve no connection to `old`
    (`at_most` seconds in all), or until `old` ends by itself."""
    record = old.record
    async with anyio.create_task_group() as tg:

        async def first(done: Awaitable[object]) -> None:
            await done
            tg.cancel_scope.cancel()

        async def idle() -> None:
            await anyio.sleep(min(DRAIN_MIN, at_most))
            if record.network is not None and record.network_address is not None:
                await record.network.connections.wait_idle(
                    record.network_address, at_most - DRAIN_MIN
                )

        tg.start_soon(first, idle())
        tg.start_soon(first, old.done.wait())
