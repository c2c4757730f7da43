"""A provider that dies and comes back (localnet/provider/lives.py, faults come_back_after)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskStatus

from golem_deploy.localnet.faults import FaultsError, parse_faults
from golem_deploy.localnet.provider import lives as lives_module
from golem_deploy.localnet.provider.lives import ProviderLives


def test_come_back_after_is_a_positive_duration_next_to_a_death() -> None:
    faults = parse_faults(
        {
            "local-provider-1": {"die_after": "90s", "come_back_after": "30s"},
            "local-provider-2": {"die_when": "/tmp/kill-2", "come_back_after": 5},
            "local-provider-3": {"die_after": "1m"},
        }
    )
    assert faults["local-provider-1"].come_back_after == 30.0
    assert faults["local-provider-2"].come_back_after == 5.0
    assert faults["local-provider-3"].come_back_after is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"come_back_after": "30s"}, "comes back only after it died: add die_after or die_when"),
        ({"die_after": "1s", "come_back_after": "0s"}, "longer than 0"),
        ({"die_after": "1s", "come_back_after": "soon"}, "is not a duration"),
    ],
)
def test_come_back_after_mistakes_are_reported(spec: dict[str, object], message: str) -> None:
    with pytest.raises(FaultsError) as raised:
        parse_faults({"local-provider-1": spec})
    assert "local-provider-1.come_back_after" in str(raised.value)
    assert message in str(raised.value)


class FakeAgent:
    """Its fate is the script's next entry: vanish at once, serve, or fail to start."""

    def __init__(self, script: list[str]) -> None:
        self.fate = script.pop(0)  # "dies", "serves" or "cannot start"
        self.dead = False
        self.shut_down = False

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if self.fate == "cannot start":
            raise RuntimeError("offer not published")
        task_status.started()
        if self.fate == "dies":
            await anyio.sleep(0)
            self.dead = True
            return
        await anyio.sleep_forever()

    async def shutdown(self, timeout: float = 8.0) -> None:
        self.shut_down = True


def run_lives(
    script: list[str], come_back_after: float | None, work_root: Path | None = None
) -> tuple[ProviderLives, list[tuple[str, int]], list[float]]:
    events: list[tuple[str, int]] = []
    pauses: list[float] = []
    agents: list[FakeAgent] = []

    def make() -> FakeAgent:
        agents.append(FakeAgent(script))
        return agents[-1]

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    lives = ProviderLives(
        "local-provider-1",
        make,
        come_back_after=come_back_after,
        work_root=work_root,
        on_event=lambda event, life: events.append((event, life)),
        sleep=pause,
    )

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(lives.run)
            for _ in range(200):  # every pause is instant: the lives run their course
                await anyio.sleep(0)
            await lives.shutdown()
            tg.cancel_scope.cancel()

    anyio.run(main)
    return lives, events, pauses


def test_a_provider_that_dies_comes_back_as_a_new_agent_after_the_pause(tmp_path: Path) -> None:
    work = tmp_path / "local-provider-1"
    work.mkdir()
    (work / "old-activity").mkdir()
    lives, events, pauses = run_lives(["dies", "dies", "serves"], 30.0, work)
    assert events == [
        ("provider-died", 1),
        ("provider-back", 2),
        ("provider-died", 2),
        ("provider-back", 3),
    ]
    assert pauses == [30.0, 30.0]
    assert lives.deaths == 2 and lives.life == 3
    assert not work.exists()  # the dead life's activities went with it
    assert isinstance(lives.agent, FakeAgent) and lives.agent.shut_down


def test_without_come_back_after_a_dead_provider_stays_dead() -> None:
    lives, events, pauses = run_lives(["dies"], None)
    assert events == [] and pauses == [] and lives.life == 1 and lives.deaths == 0


def test_a_life_that_cannot_start_is_tried_again() -> None:
    lives, events, pauses = run_lives(["dies", "cannot start", "serves"], 10.0)
    assert pauses == [10.0, lives_module.RETRY_START]
    assert events == [("provider-died", 1), ("provider-back", 3)]
    assert lives.life == 3


def test_the_first_life_failing_to_start_is_an_error() -> None:
    with pytest.raises(BaseException) as raised:
        run_lives(["cannot start"], 10.0)
    assert "offer not published" in repr(raised.value) or raised.group_contains(RuntimeError)


def test_a_provider_shut_down_while_away_does_not_come_back() -> None:
    events: list[tuple[str, int]] = []
    script = ["dies", "serves"]
    agents: list[FakeAgent] = []

    def make() -> FakeAgent:
        agents.append(FakeAgent(script))
        return agents[-1]

    async def pause(seconds: float) -> None:
        await lives.shutdown()  # the network stops while the provider is away

    lives = ProviderLives(
        "local-provider-1",
        make,
        come_back_after=30.0,
        on_event=lambda event, life: events.append((event, life)),
        sleep=pause,
    )

    async def main() -> None:
        await lives.run()

    anyio.run(main)
    assert events == [("provider-died", 1)] and len(agents) == 1
