"""Attached `up`'s interrupt rules (cli/up.py `_until_down`): the first Ctrl-C asks for a
graceful down, the second forces it -- and an interrupt counts wherever it lands.

The CI run that found the bug: a second SIGTERM came while `up` was still asking the
supervisor to go down, escaped the handler of the first, and `up` exited 143 without
releasing anything. Here the supervisor's control calls are stand-ins that record what `up`
asked for and raise the interrupt at the moment the test picks.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from golem_deploy.cli import up
from golem_deploy.supervisor import control


class Calls:
    def __init__(self) -> None:
        self.seen: list[str] = []


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    made = Calls()
    monkeypatch.setattr(control, "request_down", lambda d, t: made.seen.append("down"))
    monkeypatch.setattr(control, "kill", lambda d: made.seen.append("kill"))
    return made


def _interrupting(times: int, then: Callable[[], None] = lambda: None) -> Callable[[], None]:
    """A watch that is interrupted `times` times, then calls `then` and returns."""
    left = [times]

    def watch() -> None:
        if left[0]:
            left[0] -= 1
            raise KeyboardInterrupt
        then()

    return watch


def _run(calls: Calls, watch: Callable[[], None]) -> None:
    up._until_down(
        None,  # type: ignore[arg-type]  # only passed on to the stand-ins
        watch,
        going_down=lambda: calls.seen.append("going down"),
        forcing=lambda: calls.seen.append("forcing"),
    )


def test_the_supervisor_ending_by_itself_asks_for_nothing(calls: Calls) -> None:
    _run(calls, _interrupting(0))
    assert calls.seen == []


def test_one_interrupt_asks_for_a_graceful_down_once(calls: Calls) -> None:
    _run(calls, _interrupting(1))
    assert calls.seen == ["going down", "down"]


def test_a_second_interrupt_forces(calls: Calls) -> None:
    _run(calls, _interrupting(2))
    assert calls.seen == ["going down", "down", "forcing", "kill"]


def test_a_second_interrupt_while_the_down_is_asked_for_forces(
    calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted_request(_d: object, _t: float) -> None:
        calls.seen.append("down (interrupted)")
        raise KeyboardInterrupt

    monkeypatch.setattr(control, "request_down", interrupted_request)
    _run(calls, _interrupting(1))  # no exception escapes
    assert calls.seen == ["going down", "down (interrupted)", "forcing", "kill"]


def test_an_interrupt_while_killing_kills_again(
    calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    kills = [0]

    def kill(_d: object) -> None:
        kills[0] += 1
        if kills[0] == 1:
            raise KeyboardInterrupt  # a third Ctrl-C before the supervisor was dead

    monkeypatch.setattr(control, "kill", kill)
    _run(calls, _interrupting(2))
    assert kills[0] == 2
