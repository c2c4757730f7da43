"""Recovery releases what a dead supervisor held several at a time, never more than its bound.

One by one, the hundreds of activities a large deployment can leave took minutes: each is a
wait on yagna (bench/RESULTS.md, 2026-12-03)."""

from __future__ import annotations

import anyio
import pytest

from golem_deploy.supervisor import recover

pytestmark = pytest.mark.anyio


async def test_every_id_is_released_with_at_most_the_bound_in_flight() -> None:
    ids = [f"activity-{n}" for n in range(3 * recover.RELEASE_AT_ONCE + 5)]
    released: list[str] = []
    in_flight, most = 0, 0

    async def release(ident: str) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await anyio.sleep(0.01)  # a wait on yagna
        in_flight -= 1
        released.append(ident)

    await recover._for_each(ids, release)
    assert sorted(released) == sorted(ids)
    assert most == recover.RELEASE_AT_ONCE


async def test_nothing_to_release_is_nothing_to_do() -> None:
    async def release(ident: str) -> None:
        raise AssertionError(f"released {ident} from nothing")

    await recover._for_each([], release)
