"""Renewals: instances outlive their agreements.

A cluster with a RenewalPolicy runs a Renewer instead of yapapi's expiration timer. For each
instance index a keeper follows the agreement the instance holds and asks the lifecycle's
pure rules (`lifecycle.plan_renewal`, `lifecycle.renewal_refusal`) what to do:

- renew: at the planned time (early enough for the slowest start measured so far plus a
  margin, never before half the agreement), publish the demand again for a whole fresh
  agreement (`MarketSession.extend`) and replace the instance (engine/replace.py): the
  successor takes over once it runs and is healthy, then the old one stops. If no
  successor became ready, try again (the failing providers are avoided by then);
- refuse (the budget would pass): say so (InstanceRenewalRefused) and let the instance run
  to the end of its agreement;
- stop: the service's lifetime ends before the agreement does.

Whatever happens, an agreement that reaches its end on a running instance ends it
(ExpirationReached: shutdown runs, no restart). Restarts after failures stay the runner's
business; the keeper just follows the agreement the instance holds.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from golem_deploy.engine import events as ev
from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.context import EngineContext
from golem_deploy.engine.offers import DURATION_SEC, LinearPricing
from golem_deploy.engine.replace import ready, replace_instance

if TYPE_CHECKING:
    from golem_deploy.engine.cluster import Cluster
    from golem_deploy.engine.runner import InstanceRunner

__all__ = ["Renewer"]

log = logging.getLogger(__name__)

NEW_INSTANCES_POLL = 1.0
"""Seconds between looks for instances spawned into the cluster after it started."""
RETRY_PAUSE = 1.0
"""Seconds between a replacement that never became ready and the next try."""


class Renewer:
    """Keeps every instance of one cluster on a valid agreement (see the module docstring)."""

    def __init__(self, cluster: Cluster, policy: lc.RenewalPolicy, ctx: EngineContext) -> None:
        self.cluster = cluster
        self.policy = policy
        self.ctx = ctx
        self.start_durations: list[float] = []
        started = cluster.started_at
        self.lifetime_ends_at: float | None = (
            None if policy.lifetime is None else started.timestamp() + policy.lifetime
        )
        self._kept = 0
        self._refused: dict[str, str] = {}  # agreement -> why it is not renewed

    async def run(self) -> None:
        """Until cancelled (the cluster ends): a keeper for every instance index."""
        async with anyio.create_task_group() as tg:
            while True:
                while self._kept < len(self.cluster.runners):
                    tg.start_soon(self._keep, self._kept, tg)
                    self._kept += 1
                await anyio.sleep(NEW_INSTANCES_POLL)

    # ------------------------------------------------------------------ one index

    async def _keep(self, index: int, tg: TaskGroup) -> None:
        cluster, probes = self.cluster, self.cluster.healthcheck.probes
        spawned = anyio.current_time()
        measured = False
        expiring: set[str] = set()
        while True:
            runner = cluster.runners[index]
            if runner.done.is_set() or cluster.stopping:
                return  # the instance ended for good (or everything stops)
            record = runner.record
            agreement, expires = record.agreement_id, record.agreement_expires_at
            if agreement is not None and expires is not None and agreement not in expiring:
                expiring.add(agreement)  # whatever happens, it ends with its agreement
                tg.start_soon(self._expire, runner, agreement, expires)
            if not ready(runner, probes) or record.agreement_signed_at is None or expires is None:
                await runner.changed()
                continue
            if not measured:
                self.start_durations.append(anyio.current_time() - spawned)
                measured = True
            plan = lc.plan_renewal(
                self.policy,
                signed_at=record.agreement_signed_at.timestamp(),
                expires_at=expires.timestamp(),
                lifetime_ends_at=self.lifetime_ends_at,
                start_durations=self.start_durations,
            )
            if not await self._wait_until(runner, agreement, plan.at):
                continue  # the instance moved (restart) or ended: plan again
            if isinstance(plan, lc.StopAt):
                self._say_refused(index, f"{plan.reason}: not renewed")
                runner.send(lc.StopRequested(plan.reason))
                return
            why = self._over_budget(runner, expires)
            if why is not None and agreement is not None:
                self._refused[agreement] = why  # _expire stops it, saying why
                self._say_refused(index, why)
                await runner.done.wait()
                return
            await self._renew(index, runner, expires)

    async def _renew(self, index: int, runner: InstanceRunner, expires: datetime) -> None:
        cluster, record = self.cluster, runner.record
        now = datetime.now(UTC)
        fresh = now + timedelta(seconds=self.policy.agreement)
        if cluster.market.expiration < now + timedelta(seconds=self.policy.agreement * 0.9):
            cluster.market.extend(fresh)  # every agreement from here lasts a whole one
            cluster.expiration = cluster.market.expiration
        self.ctx.emit(
            ev.InstanceRenewing(
                service=cluster.service_name,
                index=index,
                agreement_id=record.agreement_id,
                expires_at=expires,
            )
        )
        done = await replace_instance(cluster, index, reason="renewed on a fresh agreement")
        if done is None:
            log.info("%s[%d]: no replacement became ready; trying again", cluster, index)
            await anyio.sleep(RETRY_PAUSE)
            return
        self.start_durations.append(done.took)

    async def _wait_until(self, runner: InstanceRunner, agreement: str | None, at: float) -> bool:
        """Until wall-clock time `at`; False when the instance left that agreement first."""
        while True:
            left = at - datetime.now(UTC).timestamp()
            if left <= 0:
                return True
            with anyio.move_on_after(left):
                await runner.changed()
            if runner.done.is_set() or runner.record.agreement_id != agreement:
                return False

    async def _expire(self, runner: InstanceRunner, agreement: str, expires: datetime) -> None:
        """End the instance when `agreement` reaches its end while it still holds it (with
        the reason it was not renewed, when it was refused)."""
        await anyio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()))
        if runner.record.agreement_id == agreement and not runner.done.is_set():
            why = self._refused.pop(agreement, None)
            runner.send(lc.ExpirationReached() if why is None else lc.StopRequested(why))

    def _over_budget(self, runner: InstanceRunner, expires: datetime) -> str | None:
        record, payments = runner.record, self.ctx.payments
        signed = record.agreement_signed_at
        if record.agreement_id is None or signed is None:
            return None
        return lc.renewal_refusal(
            spent=payments.spent,
            budget=payments.ledger.budget,
            agreement_cost=payments.ledger.cost_of(record.agreement_id),
            agreement_age=(datetime.now(UTC) - signed).total_seconds(),
            agreement_length=(expires - signed).total_seconds(),
            price=_floor(record.agreement_pricing),
        )

    def _say_refused(self, index: int, reason: str) -> None:
        self.ctx.emit(
            ev.InstanceRenewalRefused(service=self.cluster.service_name, index=index, reason=reason)
        )


def _floor(pricing: LinearPricing | None) -> lc.AgreementPrice:
    """The least an agreement under `pricing` costs: its start price and wall time."""
    if pricing is None:
        return lc.AgreementPrice()
    return lc.AgreementPrice(pricing.start, pricing.prices.get(DURATION_SEC, Decimal(0)))
