"""engine/pacing.py: how many instances may be starting at once."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from golem_deploy.engine.context import EngineContext
from golem_deploy.engine.pacing import StartGate, StartPacing
from golem_deploy.engine.timing import Timings


def test_per_provider_bound() -> None:
    p = StartPacing(per_provider=2, total=10, hold_max=30.0)
    assert p.take("a", 0.0) is not None
    assert p.take("a", 0.0) is not None
    assert p.take("a", 0.0) is None  # a's two slots are taken
    assert p.take("b", 0.0) is not None  # another provider is not held up by a
    assert p.starting() == {"a": 2, "b": 1}


def test_total_bound() -> None:
    p = StartPacing(per_provider=4, total=3, hold_max=30.0)
    tokens = [p.take(provider, 0.0) for provider in "abc"]
    assert None not in tokens
    assert p.take("d", 0.0) is None  # three in all
    p.give_back(tokens[0] or 0)
    assert p.take("d", 0.0) is not None


def test_give_back_is_idempotent_and_frees_one_slot() -> None:
    p = StartPacing(per_provider=1, total=1, hold_max=30.0)
    token = p.take("a", 0.0)
    assert token is not None
    p.give_back(token)
    p.give_back(token)
    assert p.take("a", 0.0) is not None
    assert p.take("a", 0.0) is None  # giving back twice did not free a second slot


def test_a_slot_held_too_long_stops_counting() -> None:
    p = StartPacing(per_provider=1, total=1, hold_max=30.0)
    assert p.take("a", 0.0) is not None
    assert p.next_expiry(10.0) == pytest.approx(20.0)
    assert p.take("a", 29.9) is None
    assert p.take("a", 30.0) is not None  # the first start ran a long job: not waited for


def test_bounds_below_one_still_let_starts_through() -> None:
    p = StartPacing(per_provider=0, total=0, hold_max=30.0)
    assert p.take("a", 0.0) is not None
    assert p.take("a", 0.0) is None


@given(
    st.integers(1, 5),
    st.integers(1, 12),
    st.lists(st.tuples(st.booleans(), st.sampled_from("abcd")), max_size=60),
)
def test_bounds_hold_for_any_sequence(per: int, total: int, ops: list[tuple[bool, str]]) -> None:
    """Whatever order starts begin and end in, no provider has more than `per` and no
    more than `total` hold a slot; a start is refused only when a bound is reached."""
    p = StartPacing(per_provider=per, total=total, hold_max=1e9)
    held: list[int] = []
    for take, provider in ops:
        if take:
            before = p.starting()
            token = p.take(provider, 0.0)
            if token is None:
                assert before[provider] >= per or sum(before.values()) >= total
            else:
                held.append(token)
        elif held:
            p.give_back(held.pop(0))
        counts = p.starting()
        assert sum(counts.values()) <= total
        assert all(n <= per for n in counts.values())


def test_gate_wakes_a_waiter_when_a_slot_is_given_back() -> None:
    async def main() -> list[str]:
        gate = StartGate(per_provider=1, total=1, hold_max=30.0)
        order: list[str] = []
        first = await gate.slot("a")

        async def second() -> None:
            slot = await gate.slot("b")
            order.append("second started")
            slot.release()

        async with anyio.create_task_group() as tg:
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            order.append("first ends")
            first.release()
            first.release()  # idempotent
        return order

    assert anyio.run(main) == ["first ends", "second started"]


def test_one_gate_per_engine_shared_by_copies_of_the_context() -> None:
    """Golem gives every cluster a copy of its context (dataclasses.replace): the bound
    is over the whole engine, so the copies share the gate."""
    from dataclasses import replace

    ctx = EngineContext(
        client=None,  # type: ignore[arg-type]
        payments=None,  # type: ignore[arg-type]
        storage=None,
        emit=lambda event: None,
        providers=None,  # type: ignore[arg-type]
        platform="vm",
        price_caps=None,  # type: ignore[arg-type]
        timings=Timings(start_slots_per_provider=3, start_slots=7),
    )
    assert ctx.start_gate.pacing.per_provider == 3
    assert ctx.start_gate.pacing.total == 7
    assert replace(ctx, emit=lambda event: None).start_gate is ctx.start_gate
