"""The long-lived processes' event loop: uvloop when installed, unless turned off."""

from __future__ import annotations

import asyncio

import pytest

from golem_deploy import event_loop


async def _loop_module(tag: str) -> tuple[str, str]:
    return tag, type(asyncio.get_running_loop()).__module__


def test_run_uses_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(event_loop.ENV, raising=False)
    assert event_loop.uses_uvloop()  # a dependency of golem-deploy on Linux
    tag, module = event_loop.run(_loop_module, "x")
    assert tag == "x"  # arguments pass through, the result comes back
    assert module.startswith("uvloop")


@pytest.mark.parametrize("value", ["asyncio", " Asyncio "])
def test_the_environment_variable_keeps_the_standard_loop(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(event_loop.ENV, value)
    assert not event_loop.uses_uvloop()
    _, module = event_loop.run(_loop_module, "x")
    assert module.startswith("asyncio")
