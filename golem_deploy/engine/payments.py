"""Payments: one allocation for the budget; debit notes and invoices accepted within it.

Decision 6: money is Decimal, never accept more than the budget, accept exactly what is due
within it. yagna accepts a debit note only for exactly its cumulative `totalAmountDue` and an
invoice only for exactly its `amount`; what an acceptance *spends* is the increment over what
was already accepted for that activity (debit notes) or agreement (invoice). `Ledger` does
that arithmetic (pure, unit-tested); `PaymentManager` talks to yagna.

A document that would push the total over the budget is not accepted: an invoice is rejected
(P11) with the reason, a debit note (yagna cannot reject those: 501) is left unaccepted and
the instance's agreement is ended through `on_over_budget`, so spending stops.

Before a debit note is accepted, its cadence is judged against the agreement's payment terms
(engine/payment_terms.py, yapapi's rules): a provider that sends notes too often, or a
payable note when mid-agreement payments were not agreed, gets the note left unaccepted and
its agreement ended through `on_misbehaving`. Payable notes (with a due date) are accepted
like any other, at once; the requestor's yagna pays accepted payable notes by their due
date. Accepted notes also feed the burn rate (engine/burn.py). A budget changed on a running
deployment amends the allocation before the ledger takes it (`set_budget`).

Size: a little over 400 lines; the allocation and both acceptance loops share one ledger
and its lock, and read best together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.engine.burn import BurnRate
from golem_deploy.engine.payment_terms import AgreedTerms, NoteCadence, seconds_until
from golem_deploy.yagna.client import YagnaClient
from golem_deploy.yagna.errors import YagnaError, YagnaStatusError
from golem_deploy.yagna.models import Allocation, DebitNote, Decoration, Invoice

__all__ = ["Ledger", "PaymentManager"]

INVOICE_POLL = 0.1
"""Seconds between two looks for an invoice someone waits for."""
PAYABLE_RETRY = 30.0
"""Seconds a payable debit note's acceptance is retried at most while yagna fails."""

log = logging.getLogger(__name__)


@dataclass
class Ledger:
    """What was accepted, per activity and agreement, against the budget (pure)."""

    budget: Decimal
    spent: Decimal = Decimal(0)
    by_activity: dict[str, Decimal] = field(default_factory=dict)
    by_agreement: dict[str, Decimal] = field(default_factory=dict)
    invoiced: dict[str, Decimal] = field(default_factory=dict)  # agreement -> accepted invoice

    def debit_note_increment(self, activity_id: str, total_due: Decimal) -> Decimal:
        """New spend if a debit note with this cumulative total were accepted (never < 0)."""
        return max(Decimal(0), total_due - self.by_activity.get(activity_id, Decimal(0)))

    def invoice_increment(self, agreement_id: str, amount: Decimal) -> Decimal:
        return max(Decimal(0), amount - self.by_agreement.get(agreement_id, Decimal(0)))

    def fits(self, increment: Decimal) -> bool:
        return self.spent + increment <= self.budget

    def record_debit_note(self, agreement_id: str, activity_id: str, total_due: Decimal) -> Decimal:
        inc = self.debit_note_increment(activity_id, total_due)
        self.by_activity[activity_id] = max(total_due, self.by_activity.get(activity_id, total_due))
        self.by_agreement[agreement_id] = self.by_agreement.get(agreement_id, Decimal(0)) + inc
        self.spent += inc
        return inc

    def record_invoice(self, agreement_id: str, amount: Decimal) -> Decimal:
        inc = self.invoice_increment(agreement_id, amount)
        self.by_agreement[agreement_id] = self.by_agreement.get(agreement_id, Decimal(0)) + inc
        self.invoiced[agreement_id] = amount
        self.spent += inc
        return inc

    def cost_of(self, agreement_id: str) -> Decimal:
        return self.by_agreement.get(agreement_id, Decimal(0))


@dataclass
class _Tracked:
    on_cost: Callable[[Decimal], None]
    ended: bool = False
    expect_invoice: bool = True
    terms: AgreedTerms = field(default_factory=AgreedTerms)
    broke_terms: bool = False  # its provider broke them: its notes are no longer accepted


class PaymentManager:
    """The allocation plus the loops that accept debit notes and invoices for OUR agreements."""

    def __init__(
        self,
        client: YagnaClient,
        *,
        budget: Decimal,
        platform: str,
        emit: Callable[[ev.EngineEvent], None],
        on_over_budget: Callable[[str, str], None],
        on_misbehaving: Callable[[str, str], None] | None = None,
    ) -> None:
        self.client = client
        self.ledger = Ledger(budget)
        self.platform = platform
        self.emit = emit
        self.on_over_budget = on_over_budget
        self.on_misbehaving = on_misbehaving or on_over_budget
        self.burn = BurnRate()
        self._cadence: dict[str, NoteCadence] = {}  # activity id -> its notes so far
        self.allocation: Allocation | None = None
        self.decoration: Decoration | None = None
        self._agreements: dict[str, _Tracked] = {}
        self._lock = anyio.Lock()
        self._invoice_seen = anyio.Event()
        self._cursor = datetime.now(UTC).isoformat()
        self._handled: set[str] = set()
        self._invoice_poll: anyio.CancelScope | None = None  # the long poll in flight
        self._settling = False  # someone waits in settle(): look for invoices often

    @property
    def spent(self) -> Decimal:
        return self.ledger.spent

    async def open(self, address: str) -> None:
        """Create the allocation for the whole budget and get its demand decorations."""
        self.allocation = await self.client.create_allocation(
            address=address,
            platform=self.platform,
            total=self.ledger.budget,
            timeout=datetime.now(UTC) + timedelta(days=365),
        )
        self.emit(
            ev.AllocationCreated(
                allocation_id=self.allocation.allocation_id,
                amount=self.ledger.budget,
                platform=self.platform,
            )
        )
        self.decoration = await self.client.demand_decorations([self.allocation.allocation_id])

    async def set_budget(self, budget: Decimal) -> None:
        """A new budget for the running deployment: the allocation is amended first, so the
        ledger never allows what yagna would not pay (YagnaError when yagna refuses)."""
        if budget < self.ledger.spent:
            raise ValueError(f"budget {budget} is below the {self.ledger.spent} already spent")
        alloc = self.allocation
        if alloc is not None:
            await self.client.amend_allocation(alloc.allocation_id, total=budget)
            self.emit(ev.AllocationAmended(allocation_id=alloc.allocation_id, amount=budget))
        self.ledger.budget = budget

    async def close(self) -> None:
        """Release the allocation (idempotent); unspent funds return to the account."""
        alloc, self.allocation = self.allocation, None
        if alloc is None:
            return
        released = False
        with anyio.CancelScope(shield=True), anyio.move_on_after(15):
            try:
                await self.client.release_allocation(alloc.allocation_id)
                released = True
            except YagnaError as e:
                log.warning("release allocation %s: %s", alloc.allocation_id, e)
        if released:  # else the journal keeps it open for a later `down`
            self.emit(ev.AllocationReleased(allocation_id=alloc.allocation_id))

    def track(
        self,
        agreement_id: str,
        on_cost: Callable[[Decimal], None],
        terms: AgreedTerms | None = None,
    ) -> None:
        """An agreement of ours: pay for it, and report its cost increments to `on_cost`;
        its debit notes are judged against `terms` (what its demand agreed)."""
        self._agreements[agreement_id] = _Tracked(on_cost, terms=terms or AgreedTerms())

    def activity_created(self, agreement_id: str, activity_id: str) -> None:
        """The activity's notes are counted from now (yapapi counts from its creation)."""
        tracked = self._agreements.get(agreement_id)
        terms = tracked.terms if tracked is not None else AgreedTerms()
        self._cadence[activity_id] = NoteCadence(terms, started=anyio.current_time())

    def agreement_ended(self, agreement_id: str, *, expect_invoice: bool = True) -> None:
        """The agreement was terminated: an invoice is expected for it, unless its provider
        vanished (then `settle` does not wait for one, but still accepts a late one)."""
        if agreement_id in self._agreements:
            self._agreements[agreement_id].ended = True
            self._agreements[agreement_id].expect_invoice = expect_invoice
        self.burn.agreement_ended(agreement_id)

    def unpaid(self) -> list[str]:
        """Ended agreements whose invoice was not accepted yet."""
        return [
            a
            for a, t in self._agreements.items()
            if t.ended and t.expect_invoice and a not in self.ledger.invoiced
        ]

    async def settle(self, timeout: float) -> list[str]:
        """Wait (bounded) until every ended agreement's invoice is accepted; return the
        agreements still unpaid when the time ran out."""
        self._settling = True
        if self._invoice_poll is not None:
            self._invoice_poll.cancel()  # go look often now (see _loop)
        try:
            with anyio.move_on_after(timeout):
                while self.unpaid():
                    seen = self._invoice_seen
                    with anyio.move_on_after(1.0):
                        await seen.wait()
        finally:
            self._settling = False
        return self.unpaid()

    # -------------------------------------------------------------------------- loops

    async def run(self) -> None:
        """Poll invoice and debit-note events until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._loop, "debit_note")
            tg.start_soon(self._loop, "invoice")

    async def _loop(self, kind: str) -> None:
        """yagna's payment long poll looks at its database once a second, so an invoice
        `settle` waits for (down) would wait up to a second for nothing: while it waits,
        invoice events are asked often instead of long-polled."""
        cursor: str | None = self._cursor
        while True:
            events = []
            try:
                if kind == "invoice" and self._settling and self.unpaid():
                    events = await self.client.invoice_events(cursor, timeout=0)
                    if not events:
                        await anyio.sleep(INVOICE_POLL)
                elif kind == "invoice":
                    with anyio.CancelScope() as self._invoice_poll:
                        events = await self.client.invoice_events(cursor, timeout=3.0)
                    self._invoice_poll = None
                else:
                    events = await self.client.debit_note_events(cursor, timeout=3.0)
            except YagnaError as e:
                log.warning("payment events: %s", e)
                await anyio.sleep(1.0)
                continue
            for event in events:
                cursor = event.event_date
                if not event.event_type.endswith("ReceivedEvent"):
                    continue
                if event.document_id in self._handled:
                    continue
                try:
                    if kind == "invoice":
                        await self._on_invoice(await self.client.get_invoice(event.document_id))
                    else:
                        note = await self.client.get_debit_note(event.document_id)
                        await self._on_debit_note(note)
                except YagnaError as e:
                    log.warning("%s %s: %s", kind, event.document_id, e)

    def _ours(self, payer: str, platform: str) -> bool:
        a = self.allocation
        if a is None:
            return False
        return payer.lower() == a.address.lower() and platform == a.payment_platform

    async def _on_debit_note(self, note: DebitNote) -> None:
        tracked = self._agreements.get(note.agreement_id)
        if tracked is None or not self._ours(note.payer_addr, note.payment_platform):
            return  # not one of this deployment's agreements
        alloc = self.allocation
        assert alloc is not None
        async with self._lock:
            self._handled.add(note.debit_note_id)
            if note.agreement_id in self.ledger.invoiced:
                return  # the invoice already covers it
            if tracked.broke_terms:
                return  # being ended already; said once
            why = None if tracked.ended else self._misbehaviour(note)  # a final note is due
            if why is not None:
                tracked.broke_terms = True
                self._note_left_unaccepted(note, why)
                self.on_misbehaving(note.agreement_id, why)
                return
            inc = self.ledger.debit_note_increment(note.activity_id, note.total_amount_due)
            if not self.ledger.fits(inc):
                reason = (
                    f"over budget: accepting {inc} more would spend "
                    f"{self.ledger.spent + inc} of {self.ledger.budget}"
                )
                self._note_left_unaccepted(note, reason)
                self.on_over_budget(note.agreement_id, reason)
                return
            await self._accept(note, alloc.allocation_id)
            inc = self.ledger.record_debit_note(
                note.agreement_id, note.activity_id, note.total_amount_due
            )
            self.burn.note_accepted(
                note.agreement_id, note.activity_id, note.total_amount_due, anyio.current_time()
            )
            self.emit(
                ev.DebitNoteAccepted(
                    debit_note_id=note.debit_note_id,
                    agreement_id=note.agreement_id,
                    activity_id=note.activity_id,
                    amount=inc,
                    total_due=note.total_amount_due,
                )
            )
        tracked.on_cost(inc)

    def _note_left_unaccepted(self, note: DebitNote, reason: str) -> None:
        """Say why a debit note is left unaccepted (yagna cannot reject one: 501)."""
        self.emit(
            ev.PaymentRejected(
                kind="debit_note",
                document_id=note.debit_note_id,
                agreement_id=note.agreement_id,
                amount=note.total_amount_due,
                reason=reason,
            )
        )

    async def _accept(self, note: DebitNote, allocation_id: str) -> None:
        """Accept the note. A payable one is retried while yagna fails (unreachable, 5xx),
        1 s apart, until its due date but at most PAYABLE_RETRY s: yagna pays only accepted
        notes, and the provider ends the agreement when one is unaccepted at its due date."""
        window = seconds_until(note.payment_due_date, datetime.now(UTC))
        deadline = anyio.current_time() + min(PAYABLE_RETRY, window or 0.0)
        while True:
            try:
                await self.client.accept_debit_note(
                    note.debit_note_id, note.total_amount_due, allocation_id
                )
                return
            except YagnaError as e:
                final = isinstance(e, YagnaStatusError) and e.status < 500
                if final or anyio.current_time() + 1.0 > deadline:
                    raise
                log.info("payable debit note %s: %s; trying again", note.debit_note_id, e)
                await anyio.sleep(1.0)

    def _misbehaviour(self, note: DebitNote) -> str | None:
        """Why this note breaks the agreed terms (and the agreement must end), or None."""
        cadence = self._cadence.get(note.activity_id)
        if cadence is None:  # an activity we did not see created: count from its first note
            tracked = self._agreements.get(note.agreement_id)
            terms = tracked.terms if tracked is not None else AgreedTerms()
            cadence = self._cadence[note.activity_id] = NoteCadence(terms, anyio.current_time())
        why = cadence.judge(anyio.current_time(), payable=note.payment_due_date is not None)
        return f"provider broke the payment terms: {why}" if why is not None else None

    async def _on_invoice(self, invoice: Invoice) -> None:
        tracked = self._agreements.get(invoice.agreement_id)
        if tracked is None or not self._ours(invoice.payer_addr, invoice.payment_platform):
            return
        alloc = self.allocation
        assert alloc is not None
        if invoice.status not in ("RECEIVED",):
            return
        async with self._lock:
            self._handled.add(invoice.invoice_id)
            inc = self.ledger.invoice_increment(invoice.agreement_id, invoice.amount)
            if not self.ledger.fits(inc):
                reason = (
                    f"over budget: invoice {invoice.amount} needs {inc} more, "
                    f"spent {self.ledger.spent} of {self.ledger.budget}"
                )
                self.emit(
                    ev.PaymentRejected(
                        kind="invoice",
                        document_id=invoice.invoice_id,
                        agreement_id=invoice.agreement_id,
                        amount=invoice.amount,
                        reason=reason,
                    )
                )
                try:
                    await self.client.reject_invoice(invoice.invoice_id, "INCORRECT_AMOUNT", reason)
                except YagnaError as e:
                    log.warning("reject invoice %s: %s", invoice.invoice_id, e)
                self.ledger.invoiced[invoice.agreement_id] = Decimal(0)  # settled: refused
                self._wake()
                return
            await self.client.accept_invoice(
                invoice.invoice_id, invoice.amount, alloc.allocation_id
            )
            inc = self.ledger.record_invoice(invoice.agreement_id, invoice.amount)
            self.emit(
                ev.InvoiceAccepted(
                    invoice_id=invoice.invoice_id,
                    agreement_id=invoice.agreement_id,
                    amount=invoice.amount,
                    new_spend=inc,
                )
            )
            self._wake()
        tracked.on_cost(inc)

    def _wake(self) -> None:
        self._invoice_seen.set()
        self._invoice_seen = anyio.Event()
