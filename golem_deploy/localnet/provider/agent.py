"""The local provider agent: what ya-provider does, for one identity, over yagna's REST API.

One `ProviderAgent` per provider identity runs in the host process (all agents share one
aiohttp session). It publishes a VM offer shaped like a real provider's, negotiates with
requestors (counters once, or rejects with a reason), approves agreements, starts one
in-process ExeUnit per activity, sends debit notes at its interval and one invoice after the
agreement ends. Everything goes through the provider node's real REST API (api.py), so the
requestor sees exactly the protocol it would see on the Golem network. What to offer, whom
to serve and how much to bill is decided by terms.py; this module only acts on it.

Faults (see faults.py) make an agent misbehave on purpose for reliability tests.
`die_after` counts from the provider's first approved agreement: the provider gets work, and
then vanishes. `die_when` vanishes it the same way once a file exists, so a test can kill
exactly the provider it saw an instance placed on. A vanished agent is over for good; with
`come_back_after` the host starts a new agent for the same identity later (lives.py).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import anyio
from anyio.abc import TaskGroup, TaskStatus

from golem_deploy.localnet.provider import terms
from golem_deploy.localnet.provider.activities import ActivityRunner
from golem_deploy.localnet.provider.api import ProviderApi, ProviderApiError
from golem_deploy.localnet.provider.events import (
    AGREEMENT_CANCELLED,
    AGREEMENT_REJECTED,
    AGREEMENT_TERMINATED,
    AgreementEvent,
    OfferEvent,
    Proposal,
    ProposedAgreement,
    event_age,
    seconds_text,
)
from golem_deploy.localnet.provider.exeunits import ExeUnitFactory, real_exeunit
from golem_deploy.localnet.provider.loops import EventCursor, poll_forever, retried
from golem_deploy.localnet.provider.state import Activity, Agreement, ProviderConfig
from golem_deploy.localnet.provider.terms import Resources, Tariff

log = logging.getLogger(__name__)


class ProviderAgent:
    """One local provider, from offer to invoice."""

    def __init__(
        self,
        config: ProviderConfig,
        session: aiohttp.ClientSession,
        exeunit_factory: ExeUnitFactory = real_exeunit,
    ) -> None:
        self.config = config
        self.name = config.identity.name
        app_session = f"golem-deploy-{self.name}-{uuid.uuid4().hex[:12]}"
        self._api = ProviderApi(
            session, config.api_url, config.identity.app_key, app_session=app_session
        )
        self._offer_props = terms.offer_properties(config.index, self.name, config.identity.node_id)
        self._tariff = Tariff.from_offer(self._offer_props)
        self.subscription_id: str | None = None
        self.agreements: dict[str, Agreement] = {}
        self._countered: set[str] = set()
        self._approved = 0  # agreements approved so far (the reject_agreements_after fault)
        self._first_approval = anyio.Event()
        self._stopping = False
        self._tg: TaskGroup | None = None
        self.invoices_sent = 0
        self._activities = ActivityRunner(
            name=self.name,
            api=self._api,
            config=config,
            exeunit_factory=exeunit_factory,
            spawn=self._spawn,
            terminate_agreement=self._terminate_agreement,
        )

    @property
    def activities(self) -> dict[str, Activity]:
        return self._activities.activities

    @property
    def dead(self) -> bool:
        return self._activities.dead

    # ---------------------------------------------------------------- lifecycle

    def _spawn(self, handler: Callable[[], Awaitable[None]], what: str) -> None:
        """Run an event handler in the agent's task group.

        A bug in one handler is logged and ends only that handler: one malformed event must
        not take down every provider of the network (they share the host process).
        """

        async def guarded() -> None:
            try:
                await handler()
            except Exception:
                log.exception("%s: %s failed", self.name, what)

        assert self._tg is not None
        self._tg.start_soon(guarded)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Publish the offer (then report started) and serve until cancelled or dead."""
        try:
            await self._subscribe()
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._negotiation_loop)
                tg.start_soon(self._agreement_events_loop)
                tg.start_soon(self._activities.follow_events, self.agreements)
                if self.config.faults.die_after is not None:
                    tg.start_soon(self._die_later, self.config.faults.die_after)
                if self.config.faults.die_when is not None:
                    tg.start_soon(self._die_when, self.config.faults.die_when)
                task_status.started()
        finally:
            self._api.close()

    async def shutdown(self, timeout: float = 8.0) -> None:
        """Stop providing: end every activity cleanly, then withdraw the offer."""
        if self.dead:
            return
        self._stopping = True
        with anyio.move_on_after(timeout):
            for activity in list(self.activities.values()):
                activity.request_stop("provider stopped")
            for activity in list(self.activities.values()):
                await activity.done.wait()
            await self._unsubscribe()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _subscribe(self) -> None:
        sub = await self._api.subscribe_offer(self._offer_props, terms.OFFER_CONSTRAINTS)
        self.subscription_id = sub
        log.info("%s: offer subscribed %s", self.name, sub)

    async def _unsubscribe(self) -> None:
        if self.subscription_id is None:
            return
        sub, self.subscription_id = self.subscription_id, None
        try:
            await self._api.unsubscribe_offer(sub)
        except ProviderApiError as error:
            log.warning("%s: unsubscribing the offer failed: %s", self.name, error)

    async def _die_later(self, delay: float) -> None:
        """The die_after fault: after the first approved agreement + delay, vanish."""
        await self._first_approval.wait()
        await anyio.sleep(delay)
        log.warning("%s: dying now (fault die_after=%ss)", self.name, delay)
        await self._vanish()

    async def _die_when(self, trigger: Path) -> None:
        """The die_when fault: vanish as soon as ``trigger`` exists (polled: a test's file)."""
        while not trigger.exists():
            await anyio.sleep(0.2)
        log.warning("%s: dying now (fault die_when=%s)", self.name, trigger)
        if self.config.faults.come_back_after is not None:
            trigger.unlink(missing_ok=True)  # consumed: the next life waits for a new file
        await self._vanish()

    async def _vanish(self) -> None:
        """Like a crashed machine: every ExeUnit silent, the offer gone, nothing more."""
        self._activities.vanish()
        with anyio.move_on_after(3):
            await self._unsubscribe()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()

    # ---------------------------------------------------------------- negotiation

    async def _negotiation_loop(self) -> None:
        await poll_forever(
            f"{self.name}: offer events",
            self._next_offer_events,
            self._on_offer_event,
            until=lambda: self.subscription_id is None and self._stopping,
        )

    async def _next_offer_events(self) -> list[OfferEvent]:
        """Poll the offer's events; publish the offer again when it expired (1 h TTL)."""
        sub = self.subscription_id
        if sub is None:
            await self._subscribe()
            return []
        try:
            return await self._api.offer_events(sub)
        except ProviderApiError as error:
            if not error.gone:
                raise
            if self.subscription_id == sub and not self._stopping:
                log.info("%s: offer %s expired, re-subscribing", self.name, sub)
                self.subscription_id = None
            return []

    def _on_offer_event(self, event: OfferEvent) -> None:
        if isinstance(event, Proposal):
            self._spawn(lambda: self._on_proposal(event), "answering a proposal")
        elif isinstance(event, ProposedAgreement):
            self._spawn(lambda: self._on_agreement(event), "answering an agreement")

    def _reserved(self) -> Resources:
        total = Resources()
        for agreement in self.agreements.values():
            total = total + agreement.reserved
        return total

    def _why_not(self, properties: terms.Properties, constraints: str) -> str | None:
        """Why this provider cannot serve a demand, or None when it can."""
        limit = self.config.faults.max_agreement
        if limit is not None:
            too_late = terms.expiration_too_late(properties, limit, time.time())
            if too_late is not None:
                return too_late
        return terms.rejection(
            properties,
            constraints,
            reserved=self._reserved(),
            shutting_down=self._stopping or self.dead,
        )

    async def _on_proposal(self, proposal: Proposal) -> None:
        sub, proposal_id = proposal.subscription_id, proposal.proposal_id
        if proposal_id in self._countered or proposal.issuer_id == self.config.identity.node_id:
            return
        self._countered.add(proposal_id)
        if self.config.faults.slow_negotiation:
            await anyio.sleep(self.config.faults.slow_negotiation)
        reason = self._why_not(proposal.properties, proposal.constraints)
        try:
            if reason is not None:
                log.info("%s: rejecting proposal %s: %s", self.name, proposal_id, reason)
                await self._api.reject_proposal(
                    sub, proposal_id, reason, final=terms.is_final(reason)
                )
                return
            await self._api.counter_proposal(
                sub, proposal_id, self._offer_props, terms.OFFER_CONSTRAINTS
            )
        except ProviderApiError as error:
            log.info("%s: answering proposal %s failed: %s", self.name, proposal_id, error)

    async def _on_agreement(self, proposed: ProposedAgreement) -> None:
        agreement_id = proposed.agreement_id
        if self.config.faults.slow_negotiation:
            await anyio.sleep(self.config.faults.slow_negotiation)
        reason: str | None
        after = self.config.faults.reject_agreements_after
        if self.config.faults.reject_agreements:
            reason = "fault injected: this provider rejects every agreement"
        elif after is not None and self._approved >= after:
            reason = f"fault injected: this provider approves no more than {after} agreements"
        else:
            reason = self._why_not(proposed.demand, proposed.demand_constraints)
        if reason is not None:
            log.info("%s: rejecting agreement %s: %s", self.name, agreement_id, reason)
            try:
                await self._api.reject_agreement(agreement_id, reason, final=terms.is_final(reason))
            except ProviderApiError as error:
                log.info("%s: rejecting agreement failed: %s", self.name, error)
            return
        offer = proposed.offer if proposed.offer is not None else self._offer_props
        try:
            tariff = Tariff.from_offer(offer)
        except ValueError:
            tariff = self._tariff  # yagna sent the offer without its prices: ours
        agreement = Agreement(
            agreement_id=agreement_id,
            requestor_id=proposed.requestor_id,
            tariff=tariff,
            debit_note_interval=terms.debit_note_interval(
                proposed.demand, offer, self.config.debit_note_interval
            ),
            payment_timeout=terms.payment_timeout(proposed.demand),
            last_payable=anyio.current_time(),
            multi_activity=terms.multi_activity(proposed.demand),
            reserved=terms.demand_requirements(proposed.demand_constraints),
            mounts=terms.parse_mounts(proposed.demand),
            valid_to=proposed.valid_to,
            task_package=terms.task_package(proposed.demand),
            local_image=terms.parse_local_image(proposed.demand),
        )
        self.agreements[agreement_id] = agreement  # reserve before the await
        self._approved += 1
        try:
            await self._api.approve_agreement(agreement_id)
        except ProviderApiError as error:
            log.info("%s: approving %s failed: %s", self.name, agreement_id, error)
            del self.agreements[agreement_id]
            return
        log.info("%s: approved agreement %s", self.name, agreement_id)
        self._first_approval.set()
        self._spawn(lambda: self._run_agreement(agreement), "running an agreement")

    # ---------------------------------------------------------------- agreements

    async def _agreement_events_loop(self) -> None:
        cursor = EventCursor()

        async def poll() -> list[AgreementEvent]:
            events = await self._api.agreement_events(cursor.after)
            return cursor.fresh(events, lambda e: (e.agreement_id, e.kind))

        await poll_forever(f"{self.name}: agreement events", poll, self._on_agreement_event)

    def _on_agreement_event(self, event: AgreementEvent) -> None:
        agreement = self.agreements.get(event.agreement_id)
        if agreement is None or agreement.ended.is_set():
            return
        seen_after = event_age(event.event_date)
        if event.kind == AGREEMENT_TERMINATED and not agreement.terminated_by_us:
            agreement.end(f"terminated by requestor: {event.reason or 'terminated'}", seen_after)
        elif event.kind in (AGREEMENT_CANCELLED, AGREEMENT_REJECTED):
            agreement.end(event.kind, seen_after)

    async def _terminate_agreement(self, agreement: Agreement, message: str) -> None:
        agreement.terminated_by_us = True
        try:
            await self._api.terminate_agreement(agreement.agreement_id, message)
        except ProviderApiError as error:
            log.info("%s: terminating %s failed: %s", self.name, agreement.agreement_id, error)
        agreement.end(message)

    async def _run_agreement(self, agreement: Agreement) -> None:
        """Wait for the agreement's end (or expiry), its activities' end, then invoice once
        (while their final debit notes may still be on their way)."""
        lifetime: float | None = None
        if agreement.valid_to is not None:
            lifetime = max((agreement.valid_to - datetime.now(UTC)).total_seconds(), 0.0)
        with anyio.move_on_after(lifetime):
            await agreement.ended.wait()
        if not agreement.ended.is_set():  # validTo passed: the agreement is over
            await self._terminate_agreement(agreement, "agreement expired")
        for activity in list(agreement.activities.values()):
            activity.request_stop(agreement.end_reason or "agreement ended")
        for activity in list(agreement.activities.values()):
            await activity.finished.wait()  # not its final debit note (state.py)
        try:
            if self.config.faults.never_invoice or self.dead:
                return
            await self._invoice(agreement)
        finally:
            self.agreements.pop(agreement.agreement_id, None)

    async def _invoice(self, agreement: Agreement) -> None:
        """Issue the agreement's one invoice, then deliver it (both retried)."""
        amount = terms.invoice_amount(a.final_cost for a in agreement.activities.values())
        due = datetime.now(UTC) + timedelta(days=1)
        began = time.monotonic()
        try:
            invoice_id = await retried(
                f"{self.name}: invoice for {agreement.agreement_id}",
                lambda: self._api.create_invoice(
                    agreement.agreement_id, list(agreement.activities), amount, due
                ),
                attempts=5,
                delay=lambda attempt: 1.0 + attempt,
            )
        except ProviderApiError as error:
            log.warning("%s: creating the invoice failed: %s", self.name, error)
            return
        created = time.monotonic()
        try:  # the requestor node may be briefly busy (408)
            await retried(
                f"{self.name}: sending invoice {invoice_id}",
                lambda: self._api.send_invoice(invoice_id),
                attempts=4,
                delay=lambda attempt: 0.5 * (attempt + 1),
            )
        except ProviderApiError as error:
            log.warning("%s: sending invoice %s failed: %s", self.name, invoice_id, error)
            return
        self.invoices_sent += 1
        log.info(
            "%s: invoice %s for %s: %s (sent %.3f s after the agreement ended, seen after %s s;"
            " waited %.3f s for its activities, created in %.3f s, sent in %.3f s)",
            self.name,
            invoice_id,
            agreement.agreement_id,
            amount,
            time.monotonic() - agreement.ended_at,
            seconds_text(agreement.end_seen_after),
            began - agreement.ended_at,
            created - began,
            time.monotonic() - created,
        )
