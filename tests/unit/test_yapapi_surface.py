"""yapapi parity of the engine's API, pure parts (no network): how arguments are read, which
hooks are honoured or refused, what an instance exposes and keeps to itself."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from golem_deploy.engine import Cluster, Golem, HealthCheck, RestartPolicy, Service, ServiceState
from golem_deploy.engine import events as ev
from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.run_args import (
    DEFAULT_EXPIRATION,
    EngineError,
    _class_default,
    check_hooks,
    expiration_time,
)
from golem_deploy.engine.runner import responsive_hook
from golem_deploy.engine.service import WorkContext, record_of
from golem_deploy.engine.timing import Timings
from golem_deploy.engine.watcher import Watcher
from golem_deploy.yagna.errors import YagnaBadAnswer
from golem_deploy.yagna.models import ActivityState, ActivityUsage

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC-5 (a POSIX TZ: no tz database needed)."""
    monkeypatch.setenv("TZ", "EST+05:00")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_naive_expiration_is_local_time_as_in_yapapi(local_tz: None) -> None:
    naive = datetime(2030, 1, 1, 12, 30)  # 12:30 in UTC-5 is 17:30 UTC
    assert expiration_time(naive, NOW) == datetime(2030, 1, 1, 17, 30, tzinfo=UTC)


def test_an_aware_expiration_keeps_its_zone(local_tz: None) -> None:
    warsaw = timezone(timedelta(hours=1))
    aware = datetime(2030, 1, 1, 13, 30, tzinfo=warsaw)
    assert expiration_time(aware, NOW) == datetime(2030, 1, 1, 12, 30, tzinfo=UTC)


def test_a_timedelta_or_nothing_counts_from_now() -> None:
    assert expiration_time(timedelta(minutes=15), NOW) == NOW + timedelta(minutes=15)
    assert expiration_time(None, NOW) == NOW + DEFAULT_EXPIRATION


def test_local_now_plus_a_quarter_is_a_quarter_from_now_in_any_zone(local_tz: None) -> None:
    now = datetime.now(UTC)
    expires = expiration_time(datetime.now() + timedelta(minutes=15), now)
    assert timedelta(minutes=14) < expires - now <= timedelta(minutes=15, seconds=5)


# ----------------------------------------------------------------- the Service namespace


class Mine(Service):
    """A subclass with attributes and methods the engine once used as its own names."""

    def __init__(self, index: str = "mine", **kw: object) -> None:
        super().__init__(**kw)
        self.index = index
        self.cost = "priceless"
        self.params = ["user", "data"]
        self.restarts = -1

    def healthcheck(self) -> str:
        return "my own"

    def restart(self) -> str:
        return "my own"


def test_an_instance_id_is_a_unique_uuid_or_the_given_id() -> None:
    a, b = Service(), Service()
    assert a.id != b.id and str(uuid.UUID(a.id)) == a.id
    assert Service(_id="svc-7").id == "svc-7"
    assert Mine(_id="m").id == "m"


def test_exc_info_starts_empty() -> None:
    assert Service().exc_info == (None, None, None)


def test_the_engine_keeps_its_state_out_of_the_users_namespace() -> None:
    mine = Mine()
    record = record_of(mine)
    record.index, record.cost, record.restarts = 3, Decimal("1.5"), 2
    assert (mine.index, mine.cost, mine.params, mine.restarts) == (
        "mine",
        "priceless",
        ["user", "data"],
        -1,
    )
    snap = mine.snapshot()
    assert (snap.index, snap.cost, snap.restarts, snap.service) == (3, Decimal("1.5"), 2, "Mine")
    assert repr(mine) == "<Mine Mine[3] pending>"


def test_a_subclass_skipping_services_init_still_gets_a_record() -> None:
    class Bare(Service):
        def __init__(self) -> None:  # no super().__init__(), which yapapi would not survive
            self.x = 1

    bare = Bare()
    assert uuid.UUID(bare.id) and bare.state is ServiceState.pending
    assert record_of(bare) is record_of(bare)


def test_class_defaults_are_read_only_when_they_have_the_engines_types() -> None:
    assert _class_default(Mine, "healthcheck", HealthCheck) is None  # a method, not config
    assert _class_default(Mine, "restart", RestartPolicy) is None

    class Configured(Service):
        healthcheck = HealthCheck(retries=5)
        restart = RestartPolicy("always")
        respawn_unstarted_instances = False

    assert _class_default(Configured, "healthcheck", HealthCheck) == HealthCheck(retries=5)
    assert _class_default(Configured, "restart", RestartPolicy) == RestartPolicy("always")
    assert _class_default(Configured, "respawn_unstarted_instances", bool) is False


# ------------------------------------------------------------------------ yapapi's hooks


def test_overriding_restart_condition_is_refused_naming_the_hook() -> None:
    class Restarting(Service):
        @property
        def restart_condition(self) -> bool:
            return True

    with pytest.raises(EngineError, match="Restarting overrides yapapi's restart_condition"):
        check_hooks(Restarting, None)
    check_hooks(Mine, None)  # nothing overridden: fine


class Responsive(Service):
    answers: ClassVar[list[object]] = []

    async def is_activity_responsive(self) -> bool:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, bool)
        return answer


def test_is_activity_responsive_and_a_probe_are_one_check_too_many() -> None:
    check_hooks(Responsive, HealthCheck(interval=1.0))
    with pytest.raises(EngineError, match="overrides is_activity_responsive"):
        check_hooks(Responsive, HealthCheck(argv=("/bin/true",)))


def test_only_an_overridden_is_activity_responsive_becomes_the_health_check() -> None:
    assert responsive_hook(Service()) is None
    assert responsive_hook(Responsive()) is not None


@pytest.mark.anyio
async def test_is_activity_responsive_answers_are_health_check_results() -> None:
    Responsive.answers = [True, False, RuntimeError("boom")]
    hook = responsive_hook(Responsive())
    assert hook is not None
    watcher = Watcher(
        None,  # type: ignore[arg-type]  # the hook needs neither client nor executor
        None,  # type: ignore[arg-type]
        HealthCheck(timeout=1.0),
        Timings(),
        "r[0]",
        responsive=hook,
    )
    sent: list[lc.Event] = []
    for _ in range(3):
        await watcher._responsive_hook(hook, sent.append)
    assert sent == [
        lc.HealthCheckPassed("is_activity_responsive() returned True"),
        lc.HealthCheckFailed("is_activity_responsive() returned False"),
        lc.HealthCheckFailed("is_activity_responsive() raised RuntimeError('boom')"),
    ]


# ------------------------------------------------------------------------- WorkContext

OFFER = {
    "golem.com.pricing.model": "linear",
    "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
    "golem.com.pricing.model.linear.coeffs": [0.001, 0.0001, 0.5],
}


class UsageClient:
    """Answers the activity calls a WorkContext makes, as yagna would."""

    def __init__(self, usage: ActivityUsage) -> None:
        self.usage = usage

    async def activity_usage(self, activity_id: str, timeout: float = 5.0) -> ActivityUsage:
        assert activity_id == "act-1"
        return self.usage

    async def activity_state(self, activity_id: str, timeout: float = 5.0) -> ActivityState:
        return ActivityState("Ready", None)


def work(usage: ActivityUsage, emit: list[ev.EngineEvent] | None = None) -> WorkContext:
    return WorkContext(
        activity_id="act-1",
        agreement_id="agr-1",
        provider_id="0xp",
        provider_name="p",
        client=UsageClient(usage),  # type: ignore[arg-type]  # the calls a WorkContext makes
        emit=emit.append if emit is not None else None,
        offer_properties=OFFER,
    )


@pytest.mark.anyio
async def test_usage_is_named_by_the_agreements_usage_vector_and_priced_by_it() -> None:
    ctx = work(ActivityUsage((100.0, 200.0), 1_900_000_000))
    assert ctx.id == "act-1"
    usage = await ctx.get_usage()
    assert usage.current_usage == {"golem.usage.cpu_sec": 100.0, "golem.usage.duration_sec": 200.0}
    assert usage.timestamp == datetime.fromtimestamp(1_900_000_000, UTC)
    assert usage.timestamp is not None and usage.timestamp.tzinfo is not None
    assert await ctx.get_cost() == pytest.approx(0.5 + 0.1 + 0.02)
    assert (await ctx.get_raw_usage()).current_usage == (100.0, 200.0)
    assert (await ctx.get_raw_state()).state == "Ready"


@pytest.mark.anyio
async def test_no_usage_reported_yet_has_no_cost() -> None:
    ctx = work(ActivityUsage(None, 1_900_000_000))
    assert await ctx.get_cost() is None
    assert (await ctx.get_usage()).current_usage == {}


def test_emit_takes_an_event_or_yapapis_class_and_fields() -> None:
    seen: list[ev.EngineEvent] = []
    ctx = work(ActivityUsage(None, 0), seen)
    made = ctx.emit(ev.NetworkRemoved, network_id="n1")
    ctx.emit(ev.NetworkRemoved(network_id="n2"))
    assert made == ev.NetworkRemoved(network_id="n1")
    assert [e.network_id for e in seen if isinstance(e, ev.NetworkRemoved)] == ["n1", "n2"]


def test_activity_usage_is_parsed_strictly() -> None:
    usage = ActivityUsage.parse({"currentUsage": [1, 2.5], "timestamp": 7}, "GET u")
    assert usage == ActivityUsage((1.0, 2.5), 7)
    assert ActivityUsage.parse({"timestamp": 7}, "GET u").current_usage is None
    with pytest.raises(YagnaBadAnswer, match="not a list of numbers"):
        ActivityUsage.parse({"currentUsage": ["x"], "timestamp": 7}, "GET u")


# ----------------------------------------------------------------------------- Cluster


def test_a_cluster_is_subscriptable_by_its_service_class() -> None:
    annotated: Any = Cluster[Mine]
    assert annotated is not None


def test_yapapis_stream_output_flag_is_accepted() -> None:
    for flag in (True, False):
        assert Golem(budget=1, stream_output=flag).budget == 1
