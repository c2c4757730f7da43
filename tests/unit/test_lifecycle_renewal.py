"""The renewal rules of the instance lifecycle (lifecycle.plan_renewal, renewal_refusal):
when a replacement starts, when an instance stops instead, and when the budget forbids it.

Pure functions of times and amounts, so hypothesis checks the promises the docs make:
never before halfway, early enough for the slowest start plus the margin whenever the
agreement is long enough for that, and a refusal exactly when the budget would pass.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from golem_deploy.engine import lifecycle as lc

lengths = st.floats(min_value=1.0, max_value=86_400.0)
starts = st.lists(st.floats(min_value=0.0, max_value=3_600.0), max_size=8)
margins = st.floats(min_value=0.0, max_value=120.0)
moments = st.floats(min_value=0.0, max_value=1e9)


def plan(
    length: float,
    durations: list[float],
    margin: float = 5.0,
    signed: float = 1000.0,
    lifetime_end: float | None = None,
) -> lc.RenewAt | lc.StopAt:
    return lc.plan_renewal(
        lc.RenewalPolicy(length, margin=margin),
        signed_at=signed,
        expires_at=signed + length,
        lifetime_ends_at=lifetime_end,
        start_durations=durations,
    )


def test_a_20s_agreement_is_renewed_the_slowest_start_plus_the_margin_before_its_end() -> None:
    assert plan(20.0, [3.0]) == lc.RenewAt(1012.0)  # 3 s + 5 s before 1020
    assert plan(20.0, [2.0, 3.0, 1.0], margin=2.0) == lc.RenewAt(1015.0)
    assert plan(20.0, [6.0]) == lc.RenewAt(1010.0)  # 11 s before the end: halfway wins


def test_slow_starts_move_the_renewal_earlier_but_never_before_halfway() -> None:
    assert plan(3600.0, [30.0], margin=10.0) == lc.RenewAt(1000.0 + 3600 - 40)
    assert plan(60.0, [50.0]) == lc.RenewAt(1030.0)  # halfway wins


def test_a_lifetime_ending_before_the_agreement_stops_instead_of_renewing() -> None:
    assert plan(20.0, [3.0], lifetime_end=1015.0) == lc.StopAt(1015.0, "lifetime reached")
    assert plan(20.0, [3.0], lifetime_end=1020.0) == lc.StopAt(1020.0, "lifetime reached")
    assert isinstance(plan(20.0, [3.0], lifetime_end=1020.5), lc.RenewAt)


@given(lengths, starts, margins, moments)
def test_never_before_halfway(
    length: float, durations: list[float], margin: float, t: float
) -> None:
    decision = plan(length, durations, margin, signed=t)
    assert isinstance(decision, lc.RenewAt)
    assert decision.at >= t + length / 2 - 1e-6
    assert decision.at <= t + length + 1e-6


@given(lengths, starts, margins, moments)
def test_early_enough_for_the_slowest_start_when_the_agreement_allows(
    length: float, durations: list[float], margin: float, t: float
) -> None:
    lead = max(durations, default=0.0) + margin
    decision = plan(length, durations, margin, signed=t)
    if lead <= length / 2:  # the replacement can be ready before the old agreement ends
        assert decision.at + lead <= t + length + 1e-6
    else:  # it cannot: start as early as the rules allow
        assert decision.at == pytest.approx(t + length / 2)


@given(lengths, starts, st.floats(min_value=0.0, max_value=3_600.0), margins)
def test_a_slower_start_never_makes_the_renewal_later(
    length: float, durations: list[float], slower: float, margin: float
) -> None:
    before = plan(length, durations, margin)
    after = plan(length, [*durations, slower], margin)
    assert isinstance(before, lc.RenewAt) and isinstance(after, lc.RenewAt)
    assert after.at <= before.at


@given(lengths, starts, moments, st.floats(min_value=-1e5, max_value=1e5))
def test_stop_or_renew_follows_the_lifetime(
    length: float, durations: list[float], t: float, offset: float
) -> None:
    end = t + length + offset
    decision = plan(length, durations, signed=t, lifetime_end=end)
    if end <= t + length:
        assert decision == lc.StopAt(max(end, t), "lifetime reached")
    else:
        assert isinstance(decision, lc.RenewAt)


def test_the_policy_refuses_impossible_values() -> None:
    with pytest.raises(ValueError):
        lc.RenewalPolicy(0.0)
    with pytest.raises(ValueError):
        lc.RenewalPolicy(20.0, lifetime=0.0)
    with pytest.raises(ValueError):
        lc.RenewalPolicy(20.0, margin=-1.0)


def refusal(
    spent: str,
    budget: str,
    cost: str,
    age: float,
    length: float,
    price: lc.AgreementPrice | None = None,
) -> str | None:
    return lc.renewal_refusal(
        spent=Decimal(spent),
        budget=Decimal(budget),
        agreement_cost=Decimal(cost),
        agreement_age=age,
        agreement_length=length,
        price=price or lc.AgreementPrice(),
    )


def test_a_renewal_that_would_pass_the_budget_is_refused_with_the_numbers() -> None:
    # 0.1 GLM in the first 10 s of a 20 s agreement: the 10 s left cost about 0.1 more and
    # a new agreement about 0.2, so renewing commits about 0.3
    assert refusal("0.5", "1.0", "0.1", 10.0, 20.0) is None
    assert refusal("0.7", "1.0", "0.1", 10.0, 20.0) is None
    why = refusal("0.71", "1.0", "0.1", 10.0, 20.0)
    assert why is not None and "0.3" in why and "0.71 of 1.0" in why


def test_the_offer_price_decides_before_any_debit_note_came() -> None:
    # nothing billed yet, 5 s into a 20 s agreement at 0.01 GLM/s plus a 0.05 start price:
    # the 15 s left (0.15) and a new agreement (0.05 + 0.2) commit 0.4
    price = lc.AgreementPrice(start=Decimal("0.05"), per_second=Decimal("0.01"))
    assert refusal("0", "0.4", "0", 5.0, 20.0, price) is None
    why = refusal("0", "0.39", "0", 5.0, 20.0, price)
    assert why is not None and "0.4 GLM" in why


def test_nothing_known_about_the_price_never_refuses_within_the_budget() -> None:
    assert refusal("0.99", "1.0", "0", 10.0, 20.0) is None
    assert refusal("0.99", "1.0", "0.5", 0.0, 20.0) is None


amounts = st.decimals(min_value=0, max_value=100, places=6)
rates = st.decimals(min_value=0, max_value=1, places=6)


@given(amounts, amounts, amounts, rates, rates, st.floats(0.1, 1e5), st.floats(0.1, 1e5))
def test_refused_exactly_when_the_projection_passes_the_budget(
    spent: Decimal,
    budget: Decimal,
    cost: Decimal,
    start: Decimal,
    per_second: Decimal,
    age: float,
    length: float,
) -> None:
    def refuse(spent: Decimal, price: lc.AgreementPrice) -> str | None:
        return lc.renewal_refusal(
            spent=spent,
            budget=budget,
            agreement_cost=cost,
            agreement_age=age,
            agreement_length=length,
            price=price,
        )

    price = lc.AgreementPrice(start, per_second)
    why = refuse(spent, price)
    rate = max(max(cost - start, Decimal(0)) / Decimal(str(age)), per_second)
    left = Decimal(str(max(length - age, 0.0)))
    projected = rate * left + start + rate * Decimal(str(length))
    if spent + projected <= budget - Decimal("0.00001"):
        assert why is None
    elif spent + projected > budget + Decimal("0.00001"):
        assert why is not None and why.startswith("budget:")
    # more spent, or a dearer offer, never turns a refusal into a renewal
    if why is not None:
        assert refuse(spent + 1, price) is not None
        assert refuse(spent, lc.AgreementPrice(start, per_second + Decimal("0.1"))) is not None


def test_the_replaced_instance_stops_as_on_an_explicit_stop() -> None:
    """engine/replace.py retires the old instance with StopRequested: shutdown runs once,
    and no restart policy brings it back."""
    m = lc.Lifecycle(lc.LifecycleConfig(restart_policy="always"))
    m.handle(lc.Spawn())
    m.handle(lc.ActivityReady())
    m.handle(lc.StartReturned())
    assert m.handle(lc.StopRequested("renewed on a fresh agreement")) == [lc.RunHandler("shutdown")]
    actions = m.handle(lc.ShutdownReturned())
    assert actions == [lc.ReleaseActivity("renewed on a fresh agreement")]
    assert m.final and m.last_reason == "renewed on a fresh agreement"
