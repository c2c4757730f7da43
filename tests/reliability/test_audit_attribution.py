"""The audit's excuse for a dead provider's activities stays narrow (pure, no network).

The load row once failed on activities yagna showed `Unresponsive` that the audit could not
tie to the provider that died: it tied an activity to its agreement, and the agreement to
its provider, through the journal alone, and an activity whose creation answered after the
engine had given up on it (a loaded machine, the provider dying meanwhile) is one the
journal never saw. The audit now also asks yagna (each agreement's activity listing and
its offer's provider). These cases pin down what is excused and what is still a leak.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from _harness import Audit, Scenario, YagnaView

DEAD, LIVE = "0xdead", "0x1ive"


def _audit(yagna: YagnaView, records: list[dict[str, Any]] | None = None, **scenario: Any) -> Audit:
    fake = Scenario.__new__(Scenario)
    fake.budget = Decimal(1)
    base = [
        {"kind": "AgreementCreated", "agreement_id": "a-dead-known", "provider_id": DEAD,
         "provider_name": "local-provider-5"},
        {"kind": "AgreementCreated", "agreement_id": "a-live", "provider_id": LIVE,
         "provider_name": "local-provider-1"},
    ]  # fmt: skip
    return Audit(fake, base + (records or []), yagna, [])


def _view(activities: dict[str, str], agreements: dict[str, str], **yagna: Any) -> YagnaView:
    return YagnaView(agreements, activities, [], [], [], **yagna)


def test_an_activity_the_journal_never_saw_is_tied_to_the_dead_provider_by_yagna() -> None:
    view = _view(
        {"act-late": "Unresponsive"},
        {"a-dead-late": "Terminated"},
        agreement_providers={"a-dead-late": DEAD},
        activity_agreements={"act-late": "a-dead-late"},
    )
    assert _audit(view).stuck_activities(("local-provider-5",)) == {}


def test_a_live_providers_unresponsive_activity_is_still_a_leak() -> None:
    view = _view(
        {"act": "Unresponsive"},
        {"a-live": "Terminated"},
        agreement_providers={"a-live": LIVE},
        activity_agreements={"act": "a-live"},
    )
    assert _audit(view).stuck_activities(("local-provider-5",)) == {"act": "Unresponsive"}


def test_a_dead_providers_activity_is_excused_only_once_its_agreement_is_terminated() -> None:
    view = _view(
        {"act": "Unresponsive"},
        {"a-dead-known": "Approved"},
        agreement_providers={"a-dead-known": DEAD},
        activity_agreements={"act": "a-dead-known"},
    )
    assert _audit(view).stuck_activities(("local-provider-5",)) == {"act": "Unresponsive"}


def test_an_activity_nobody_can_attribute_is_a_leak() -> None:
    view = _view({"act": "Unresponsive"}, {})
    assert _audit(view).stuck_activities(("local-provider-5",)) == {"act": "Unresponsive"}


def test_the_journals_attribution_wins_over_a_debit_note() -> None:
    records = [{"kind": "ActivityCreated", "activity_id": "act", "agreement_id": "a-live"}]
    view = _view(
        {"act": "Unresponsive"},
        {"a-live": "Terminated", "a-dead-known": "Terminated"},
        agreement_providers={"a-live": LIVE, "a-dead-known": DEAD},
    )
    view.debit_notes.append({"activityId": "act", "agreementId": "a-dead-known"})
    assert _audit(view, records).stuck_activities(("local-provider-5",)) == {"act": "Unresponsive"}
