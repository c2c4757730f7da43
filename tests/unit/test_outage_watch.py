"""The supervisor's view of a yagna outage: shown while any instance waits for yagna."""

from __future__ import annotations

import datetime as dt

from golem_deploy.engine import events as ev
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.supervisor.outage import OutageWatch
from golem_deploy.supervisor.snapshot import parse_iso

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
URL = "http://127.0.0.1:7465"


def _began(index: int, after: float) -> ev.YagnaOutageBegan:
    return ev.YagnaOutageBegan(
        service="web",
        index=index,
        api_url=URL,
        error="connection refused",
        at=T0 + dt.timedelta(seconds=after),
    )


def test_the_outage_lasts_while_any_instance_waits_and_counts_from_the_first() -> None:
    watch = OutageWatch()
    assert watch.view(T0.timestamp()) is None
    watch.on_event(_began(0, 0))
    watch.on_event(_began(1, 3))
    view = watch.view(T0.timestamp() + 20)
    assert view is not None
    assert (view.api_url, view.seconds, view.error) == (URL, 20.0, "connection refused")
    assert parse_iso(view.since) == T0.timestamp()
    watch.on_event(ev.YagnaOutage(service="web", index=0, seconds=20, back=True))
    assert watch.view(T0.timestamp() + 21) is not None  # web[1] still waits
    watch.on_event(ev.YagnaOutage(service="web", index=1, seconds=18, back=True))
    assert watch.view(T0.timestamp() + 22) is None


def test_an_instance_that_moves_on_no_longer_waits() -> None:
    watch = OutageWatch()
    watch.on_event(_began(0, 0))
    watch.on_event(
        ev.InstanceStateChanged(
            service="web",
            index=0,
            old=ServiceState.running,
            new=ServiceState.stopping,
            reason="down",
        )
    )
    assert watch.view(T0.timestamp() + 5) is None
