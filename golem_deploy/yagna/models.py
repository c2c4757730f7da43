"""Typed views of what yagna sends us.

Each `parse` takes decoded JSON and either returns a dataclass or raises YagnaBadAnswer naming
the missing/ill-typed field, so a malformed answer becomes one clear error instead of a
KeyError deep in the engine. Only the fields the engine reads are modelled; the raw
properties of proposals and agreements are kept as flat dicts.

Size: slightly over 400 lines on purpose: one small dataclass per kind of answer of the
REST API, kept together so the wire format the engine relies on is readable in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from golem_deploy.protocol import NODE_NAME, ActivityStateName
from golem_deploy.yagna.errors import YagnaBadAnswer

__all__ = [
    "ActivityState",
    "ActivityUsage",
    "Agreement",
    "AgreementEvent",
    "Allocation",
    "DebitNote",
    "Decoration",
    "ExeResult",
    "Identity",
    "Invoice",
    "MarketEvent",
    "PaymentEvent",
    "Proposal",
    "RuntimeEvent",
]


class _Reader:
    """Field access on one JSON object that fails with a readable YagnaError."""

    def __init__(self, data: object, what: str, request: str) -> None:
        if not isinstance(data, dict):
            raise YagnaBadAnswer(f"expected a JSON object for {what}, got {_kind(data)}", request)
        self.data: dict[str, Any] = data
        self.what = what
        self.request = request

    def _fail(self, key: str, expected: str) -> YagnaBadAnswer:
        got = _kind(self.data.get(key)) if key in self.data else "nothing"
        return YagnaBadAnswer(
            f"malformed {self.what}: field {key!r} should be {expected}, got {got}", self.request
        )

    def text(self, key: str) -> str:
        v = self.data.get(key)
        if not isinstance(v, str):
            raise self._fail(key, "a string")
        return v

    def opt_text(self, key: str) -> str | None:
        v = self.data.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            raise self._fail(key, "a string or null")
        return v

    def integer(self, key: str) -> int:
        v = self.data.get(key)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._fail(key, "an integer")
        return v

    def flag(self, key: str, default: bool | None = None) -> bool:
        v = self.data.get(key, default)
        if not isinstance(v, bool):
            raise self._fail(key, "a boolean")
        return v

    def obj(self, key: str) -> dict[str, Any]:
        v = self.data.get(key)
        if not isinstance(v, dict):
            raise self._fail(key, "an object")
        return v

    def decimal(self, key: str) -> Decimal:
        v = self.data.get(key)
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise self._fail(key, "a decimal amount")
        try:
            d = Decimal(str(v))
        except InvalidOperation:
            raise self._fail(key, "a decimal amount") from None
        if not d.is_finite():
            raise self._fail(key, "a finite decimal amount")
        return d

    def output(self, key: str) -> str | None:
        """stdout/stderr: a string, a list of byte values (format bin), or null."""
        v = self.data.get(key)
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, list) and all(isinstance(b, int) and 0 <= b < 256 for b in v):
            return bytes(v).decode("utf-8", errors="replace")
        raise self._fail(key, "a string, a byte array or null")


def _kind(v: object) -> str:
    if v is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(v), type(v).__name__
    )


@dataclass(frozen=True)
class Identity:
    node_id: str
    name: str | None

    @classmethod
    def parse(cls, data: object, request: str) -> Identity:
        r = _Reader(data, "identity", request)
        return cls(node_id=r.text("identity"), name=r.opt_text("name"))


@dataclass(frozen=True)
class Allocation:
    allocation_id: str
    address: str
    payment_platform: str
    total_amount: Decimal
    spent_amount: Decimal
    remaining_amount: Decimal

    @classmethod
    def parse(cls, data: object, request: str) -> Allocation:
        r = _Reader(data, "allocation", request)
        return cls(
            allocation_id=r.text("allocationId"),
            address=r.text("address"),
            payment_platform=r.text("paymentPlatform"),
            total_amount=r.decimal("totalAmount"),
            spent_amount=r.decimal("spentAmount"),
            remaining_amount=r.decimal("remainingAmount"),
        )


@dataclass(frozen=True)
class Decoration:
    """Demand properties/constraints the payment service wants for an allocation."""

    properties: dict[str, object]
    constraints: list[str]

    @classmethod
    def parse(cls, data: object, request: str) -> Decoration:
        r = _Reader(data, "demand decoration", request)
        props: dict[str, Any] = {}
        raw_props = r.data.get("properties")
        raw_cons = r.data.get("constraints")
        if not isinstance(raw_props, list) or not isinstance(raw_cons, list):
            raise YagnaBadAnswer("malformed demand decoration", request)
        for item in raw_props:
            p = _Reader(item, "decoration property", request)
            props[p.text("key")] = p.data.get("value")
        if not all(isinstance(c, str) for c in raw_cons):
            raise YagnaBadAnswer("malformed demand decoration constraints", request)
        return cls(properties=props, constraints=list(raw_cons))


@dataclass(frozen=True)
class Proposal:
    proposal_id: str
    issuer_id: str
    state: str
    properties: dict[str, object]
    constraints: str
    prev_proposal_id: str | None = None

    @classmethod
    def parse(cls, data: object, request: str) -> Proposal:
        r = _Reader(data, "proposal", request)
        return cls(
            proposal_id=r.text("proposalId"),
            issuer_id=r.text("issuerId"),
            state=r.text("state"),
            properties=r.obj("properties"),
            constraints=r.text("constraints"),
            prev_proposal_id=r.opt_text("prevProposalId"),
        )


@dataclass(frozen=True)
class MarketEvent:
    """A requestor market event: `proposal` for ProposalEvent, `rejected_id` + `reason`
    for ProposalRejectedEvent; other types only carry `event_type`."""

    event_type: str
    proposal: Proposal | None = None
    rejected_id: str | None = None
    reason: str | None = None

    @classmethod
    def parse(cls, data: object, request: str) -> MarketEvent:
        r = _Reader(data, "market event", request)
        kind = r.text("eventType")
        if kind == "ProposalEvent":
            return cls(kind, proposal=Proposal.parse(r.data.get("proposal"), request))
        if kind == "ProposalRejectedEvent":
            reason = r.data.get("reason")
            msg = reason.get("message") if isinstance(reason, dict) else None
            return cls(kind, rejected_id=r.text("proposalId"), reason=str(msg) if msg else None)
        return cls(kind)


@dataclass(frozen=True)
class Agreement:
    agreement_id: str
    state: str
    provider_id: str
    demand_properties: dict[str, object]
    offer_properties: dict[str, object]
    valid_to: str
    demand_id: str = ""  # the requestor's demand subscription the agreement came from

    @property
    def provider_name(self) -> str:
        name = self.offer_properties.get(NODE_NAME)
        return name if isinstance(name, str) else self.provider_id

    @classmethod
    def parse(cls, data: object, request: str) -> Agreement:
        r = _Reader(data, "agreement", request)
        offer = _Reader(r.obj("offer"), "agreement offer", request)
        demand = _Reader(r.obj("demand"), "agreement demand", request)
        return cls(
            agreement_id=r.text("agreementId"),
            state=r.text("state"),
            provider_id=offer.text("providerId"),
            demand_properties=demand.obj("properties"),
            offer_properties=offer.obj("properties"),
            valid_to=r.text("validTo"),
            demand_id=str(demand.data.get("demandId") or ""),
        )


@dataclass(frozen=True)
class AgreementEvent:
    event_type: str  # AgreementApprovedEvent, AgreementTerminatedEvent, ...
    agreement_id: str
    event_date: str
    terminator: str | None = None  # "Requestor" | "Provider"
    reason: str | None = None

    @classmethod
    def parse(cls, data: object, request: str) -> AgreementEvent:
        r = _Reader(data, "agreement event", request)
        reason = r.data.get("reason")
        msg = reason.get("message") if isinstance(reason, dict) else None
        return cls(
            event_type=r.text("eventType"),
            agreement_id=r.text("agreementId"),
            event_date=r.text("eventDate"),
            terminator=r.opt_text("terminator"),
            reason=str(msg) if msg is not None else None,
        )


@dataclass(frozen=True)
class ExeResult:
    """One finished command of a batch (GET exec/{batch} polling)."""

    index: int
    result: str  # "Ok" | "Error"
    is_batch_finished: bool
    stdout: str | None = None
    stderr: str | None = None
    message: str | None = None

    @classmethod
    def parse(cls, data: object, request: str) -> ExeResult:
        r = _Reader(data, "exec result", request)
        result = r.text("result")
        if result not in ("Ok", "Error"):
            raise YagnaBadAnswer(f"malformed exec result: result {result!r}", request)
        return cls(
            index=r.integer("index"),
            result=result,
            is_batch_finished=r.flag("isBatchFinished", False),
            stdout=r.output("stdout"),
            stderr=r.output("stderr"),
            message=r.opt_text("message"),
        )


@dataclass(frozen=True)
class RuntimeEvent:
    """One SSE `runtime` event (snake_case on the wire).

    kind: "started" | "stdout" | "stderr" | "finished" | "progress"; `text` for output,
    `return_code`/`message` for finished, `progress` (done, total or None) for a byte
    progress report (a deploy's image download, a transfer)."""

    batch_id: str
    index: int
    kind: str
    text: str | None = None
    return_code: int | None = None
    message: str | None = None
    progress: tuple[int, int | None] | None = None

    @classmethod
    def parse(cls, data: object, request: str) -> RuntimeEvent:
        r = _Reader(data, "runtime event", request)
        kind_obj = r.data.get("kind")
        if isinstance(kind_obj, str):  # unit variants, should they ever appear
            kind_obj = {kind_obj: None}
        if not isinstance(kind_obj, dict) or len(kind_obj) != 1:
            raise YagnaBadAnswer("malformed runtime event: bad 'kind'", request)
        ((kind, body),) = kind_obj.items()
        batch_id, index = r.text("batch_id"), r.integer("index")
        if kind in ("stdout", "stderr"):
            text = _Reader({"v": body}, "runtime output", request).output("v")
            return cls(batch_id, index, kind, text=text or "")
        if kind == "finished":
            f = _Reader(body, "finished event", request)
            code, message = f.integer("return_code"), f.opt_text("message")
            return cls(batch_id, index, kind, return_code=code, message=message)
        if kind == "progress":
            return cls(batch_id, index, kind, progress=_byte_progress(body))
        return cls(batch_id, index, kind)


def _byte_progress(body: object) -> tuple[int, int | None] | None:
    """(done, total) of a progress report counted in bytes; None for any other shape (a
    progress in steps, a unit we do not know): progress is informative, never an error."""
    if not isinstance(body, dict) or body.get("unit") not in ("Bytes", None):
        return None
    pair = body.get("progress")
    if not isinstance(pair, list) or len(pair) != 2:
        return None
    done, total = pair
    if not isinstance(done, int) or isinstance(done, bool) or done < 0:
        return None
    if not (total is None or (isinstance(total, int) and not isinstance(total, bool))):
        return None
    return done, total


@dataclass(frozen=True)
class ActivityState:
    state: str
    next_state: str | None
    reason: str | None = None
    error_message: str | None = None

    @property
    def lost(self) -> bool:
        """yagna says the provider lost the activity (it stopped reporting, or ended it)."""
        return self.state in (ActivityStateName.UNRESPONSIVE, ActivityStateName.TERMINATED)

    @property
    def why_lost(self) -> str:
        """What to tell the user of an activity that is :attr:`lost`: yagna's reason, its
        error message, or the state itself."""
        why = self.reason or self.error_message or f"activity {self.state.lower()}"
        return f"provider lost the activity: {why}"

    @property
    def ending(self) -> bool:
        """Terminated, or on its way there ([X, Terminated]): yagna's provider side no longer
        counts such an activity alive, so a DELETE of it returns at once."""
        return ActivityStateName.TERMINATED in (self.state, self.next_state)

    @classmethod
    def parse(cls, data: object, request: str) -> ActivityState:
        r = _Reader(data, "activity state", request)
        pair = r.data.get("state")
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not (pair[1] is None or isinstance(pair[1], str))
        ):
            raise YagnaBadAnswer(
                "malformed activity state: 'state' is not [current, next]", request
            )
        return cls(pair[0], pair[1], r.opt_text("reason"), r.opt_text("errorMessage"))


@dataclass(frozen=True)
class ActivityUsage:
    """The usage counters yagna last heard for an activity, ordered as the agreement's
    `golem.com.usage.vector` (None before any was reported), at Unix second `timestamp`."""

    current_usage: tuple[float, ...] | None
    timestamp: int

    @classmethod
    def parse(cls, data: object, request: str) -> ActivityUsage:
        r = _Reader(data, "activity usage", request)
        raw = r.data.get("currentUsage")
        if raw is not None and (
            not isinstance(raw, list)
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
        ):
            raise YagnaBadAnswer(
                "malformed activity usage: 'currentUsage' is not a list of numbers", request
            )
        usage = tuple(float(v) for v in raw) if raw is not None else None
        return cls(usage, r.integer("timestamp"))


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    issuer_id: str
    agreement_id: str
    amount: Decimal
    payer_addr: str
    payment_platform: str
    status: str

    @classmethod
    def parse(cls, data: object, request: str) -> Invoice:
        r = _Reader(data, "invoice", request)
        return cls(
            invoice_id=r.text("invoiceId"),
            issuer_id=r.text("issuerId"),
            agreement_id=r.text("agreementId"),
            amount=r.decimal("amount"),
            payer_addr=r.text("payerAddr"),
            payment_platform=r.text("paymentPlatform"),
            status=r.text("status"),
        )


@dataclass(frozen=True)
class DebitNote:
    debit_note_id: str
    issuer_id: str
    agreement_id: str
    activity_id: str
    total_amount_due: Decimal
    payer_addr: str
    payment_platform: str
    status: str
    payment_due_date: str | None = None

    @classmethod
    def parse(cls, data: object, request: str) -> DebitNote:
        r = _Reader(data, "debit note", request)
        return cls(
            debit_note_id=r.text("debitNoteId"),
            issuer_id=r.text("issuerId"),
            agreement_id=r.text("agreementId"),
            activity_id=r.text("activityId"),
            total_amount_due=r.decimal("totalAmountDue"),
            payer_addr=r.text("payerAddr"),
            payment_platform=r.text("paymentPlatform"),
            status=r.text("status"),
            payment_due_date=r.opt_text("paymentDueDate"),
        )


@dataclass(frozen=True)
class PaymentEvent:
    """An invoice or debit-note event; `document_id` is the invoice or debit note id."""

    event_type: str
    document_id: str
    event_date: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, data: object, request: str) -> PaymentEvent:
        r = _Reader(data, "payment event", request)
        doc = r.data.get("invoiceId", r.data.get("debitNoteId"))
        if not isinstance(doc, str):
            raise YagnaBadAnswer("malformed payment event: no invoiceId/debitNoteId", request)
        return cls(r.text("eventType"), doc, r.text("eventDate"), r.data)
