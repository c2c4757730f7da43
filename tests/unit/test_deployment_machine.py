"""The deployment machine: every rule by example, plus a hypothesis search over event orders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.supervisor import machine as m

S = ServiceState
D = m.DeploymentState
WAVES = [[("db", 1), ("cache", 1)], [("web", 2)]]


def _started() -> m.DeploymentMachine:
    machine = m.DeploymentMachine(WAVES)
    assert machine.handle(m.NetworkReady()) == [m.StartWave(0, ("db", "cache"))]
    return machine


def _run(machine: m.DeploymentMachine, service: str, index: int) -> list[m.Action]:
    return machine.handle(m.InstanceChanged(service, index, S.running))


def test_a_wave_starts_once_every_instance_of_the_previous_one_runs() -> None:
    machine = _started()
    assert machine.handle(m.InstanceChanged("db", 0, S.starting)) == []
    assert _run(machine, "db", 0) == []
    assert _run(machine, "cache", 0) == [
        m.WaveRunning(0, ("db", "cache")),
        m.StartWave(1, ("web",)),
    ]
    assert _run(machine, "web", 0) == []
    assert machine.state is D.starting
    assert _run(machine, "web", 1) == [m.WaveRunning(1, ("web",)), m.DeploymentRunning()]
    assert machine.state is D.running


def _running() -> m.DeploymentMachine:
    machine = _started()
    for service, index in [("db", 0), ("cache", 0), ("web", 0), ("web", 1)]:
        _run(machine, service, index)
    assert machine.state is D.running
    return machine


def test_an_instance_that_ends_before_running_fails_the_deployment() -> None:
    machine = _started()
    ended = m.InstanceChanged("db", 0, S.terminated, "start failed: code 3", final=True)
    actions = machine.handle(ended)
    assert actions == [m.DeploymentFailed("db.0 did not start: start failed: code 3")]
    assert machine.state is D.failed
    assert _run(machine, "cache", 0) == []  # no later wave starts


def test_a_terminated_instance_with_a_restart_scheduled_has_not_ended() -> None:
    machine = _started()
    _run(machine, "db", 0)
    # Terminated, but not final: the engine schedules a restart.
    assert machine.handle(m.InstanceChanged("db", 0, S.terminated, "run failed")) == []
    assert machine.state is D.starting
    machine.handle(m.InstanceChanged("db", 0, S.pending))  # the replacement
    _run(machine, "db", 0)
    assert _run(machine, "cache", 0)[0] == m.WaveRunning(0, ("db", "cache"))
    # Once replaced, the instance ending again is an ending again.
    machine.handle(m.InstanceChanged("web", 0, S.terminated, "gone", final=True))
    assert machine.state is D.failed


def test_every_service_finished_while_running_goes_down_and_says_why() -> None:
    machine = _running()
    assert machine.handle(m.ServiceFinished("db", ("budget exhausted",))) == []
    assert machine.handle(m.ServiceFinished("cache", ("",))) == []
    actions = machine.handle(m.ServiceFinished("web", ("budget exhausted", "expired")))
    reason = "every instance ended: budget exhausted; ended; expired"
    assert actions == [m.AllEnded(reason)]
    assert machine.reason == reason and machine.state is D.running
    assert machine.handle(m.DownRequested(reason)) == [m.StopServices(reason)]
    assert machine.state is D.stopping
    machine.handle(m.Finished())
    assert machine.state is D.stopped and machine.reason == reason


def test_a_service_finished_while_starting_waits_for_running() -> None:
    machine = _started()
    machine.handle(m.ServiceFinished("db", ()))
    machine.handle(m.ServiceFinished("cache", ()))
    assert machine.state is D.starting


def test_down_from_every_live_state_stops_and_a_second_down_is_a_no_op() -> None:
    for machine in (m.DeploymentMachine(WAVES), _started(), _running()):
        assert machine.handle(m.DownRequested("down requested")) == [
            m.StopServices("down requested")
        ]
        assert machine.handle(m.DownRequested("signal SIGTERM")) == []
        assert machine.handle(m.DownTimedOut(7.0)) == []
        assert machine.reason == "down timed out after 7s"
        machine.handle(m.Finished())
        assert machine.state is D.stopped


def test_a_failed_start_then_down_ends_stopped_a_crash_ends_failed() -> None:
    machine = _started()
    machine.handle(m.InstanceChanged("db", 0, S.terminated, "x", final=True))
    machine.handle(m.DownRequested("down requested"))
    machine.handle(m.Finished())
    assert machine.state is D.stopped
    crashed = _running()
    assert crashed.handle(m.Crashed("yagna said no")) == [m.DeploymentFailed("yagna said no")]
    crashed.handle(m.Finished())
    assert crashed.state is D.failed and crashed.reason == "yagna said no"


@pytest.mark.parametrize(
    ("setup", "event"),
    [
        ("started", m.NetworkReady()),
        ("running", m.DownTimedOut(1.0)),
        ("stopped", m.Finished()),
        ("stopped", m.Crashed("late")),
    ],
)
def test_events_out_of_place_are_loud(setup: str, event: m.Event) -> None:
    machine = _running() if setup == "running" else _started()
    if setup == "stopped":
        machine.handle(m.Finished())
    with pytest.raises(m.IllegalTransition):
        machine.handle(event)


KEYS = [("db", 0), ("cache", 0), ("web", 0), ("web", 1)]
instance_events = st.one_of(
    st.builds(
        m.InstanceChanged,
        service=st.sampled_from(["db", "cache", "web"]),
        index=st.integers(0, 1),
        state=st.sampled_from(list(S)),
        reason=st.sampled_from(["", "why"]),
        final=st.booleans(),
    ),
    st.builds(m.ServiceFinished, service=st.sampled_from(["db", "cache", "web"])),
    st.builds(m.DownRequested, reason=st.just("down")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(instance_events, max_size=40))
def test_any_order_of_engine_events_keeps_the_rules(events: list[m.Event]) -> None:
    """Whatever the engine reports in whatever order: waves start in order and each once,
    the deployment runs only when every wave ran, a failure or a down is never undone, and
    nothing raises."""
    machine = _started()
    started, ran, ended = [0], [], 0
    for event in events:
        before = machine.state
        actions = machine.handle(event)
        for action in actions:
            if isinstance(action, m.StartWave):
                assert action.number == len(started) and ran == list(range(action.number))
                started.append(action.number)
            elif isinstance(action, m.WaveRunning):
                ran.append(action.number)
            elif isinstance(action, m.DeploymentRunning):
                assert ran == [0, 1]
            elif isinstance(action, m.AllEnded):
                ended += 1
        if before in (D.failed, D.stopping):
            assert machine.state is D.stopping or machine.state is before
        if machine.state is D.running:
            assert ran == [0, 1]
    assert ended <= 1
    machine.handle(m.DownRequested("down"))
    machine.handle(m.Finished())
    assert machine.state is D.stopped


def test_services_changed_replaces_what_the_machine_supervises() -> None:
    machine = _running()
    machine.handle(m.ServiceFinished("cache", ("expired",)))
    machine.handle(m.ServiceFinished("web", ("expired",)))
    # A change removes cache and starts web again: web's earlier end no longer counts.
    waves = ((("db", 1),), (("web", 3),))
    assert machine.handle(m.ServicesChanged(waves, started=("web",))) == []
    assert machine.handle(m.ServiceFinished("db", ("expired",))) == []
    assert machine.handle(m.ServiceFinished("web", ("budget",))) == [
        m.AllEnded("every instance ended: budget; expired")
    ]


def test_services_changed_only_while_running() -> None:
    machine = _started()
    with pytest.raises(m.IllegalTransition):
        machine.handle(m.ServicesChanged(((("db", 1),),)))
