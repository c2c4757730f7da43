"""Payment terms (yapapi 0.13.1's rules) and the burn rate: pure, no clock."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_deploy import protocol as p
from golem_deploy.engine.burn import BurnRate
from golem_deploy.engine.payment_terms import (
    AgreedTerms,
    NoteCadence,
    PaymentTerms,
    agreed_terms,
    negotiate,
    seconds_until,
    too_many,
)

HOUR = 3600.0
REAL_OFFER = {p.DEBIT_NOTE_INTERVAL: 120, p.PAYMENT_TIMEOUT: 120}  # ya-provider's defaults


def test_the_interval_is_the_providers_at_least_60_s_and_short_agreements_get_no_map() -> None:
    assert negotiate(PaymentTerms(), REAL_OFFER, HOUR) == AgreedTerms(120, None)
    fast = {p.DEBIT_NOTE_INTERVAL: 5, p.PAYMENT_TIMEOUT: 120}
    assert negotiate(PaymentTerms(), fast, HOUR) == AgreedTerms(60, None)  # yapapi's floor


def test_long_agreements_negotiate_mid_agreement_payments_at_five_hours_at_least() -> None:
    agreed = negotiate(PaymentTerms(), REAL_OFFER, 6 * HOUR)
    assert agreed == AgreedTerms(120, 18000) and agreed.mid_agreement_payments
    assert agreed.properties() == {p.DEBIT_NOTE_INTERVAL: 120, p.PAYMENT_TIMEOUT: 18000}
    patient = {p.DEBIT_NOTE_INTERVAL: 120, p.PAYMENT_TIMEOUT: 86400}
    assert negotiate(PaymentTerms(), patient, 6 * HOUR).payment_timeout == 86400


def test_what_the_manifest_asks_for_wins_over_the_floors() -> None:
    asked = PaymentTerms(debit_note_interval=5, payment_timeout=20)
    assert negotiate(asked, REAL_OFFER, 60) == AgreedTerms(5, 20)  # MAP on a 1-minute agreement


def test_providers_unaware_of_the_properties_are_left_alone() -> None:
    assert negotiate(PaymentTerms(payment_timeout=20), {}, 6 * HOUR) == AgreedTerms()
    no_map = {p.DEBIT_NOTE_INTERVAL: 120}  # interval yes, mid-agreement payments no
    assert negotiate(PaymentTerms(payment_timeout=20), no_map, 6 * HOUR) == AgreedTerms(120)
    odd = {p.DEBIT_NOTE_INTERVAL: "soon"}
    assert negotiate(PaymentTerms(), odd, HOUR) == AgreedTerms(60)


def test_agreed_terms_are_read_from_the_agreements_demand() -> None:
    assert agreed_terms({p.DEBIT_NOTE_INTERVAL: 60, p.PAYMENT_TIMEOUT: 18000}) == AgreedTerms(
        60, 18000
    )
    assert agreed_terms({p.DEBIT_NOTE_INTERVAL: True}) == AgreedTerms()


def test_terms_below_a_second_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 s"):
        PaymentTerms(debit_note_interval=0.5)


def test_yapapis_check_with_its_grace_period() -> None:
    # 60 s interval: the 2nd note from 30 s on (grace 30 s), the 3rd from 90 s on
    assert not too_many(0, 1, 60) and too_many(29, 2, 60) and not too_many(30, 2, 60)
    assert too_many(89, 3, 60) and not too_many(90, 3, 60)


def test_notes_at_the_agreed_pace_pass_and_a_flood_ends_the_agreement() -> None:
    cadence = NoteCadence(AgreedTerms(5, None), started=0.0)
    assert all(cadence.judge(5.0 * n, payable=False) is None for n in range(1, 50))
    flood = NoteCadence(AgreedTerms(5, None), started=0.0)
    verdicts = [flood.judge(1.0 * n, payable=False) for n in range(1, 20)]
    first = next(i for i, v in enumerate(verdicts) if v is not None)
    assert first == 8  # the 9th note, 9 s in: 9 s + 30 s grace < 8 * 5 s
    assert "too many debit notes: 9 in 9 s" in str(verdicts[first])


def test_payable_notes_need_agreed_map_and_come_at_most_once_per_timeout() -> None:
    no_map = NoteCadence(AgreedTerms(60, None), started=0.0)
    assert "mid-agreement payments were not agreed" in str(no_map.judge(60, payable=True))
    cadence = NoteCadence(AgreedTerms(5, 20), started=0.0)
    assert cadence.judge(20, payable=True) is None
    assert cadence.judge(40, payable=True) is None
    greedy = NoteCadence(AgreedTerms(5, 20), started=0.0)
    verdicts = [greedy.judge(5.0 * n, payable=True) for n in range(1, 10)]
    assert any("too many payable debit notes" in str(v) for v in verdicts)


@settings(deadline=None)
@given(st.lists(st.floats(0.5, 600), min_size=1, max_size=60), st.integers(1, 600))
def test_a_provider_keeping_the_interval_is_never_judged(gaps: list[float], interval: int) -> None:
    cadence = NoteCadence(AgreedTerms(interval, None), started=0.0)
    t = 0.0
    for gap in gaps:
        t += max(gap, interval)
        assert cadence.judge(t, payable=False) is None


def test_burn_rate_is_measured_per_live_activity() -> None:
    burn = BurnRate()
    assert burn.per_hour() is None
    burn.note_accepted("ag1", "a1", Decimal("0.5"), at=0.0)  # start price: no rate yet
    assert burn.per_hour() is None
    burn.note_accepted("ag1", "a1", Decimal("0.5"), at=30.0)  # no growth (sent again): no news
    assert burn.per_hour() is None
    burn.note_accepted("ag1", "a1", Decimal("0.6"), at=60.0)  # 0.1 GLM a minute
    assert burn.per_hour() == Decimal("6")
    burn.note_accepted("ag2", "a2", Decimal("0"), at=0.0)
    burn.note_accepted("ag2", "a2", Decimal("0.05"), at=60.0)
    assert burn.per_hour() == Decimal("9")
    burn.note_accepted("ag1", "a1", Decimal("0.55"), at=90.0)  # stale (lower): ignored
    assert burn.per_hour() == Decimal("9")
    burn.agreement_ended("ag1")
    assert burn.per_hour() == Decimal("3")
    assert BurnRate.hours_left(Decimal("1.5"), Decimal("3")) == Decimal("0.5")
    assert BurnRate.hours_left(Decimal("1.5"), None) is None
    assert BurnRate.hours_left(Decimal("-1"), Decimal("3")) == Decimal(0)


def test_seconds_until_a_notes_due_date() -> None:
    now = datetime(2026, 12, 2, 2, 39, 20, tzinfo=UTC)
    assert seconds_until("2026-12-02T02:39:23.5Z", now) == 3.5
    assert seconds_until("2026-12-02T02:39:23.5", now) == 3.5  # no zone: UTC, as yagna means
    assert seconds_until("2026-12-02T02:39:00Z", now) == 0.0  # past: nothing left
    assert seconds_until(None, now) is None and seconds_until("soon", now) is None
