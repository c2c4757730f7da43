"""Budget arithmetic: what accepting debit notes and invoices spends (Decimal, exact)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from golem_deploy.engine.payments import Ledger
from golem_deploy.protocol import payment_platform

D = Decimal


def test_platform_names() -> None:
    assert payment_platform("erc20", "holesky") == "erc20-holesky-tglm"
    assert payment_platform("erc20", "polygon") == "erc20-polygon-glm"
    assert payment_platform("erc20", "mainnet") == "erc20-mainnet-glm"


def test_debit_notes_are_cumulative_per_activity() -> None:
    led = Ledger(D("1"))
    assert led.record_debit_note("ag", "act", D("0.1")) == D("0.1")
    assert led.record_debit_note("ag", "act", D("0.25")) == D("0.15")
    assert led.record_debit_note("ag", "act2", D("0.05")) == D("0.05")
    assert led.spent == D("0.30") and led.cost_of("ag") == D("0.30")


def test_invoice_spends_only_what_debit_notes_did_not_cover() -> None:
    led = Ledger(D("1"))
    led.record_debit_note("ag", "act", D("0.2"))
    assert led.invoice_increment("ag", D("0.25")) == D("0.05")
    assert led.record_invoice("ag", D("0.25")) == D("0.05")
    assert led.spent == D("0.25") and led.invoiced == {"ag": D("0.25")}


def test_budget_fits_exactly_but_not_a_wei_more() -> None:
    led = Ledger(D("0.3"))
    led.record_debit_note("ag", "act", D("0.1"))
    assert led.fits(D("0.2"))
    assert not led.fits(D("0.200000000000000001"))


def test_a_stale_debit_note_spends_nothing() -> None:
    led = Ledger(D("1"))
    led.record_debit_note("ag", "act", D("0.5"))
    assert led.debit_note_increment("act", D("0.4")) == 0
    assert led.record_debit_note("ag", "act", D("0.4")) == 0
    assert led.by_activity["act"] == D("0.5")


amounts = st.decimals(min_value=0, max_value=10, places=18, allow_nan=False)


@given(budget=amounts, notes=st.lists(amounts, max_size=20))
def test_spending_guarded_by_fits_never_exceeds_the_budget(
    budget: Decimal, notes: list[Decimal]
) -> None:
    """The payment manager's rule: accept only when `fits`; then spent <= budget always."""
    led = Ledger(budget)
    total = D(0)
    for n in notes:
        total += n  # cumulative due grows
        if led.fits(led.debit_note_increment("act", total)):
            led.record_debit_note("ag", "act", total)
        assert led.spent <= budget
    invoice = total + D("0.001")
    if led.fits(led.invoice_increment("ag", invoice)):
        led.record_invoice("ag", invoice)
    assert led.spent <= budget
    assert led.spent == sum(led.by_agreement.values())
