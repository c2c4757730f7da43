"""Parsing what yagna sends: real shapes parse, malformed ones give a clear YagnaError."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from golem_deploy.yagna import YagnaError
from golem_deploy.yagna.client import YagnaConfig
from golem_deploy.yagna.models import (
    ActivityState,
    Agreement,
    Allocation,
    DebitNote,
    Decoration,
    ExeResult,
    MarketEvent,
    PaymentEvent,
    RuntimeEvent,
)

REQ = "GET /x"


def test_allocation_amounts_are_decimal() -> None:
    a = Allocation.parse(
        {
            "allocationId": "3f2a",
            "address": "0xabc",
            "paymentPlatform": "erc20-holesky-tglm",
            "totalAmount": "1.0",
            "spentAmount": "0",
            "remainingAmount": "1.0",
            "timestamp": "2024-11-26T12:00:00Z",
            "makeDeposit": False,
        },
        REQ,
    )
    assert a.total_amount == Decimal("1.0") and isinstance(a.spent_amount, Decimal)


def test_decoration_values_are_kept_verbatim() -> None:
    d = Decoration.parse(
        {
            "properties": [{"key": "golem.com.payment.protocol.version", "value": "3"}],
            "constraints": ["(golem.com.payment.protocol.version>1)"],
        },
        REQ,
    )
    assert d.properties == {"golem.com.payment.protocol.version": "3"}


def test_proposal_event_and_rejection() -> None:
    e = MarketEvent.parse(
        {
            "eventType": "ProposalEvent",
            "eventDate": "2024-11-26T12:00:01.5Z",
            "proposal": {
                "properties": {"a": 1},
                "constraints": "()",
                "proposalId": "R-1",
                "issuerId": "0xp",
                "state": "Initial",
                "timestamp": "2024-11-26T12:00:01.4Z",
            },
        },
        REQ,
    )
    assert e.proposal is not None and e.proposal.prev_proposal_id is None
    r = MarketEvent.parse(
        {
            "eventType": "ProposalRejectedEvent",
            "eventDate": "d",
            "proposalId": "R-2",
            "reason": {"message": "no"},
        },
        REQ,
    )
    assert r.rejected_id == "R-2" and r.reason == "no"
    assert MarketEvent.parse({"eventType": "PropertyQueryEvent"}, REQ).proposal is None


def test_agreement_reads_provider_and_name() -> None:
    a = Agreement.parse(
        {
            "agreementId": "ag",
            "state": "Approved",
            "validTo": "2030-01-01T00:00:00Z",
            "timestamp": "t",
            "offer": {
                "properties": {"golem.node.id.name": "p1"},
                "constraints": "",
                "offerId": "o",
                "providerId": "0xp",
                "timestamp": "t",
            },
            "demand": {
                "properties": {},
                "constraints": "",
                "demandId": "d",
                "requestorId": "0xr",
                "timestamp": "t",
            },
        },
        REQ,
    )
    assert (a.provider_id, a.provider_name) == ("0xp", "p1")


def test_exec_results_decode_binary_output() -> None:
    r = ExeResult.parse(
        {
            "index": 0,
            "eventDate": "d",
            "result": "Ok",
            "stdout": [104, 105],
            "stderr": None,
            "isBatchFinished": True,
        },
        REQ,
    )
    assert r.stdout == "hi" and r.is_batch_finished


def test_a_progress_event_carries_bytes_done_and_total() -> None:
    def parse(body: object) -> tuple[int, int | None] | None:
        event = {"batch_id": "b", "index": 0, "kind": {"progress": body}}
        return RuntimeEvent.parse(event, REQ).progress

    assert parse({"step": [0, 1], "progress": [5, 10], "unit": "Bytes"}) == (5, 10)
    assert parse({"progress": [5, None], "unit": "Bytes"}) == (5, None)
    # Informative only: shapes we do not read are no error, just no progress.
    assert parse({"progress": [1, 3], "unit": "Steps"}) is None
    assert parse({"progress": ["5", 10]}) is None
    assert parse(None) is None


def test_runtime_events_are_snake_case() -> None:
    out = RuntimeEvent.parse(
        {"batch_id": "b", "index": 0, "timestamp": "t", "kind": {"stdout": "hello\n"}}, REQ
    )
    assert (out.kind, out.text) == ("stdout", "hello\n")
    fin = RuntimeEvent.parse(
        {
            "batch_id": "b",
            "index": 1,
            "timestamp": "t",
            "kind": {"finished": {"return_code": 3, "message": "exited with code 3"}},
        },
        REQ,
    )
    assert (fin.kind, fin.return_code, fin.message) == ("finished", 3, "exited with code 3")


def test_activity_state_pair() -> None:
    s = ActivityState.parse({"state": ["Terminated", None], "reason": "gone"}, REQ)
    assert (s.state, s.next_state, s.reason) == ("Terminated", None, "gone")


def test_an_activity_on_its_way_to_terminated_is_ending() -> None:
    """[X, Terminated] is what a requestor's yagna can be left with: it keeps answering
    the state from its own copy once that is no longer alive (docs/localnet.md)."""

    def state(pair: list[str | None]) -> ActivityState:
        return ActivityState.parse({"state": pair}, REQ)

    assert state(["Initialized", "Terminated"]).ending
    assert state(["Terminated", None]).ending
    assert not state(["Ready", None]).ending
    assert not state(["Initialized", "Deployed"]).ending
    assert not state(["Initialized", "Terminated"]).lost  # not lost: still to be DELETEd


def test_a_lost_activity_says_why_with_what_yagna_gave() -> None:
    def state(answer: dict[str, object]) -> ActivityState:
        return ActivityState.parse(answer, REQ)

    told = state({"state": ["Terminated", None], "reason": "gone", "errorMessage": "oom"})
    assert told.why_lost == "provider lost the activity: gone"
    only_error = state({"state": ["Terminated", None], "errorMessage": "oom"})
    assert only_error.why_lost == "provider lost the activity: oom"
    silent = state({"state": ["Unresponsive", None]})
    assert silent.why_lost == "provider lost the activity: activity unresponsive"


def test_debit_note_without_due_date() -> None:
    n = DebitNote.parse(
        {
            "debitNoteId": "dn",
            "issuerId": "0xp",
            "recipientId": "0xr",
            "payeeAddr": "0xp",
            "payerAddr": "0xr",
            "paymentPlatform": "erc20-holesky-tglm",
            "timestamp": "t",
            "agreementId": "ag",
            "activityId": "act",
            "totalAmountDue": "0.0123",
            "status": "RECEIVED",
        },
        REQ,
    )
    assert n.total_amount_due == Decimal("0.0123") and n.payment_due_date is None


@pytest.mark.parametrize(
    "parse, data, message",
    [
        (Allocation.parse, [], "expected a JSON object for allocation, got an array"),
        (Allocation.parse, {"allocationId": "a"}, "field 'address' should be a string"),
        (ExeResult.parse, {"index": "0", "result": "Ok"}, "'index' should be an integer"),
        (ExeResult.parse, {"index": 0, "result": "Maybe"}, "result 'Maybe'"),
        (ActivityState.parse, {"state": "Ready"}, "not [current, next]"),
        (
            DebitNote.parse,
            {
                "debitNoteId": "x",
                "issuerId": "i",
                "agreementId": "a",
                "activityId": "b",
                "totalAmountDue": "NaN",
            },
            "finite decimal",
        ),
        (
            DebitNote.parse,
            {
                "debitNoteId": "x",
                "issuerId": "i",
                "agreementId": "a",
                "activityId": "b",
                "totalAmountDue": "ten",
            },
            "decimal amount",
        ),
        (PaymentEvent.parse, {"eventType": "X", "eventDate": "d"}, "no invoiceId/debitNoteId"),
        (RuntimeEvent.parse, {"batch_id": "b", "index": 0, "kind": {}}, "bad 'kind'"),
    ],
)
def test_malformed_answers_name_the_problem(parse: Any, data: Any, message: str) -> None:
    with pytest.raises(YagnaError) as err:
        parse(data, "GET /payment-api/v1/x")
    assert message in str(err.value)
    assert "GET /payment-api/v1/x" in str(err.value)


def test_config_reads_env_and_hides_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YAGNA_APPKEY", "s3cret-key")
    monkeypatch.setenv("YAGNA_API_URL", "http://127.0.0.1:9/")
    cfg = YagnaConfig.from_env()
    assert cfg.api_url == "http://127.0.0.1:9" and cfg.app_key == "s3cret-key"
    assert "s3cret" not in repr(cfg)
    assert YagnaConfig.from_env(app_key="explicit").app_key == "explicit"
    monkeypatch.delenv("YAGNA_APPKEY")
    with pytest.raises(YagnaError, match="no app key") as err:
        YagnaConfig.from_env()
    assert err.value.hint and "YAGNA_APPKEY" in err.value.hint
