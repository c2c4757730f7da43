"""engine/connections.py: a replaced instance stops once it serves no connection."""

from __future__ import annotations

import anyio
import pytest

from golem_deploy.engine.connections import Connections

pytestmark = pytest.mark.anyio


async def test_an_idle_address_is_idle_at_once() -> None:
    assert await Connections().wait_idle("10.0.0.2", at_most=0) is True


async def test_waits_for_the_last_connection_of_that_address_only() -> None:
    book = Connections()
    book.opened("10.0.0.2")
    book.opened("10.0.0.2")
    book.opened("10.0.0.3")
    finished: list[bool] = []
    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            finished.append(await book.wait_idle("10.0.0.2", at_most=10))

        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        book.closed("10.0.0.2")
        await anyio.wait_all_tasks_blocked()
        assert finished == []  # one still open
        book.closed("10.0.0.2")
    assert finished == [True]
    assert book.count("10.0.0.3") == 1


async def test_gives_up_after_at_most() -> None:
    book = Connections()
    book.opened("10.0.0.2")
    assert await book.wait_idle("10.0.0.2", at_most=0.01) is False
    assert book.count("10.0.0.2") == 1
