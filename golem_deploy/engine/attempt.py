"""What an instance holds on its current provider (agreement + activity, and its node on
the instance's network): getting it and giving it back.

Acquiring signs an agreement with a provider we do not avoid and creates an activity on it,
trying the next provider whenever one fails us. Releasing destroys the activity and
terminates the agreement, bounded, as the lifecycle's ReleaseActivity says (a vanished
provider gets little patience and no invoice is expected from it; an agreement the provider
terminated is not terminated again)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.context import EngineContext
from golem_deploy.engine.market import AgreementFailed, MarketSession, SignedAgreement
from golem_deploy.engine.offers import LinearPricing
from golem_deploy.engine.pacing import StartSlot
from golem_deploy.engine.payment_terms import agreed_terms
from golem_deploy.engine.service import Service, record_of
from golem_deploy.protocol import ActivityStateName
from golem_deploy.yagna.errors import YagnaError
from golem_deploy.yagna.models import ActivityState

__all__ = ["ProviderAttempt"]

log = logging.getLogger(__name__)


class ProviderAttempt:
    """The agreement and activity one instance holds (None while it holds none)."""

    def __init__(self, ctx: EngineContext, market: MarketSession, instance: Service) -> None:
        self.ctx = ctx
        self.market = market
        self.instance = instance
        self.record = record_of(instance)  # what the engine shows about the instance
        # where the cost of this attempt's agreement is counted: the record, or (once a
        # renewal replaced the instance) its successor's, so an instance's cost keeps growing
        self.cost_record = self.record
        self.agreement: SignedAgreement | None = None
        self.activity_id: str | None = None
        #: Held from the agreement until the `start` handler ended (engine/pacing.py).
        self.start_slot: StartSlot | None = None

    @property
    def name(self) -> str:
        return f"{self.record.service}[{self.record.index}]"

    async def acquire(self, deliver: Callable[[lc.Event], None]) -> None:
        """Until an agreement is signed and an activity created on it. News about the
        agreement (terminated by the provider, over budget) goes to `deliver`."""
        ctx, inst = self.ctx, self.record
        while True:
            try:
                signed = await self.market.sign(inst.index)
            except AgreementFailed as e:
                ctx.providers.avoid(e.provider_id, e.provider_name, e.reason)
                continue
            except YagnaError as e:
                log.warning("%s: negotiation: %s", self.name, e)
                await anyio.sleep(ctx.timings.negotiation_retry)
                continue
            self.agreement = signed
            inst.agreement_id = signed.agreement_id
            inst.agreement_signed_at = datetime.now(UTC)
            inst.agreement_expires_at = self.market.expiration
            inst.agreement_pricing = _pricing(signed.agreement.offer_properties)
            inst.provider_id = signed.provider_id
            inst.provider_name = signed.provider_name
            ctx.router.register(signed.agreement_id, deliver)
            terms = agreed_terms(signed.agreement.demand_properties)
            ctx.payments.track(signed.agreement_id, self._add_cost, terms)
            try:
                await self._wait_start_slot(signed)
                activity_id = await ctx.client.create_activity(signed.agreement_id)
            except YagnaError as e:
                reason = f"activity creation failed: {e.detail}"
                ctx.emit(
                    ev.ActivityCreateFailed(
                        service=inst.service,
                        index=inst.index,
                        agreement_id=signed.agreement_id,
                        reason=reason,
                    )
                )
                ctx.providers.avoid(signed.provider_id, signed.provider_name, reason)
                with anyio.CancelScope(shield=True):
                    await self.release(lc.ReleaseActivity(reason))
                continue
            self.activity_id = inst.activity_id = activity_id
            ctx.payments.activity_created(signed.agreement_id, activity_id)
            ctx.emit(
                ev.ActivityCreated(
                    service=inst.service,
                    index=inst.index,
                    activity_id=activity_id,
                    agreement_id=signed.agreement_id,
                )
            )
            return

    async def _wait_start_slot(self, signed: SignedAgreement) -> None:
        """Take a start slot for `signed`'s provider (given back by `start_ended()`, or by
        `release()` when the attempt ends first); a cancelled wait takes none."""
        self.start_ended()
        started = anyio.current_time()
        self.start_slot = await self.ctx.start_gate.slot(signed.provider_id)
        waited = anyio.current_time() - started
        if waited > 0.05:
            log.debug("%s: waited %.2f s for a start slot", self.name, waited)

    def start_ended(self) -> None:
        """The instance's start is over (its `start` handler returned, either way)."""
        slot, self.start_slot = self.start_slot, None
        if slot is not None:
            slot.release()

    async def _confirm_lost(self, activity_id: str) -> bool:
        """True once yagna itself reports the activity lost (bounded): only then is an
        activity that could not be destroyed reported abandoned."""
        t = self.ctx.timings
        with anyio.move_on_after(t.loss_confirmation):
            while True:
                try:
                    if (await self.ctx.client.activity_state(activity_id)).lost:
                        return True
                except YagnaError as e:
                    log.debug("state of abandoned activity %s: %s", activity_id, e)
                await anyio.sleep(t.retry_pause)
        return False

    def _add_cost(self, amount: Decimal) -> None:
        self.cost_record.cost += amount

    async def release(self, release: lc.ReleaseActivity) -> None:
        """Destroy the activity and terminate the agreement (bounded), as `release` says.

        The Activity/AgreementTerminated events are emitted only for what really ended (or
        what the provider ended itself), so a journal keeps anything still open for a later
        cleanup (`golem-deploy down` after a crash)."""
        ctx, inst = self.ctx, self.record
        self.start_ended()
        activity_id, self.activity_id = self.activity_id, None
        signed, self.agreement = self.agreement, None
        inst.activity_id = None
        inst.agreement_id = None
        inst.agreement_expires_at = None
        t = ctx.timings
        if release.cause is lc.ReleaseCause.network_lost:
            await ctx.network.wait(t.yagna_outage_grace)  # its agreement ends on the new one
        vanished = release.cause in (lc.ReleaseCause.vanished, lc.ReleaseCause.network_lost)
        patience = t.release_patience_vanished if vanished else t.release_patience
        destroyed = False
        # The DELETE is sent first; while yagna confirms it, the node leaves the network
        # and the agreement is terminated: the invoice `down` waits for comes only after
        # the agreement ended, and confirming a destroy took up to 4.6 s of a 10-instance
        # down on a busy machine (yapapi terminates before it even destroys).
        asked = anyio.Event()

        async def end_activity() -> None:
            nonlocal destroyed
            try:
                if activity_id is None:
                    return
                with anyio.move_on_after(patience):
                    try:
                        await self._destroy(activity_id, patience, asked)
                        destroyed = True
                    except YagnaError as e:
                        log.info("destroy activity %s: %s", activity_id, e)
                if destroyed:
                    self._ended(activity_id, abandoned=False)
            finally:
                asked.set()

        async def end_agreement() -> None:
            await asked.wait()
            await self._leave_network(patience)
            if signed is not None:
                await self._end_agreement(signed, release, patience)

        async with anyio.create_task_group() as tg:
            tg.start_soon(end_activity)
            tg.start_soon(end_agreement)
        # A vanished provider's activity can never be confirmed destroyed (DELETE needs the
        # provider); once its agreement is terminated and yagna itself reports it lost,
        # nothing runs or bills there: report it abandoned rather than leave it for `down`.
        if vanished and not destroyed and activity_id is not None:
            lost = await self._confirm_lost(activity_id)
            if lost:
                self._ended(activity_id, abandoned=True)

    async def _end_agreement(
        self, signed: SignedAgreement, release: lc.ReleaseActivity, patience: float
    ) -> None:
        """Terminate the agreement (unless the provider did) and tell payments it ended."""
        ctx, reason = self.ctx, release.reason
        ctx.router.unregister(signed.agreement_id)
        terminated = not release.terminate_agreement
        if release.terminate_agreement:
            with anyio.move_on_after(patience):
                try:
                    await ctx.client.terminate_agreement(
                        signed.agreement_id, reason[:200] or "Work finished", "Success"
                    )
                    terminated = True
                except YagnaError as e:
                    log.warning("terminate agreement %s: %s", signed.agreement_id, e)
        ctx.payments.agreement_ended(signed.agreement_id, expect_invoice=release.expect_invoice)
        if terminated:
            ctx.emit(
                ev.AgreementTerminated(
                    agreement_id=signed.agreement_id,
                    provider_id=signed.provider_id,
                    by="requestor" if release.terminate_agreement else "provider",
                    reason=reason,
                )
            )

    async def _destroy(self, activity_id: str, patience: float, asked: anyio.Event) -> None:
        """DELETE the activity and return once yagna records it Terminated.

        yagna's provider side answers a DELETE only when its 750 ms database poll sees the
        activity Terminated, though the provider ends it in a fraction of that: so the
        DELETE waits briefly, then the activity's state is asked (yagna records the answer),
        and only if that does not say Terminated in time, a plain waiting DELETE follows."""
        client, t = self.ctx.client, self.ctx.timings
        ended = await client.request_destroy(activity_id, t.destroy_wait)
        asked.set()  # yagna was told: the agreement may go now (see release)
        if ended:
            return
        state = await self._ending_within(activity_id, t.destroy_confirm)
        if state is not None and state.state == ActivityStateName.TERMINATED:
            return
        # Not ended in time: a plain DELETE, answered at yagna's next look. Or ending: the
        # provider reported [X, Terminated] and its final report is still to come (or was
        # lost: seen with 1-2 of 10 activities ending at once), and the DELETE returns at
        # once -- without it, this waited its whole `destroy_confirm` for a state that
        # would not change.
        await client.destroy_activity(activity_id, timeout=patience)

    async def _ending_within(self, activity_id: str, seconds: float) -> ActivityState | None:
        """The activity's state once it says Terminated or on its way there (`ending`)
        within `seconds`, else None (also when yagna cannot answer: the plain DELETE
        decides then)."""
        client, t = self.ctx.client, self.ctx.timings
        with anyio.move_on_after(seconds):
            try:
                while not (state := await client.activity_state(activity_id)).ending:
                    await anyio.sleep(t.destroy_poll)
            except YagnaError as e:
                log.info("%s: state of activity %s: %s", self.name, activity_id, e)
                return None
            return state
        return None

    async def _leave_network(self, patience: float) -> None:
        """Take the provider off the instance's network (best effort, bounded: a node left
        behind goes with the network; the instance keeps its address for a replacement)."""
        inst = self.instance
        node, inst._network_node = inst._network_node, None
        if node is None or node.network.removed:
            return
        with anyio.move_on_after(patience):
            try:
                await node.network.remove_node(node)
            except YagnaError as e:
                log.info("%s: remove node %s from network: %s", self.name, node.node_id, e)

    def _ended(self, activity_id: str, *, abandoned: bool) -> None:
        inst = self.record
        self.ctx.emit(
            ev.ActivityDestroyed(
                service=inst.service, index=inst.index, activity_id=activity_id, abandoned=abandoned
            )
        )


def _pricing(offer: Mapping[str, object]) -> LinearPricing | None:
    try:
        return LinearPricing.from_properties(offer)
    except ValueError:
        return None  # the market only signs linear offers; a renewal then has no floor
