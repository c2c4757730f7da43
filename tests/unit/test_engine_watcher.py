"""The provider check on its own: is the provider of an activity still there?

This is what decides, after a step failed, whether the provider vanished (the instance goes
unresponsive, no shutdown) or the service failed. A scripted stand-in for the client plays
yagna's answers; no Golem, no network.
"""

from __future__ import annotations

from typing import Any

import pytest

from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.config import HealthCheck
from golem_deploy.engine.executor import ScriptExecutor
from golem_deploy.engine.timing import Timings
from golem_deploy.engine.watcher import Watcher
from golem_deploy.yagna.errors import ActivityGone, YagnaStatusError, YagnaUnreachable
from golem_deploy.yagna.models import ActivityState, Identity

pytestmark = pytest.mark.anyio
FAST = Timings(retry_pause=0.0)


class Client:
    """Plays yagna: each call pops its next answer (an exception is raised)."""

    def __init__(self, states: list[Any], results: list[Any] | None = None) -> None:
        self.states = states
        self.results = results or []
        self.asked_results: list[str] = []

    async def activity_state(self, activity_id: str, timeout: float = 5.0) -> ActivityState:
        answer = self.states.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return ActivityState(answer, None, reason=None, error_message=None)

    async def exec_results(self, activity_id: str, batch_id: str, *, timeout: float = 5.0) -> Any:
        self.asked_results.append(batch_id)
        answer = self.results.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def me(self) -> Identity:
        return Identity(node_id="0xr", name="r")


def watcher(client: Client) -> Watcher:
    executor = ScriptExecutor(
        client,  # type: ignore[arg-type]  # a stand-in with the methods used
        storage=None,
        emit=lambda event: None,
        service="svc",
        index=0,
        timings=FAST,
    )
    executor.last_batch = "b7"
    return Watcher(client, executor, HealthCheck(), FAST, "svc[0]")  # type: ignore[arg-type]


GONE = ActivityGone(500, "GSB error: endpoint address not found", "GET /exec/b7")


async def test_yagna_reporting_the_activity_terminated_is_the_provider_gone() -> None:
    client = Client(["Terminated"])
    assert "lost the activity" in str(await watcher(client).provider_gone("a"))
    assert client.asked_results == []  # nothing to confirm: yagna ended it


async def test_unresponsive_with_the_exeunit_gone_is_the_provider_gone() -> None:
    client = Client(["Unresponsive"], [GONE])
    assert "ExeUnit is gone" in str(await watcher(client).provider_gone("a"))


async def test_unresponsive_while_the_exeunit_answers_is_only_late_usage_reports() -> None:
    """yagna says Unresponsive when a usage report is 5 s late (a provider, or its yagna,
    too busy for a moment) and takes it back when reports resume; an ExeUnit that answers
    is alive, and its instance must not be given up (bench/scale.py: 500 instances)."""
    client = Client(["Unresponsive"], [[]])
    assert await watcher(client).provider_gone("a") is None


async def test_unresponsive_and_an_exeunit_that_never_answers_is_the_provider_gone() -> None:
    client = Client(["Unresponsive"] * 3, [TimeoutError()] * 3)
    assert "lost the activity: activity unresponsive" in str(
        await watcher(client).provider_gone("a")
    )


async def test_an_exeunit_off_the_bus_is_the_provider_gone_even_while_state_says_ready() -> None:
    """The provider's node reports Unresponsive only 5 s after the last heartbeat; the
    ExeUnit itself is asked, so a step that failed because of it is classified at once."""
    client = Client(["Ready"], [GONE])
    assert "ExeUnit is gone" in str(await watcher(client).provider_gone("a"))
    assert client.asked_results == ["b7"]  # the last batch: answered only by the ExeUnit


async def test_an_exeunit_that_answers_at_all_is_alive() -> None:
    unknown = YagnaStatusError(404, "batch_id = b7", "GET /exec/b7")
    assert await watcher(Client(["Ready"], [unknown])).provider_gone("a") is None
    assert await watcher(Client(["Ready"], [[]])).provider_gone("a") is None


async def test_a_refusing_provider_node_is_not_proof_of_life() -> None:
    refused = YagnaStatusError(500, "GSB error: timeout", "GET /state")
    gone = await watcher(Client([refused, refused, refused])).provider_gone("a")
    assert gone == "activity not answering"


async def test_an_unreachable_yagna_is_waited_for_then_asked_again() -> None:
    outage = YagnaUnreachable("connection refused", "GET /state")
    assert await watcher(Client([outage, "Ready"], [[]])).provider_gone("a") is None


async def test_the_answer_goes_to_the_lifecycle() -> None:
    sent: list[lc.Event] = []
    await watcher(Client(["Ready"], [[]])).check_provider("a", sent.append)
    await watcher(Client(["Terminated"])).check_provider("a", sent.append)
    await watcher(Client([])).check_provider(None, sent.append)
    assert [type(e) for e in sent] == [
        lc.ProviderAlive,
        lc.ActivityUnresponsive,
        lc.ActivityUnresponsive,
    ]


class Ticking(Client):
    """A Client whose every state query is counted."""

    def __init__(self, states: list[Any]) -> None:
        super().__init__(states)
        self.asked_state = 0

    async def activity_state(self, activity_id: str, timeout: float = 5.0) -> ActivityState:
        self.asked_state += 1
        return await super().activity_state(activity_id, timeout)


async def test_a_recent_batch_answer_stands_in_for_the_state_query() -> None:
    """While the ExeUnit keeps answering batch results, the watcher sends no state query;
    once it stops, the next look asks, and a lost activity is reported as before."""
    client = Ticking(["Ready", "Terminated"])
    w = watcher(client)
    w.timings = Timings(retry_pause=0.0, watch_interval=0.0)
    proofs = iter([True, True, True, False, True, False])
    w.executor.answered_within = lambda activity_id, seconds: next(proofs)  # type: ignore[method-assign]
    sent: list[lc.Event] = []
    await w.watch("a", lambda: False, sent.append)
    assert client.asked_state == 2  # only at the two looks without a fresh answer
    assert [type(e) for e in sent] == [lc.ActivityUnresponsive]
    assert next(proofs, None) is None


async def test_a_batch_answer_stands_in_for_two_pauses() -> None:
    """A step `every: 5s` answers every 5 s plus its run time: a window of one pause would
    miss it at every tenth look or so."""
    client = Ticking(["Ready", "Terminated"])
    w = watcher(client)
    w.timings = Timings(retry_pause=0.0, watch_interval=0.001)
    asked: list[float] = []

    def answered_within(activity_id: str, seconds: float) -> bool:
        asked.append(seconds)
        return False

    w.executor.answered_within = answered_within  # type: ignore[method-assign]
    await w.watch("a", lambda: False, lambda event: None)
    assert asked == [0.002, 0.002]  # two pauses of 0.001 s, at both looks


async def test_only_an_answer_of_the_same_activity_is_proof_of_life() -> None:
    executor = watcher(Client([])).executor
    assert not executor.answered_within("a", 60.0)
    executor.saw_answer("old-activity")
    assert not executor.answered_within("a", 60.0)
    executor.saw_answer("a")
    assert executor.answered_within("a", 60.0)
    assert not executor.answered_within("a", 0.0)
