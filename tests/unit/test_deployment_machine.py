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


# ---- the private local network dies (degraded) ---------------------------------------------

DIED = "the local network's requestor yagna daemon (pid 42) died"


def test_a_dead_local_network_degrades_restarts_and_recovers_once_every_instance_runs() -> None:
    machine = _running()
    assert machine.handle(m.LocalnetDied(DIED)) == [
        m.DeploymentDegraded(f"{DIED}; restarting the local network"),
        m.RestartLocalnet(DIED),
    ]
    assert machine.state is D.degraded and machine.reason and DIED in machine.reason
    # The engine reports each instance lost, then running again (before the network is
    # back, a running report cannot be about the restarted network).
    for key in KEYS:
        assert machine.handle(m.InstanceChanged(*key, S.unresponsive, "lost")) == []
    assert _run(machine, "db", 0) == []
    assert machine.handle(m.LocalnetRestarted()) == []
    assert machine.state is D.degraded and "runs again" in (machine.reason or "")
    for key in KEYS[:-1]:
        assert _run(machine, *key) == []
    assert _run(machine, "web", 1) == [m.DeploymentRecovered(D.running, DIED)]
    assert machine.state is D.running and machine.reason is None


def test_instances_that_ended_for_good_do_not_hold_the_recovery_but_one_must_run() -> None:
    machine = _running()
    machine.handle(m.LocalnetDied(DIED))
    machine.handle(m.LocalnetRestarted())
    for key in KEYS[1:]:
        ended = m.InstanceChanged(*key, S.unresponsive, "lost", final=True)
        assert machine.handle(ended) == []
    assert _run(machine, "db", 0) == [m.DeploymentRecovered(D.running, DIED)]

    nobody = _running()
    nobody.handle(m.LocalnetDied(DIED))
    nobody.handle(m.LocalnetRestarted())
    for key in KEYS:
        nobody.handle(m.InstanceChanged(*key, S.unresponsive, "lost", final=True))
    assert nobody.state is D.degraded  # nothing runs again: the services finish instead
    for service in ("db", "cache"):
        assert nobody.handle(m.ServiceFinished(service, ("lost",))) == []
    assert nobody.handle(m.ServiceFinished("web", ("lost",))) == [
        m.AllEnded("every instance ended: lost")
    ]


def test_a_death_while_starting_resumes_the_waves_after_recovery() -> None:
    machine = _started()
    _run(machine, "db", 0)
    machine.handle(m.LocalnetDied(DIED))
    machine.handle(m.InstanceChanged("db", 0, S.unresponsive, "lost"))
    machine.handle(m.LocalnetRestarted())
    assert _run(machine, "db", 0) == [m.DeploymentRecovered(D.starting, DIED)]
    assert machine.state is D.starting
    assert _run(machine, "cache", 0) == [
        m.WaveRunning(0, ("db", "cache")),
        m.StartWave(1, ("web",)),
    ]


def test_a_failed_restart_fails_the_deployment_with_both_reasons() -> None:
    machine = _running()
    machine.handle(m.LocalnetDied(DIED))
    actions = machine.handle(m.LocalnetRestartFailed("yagna did not start"))
    assert machine.state is D.failed
    assert actions == [m.DeploymentFailed(machine.reason or "")]
    assert DIED in (machine.reason or "") and "yagna did not start" in (machine.reason or "")
    assert machine.handle(m.LocalnetRestarted()) == []
    assert machine.handle(m.DownRequested("down")) == [m.StopServices("down")]


def test_a_network_that_keeps_dying_fails_after_max_deaths_in_a_row() -> None:
    machine = _running()
    for _ in range(m.MAX_LOCALNET_DEATHS):
        actions = machine.handle(m.LocalnetDied(DIED))
        assert m.RestartLocalnet(DIED) in actions and machine.state is D.degraded
        machine.handle(m.LocalnetRestarted())
    actions = machine.handle(m.LocalnetDied(DIED))
    assert machine.state is D.failed
    assert actions == [m.DeploymentFailed(machine.reason or "")]
    assert f"died {m.MAX_LOCALNET_DEATHS + 1} times in a row" in (machine.reason or "")

    healed = _running()  # a recovery between deaths starts the count over
    for _ in range(m.MAX_LOCALNET_DEATHS + 2):
        healed.handle(m.LocalnetDied(DIED))
        healed.handle(m.LocalnetRestarted())
        for key in KEYS:
            _run(healed, *key)
        assert healed.state is D.running


def test_a_death_while_stopping_or_failed_restarts_nothing_and_down_works_degraded() -> None:
    stopping = _running()
    stopping.handle(m.DownRequested("down"))
    assert stopping.handle(m.LocalnetDied(DIED)) == []
    assert stopping.state is D.stopping
    failed = _started()
    failed.handle(m.InstanceChanged("db", 0, S.terminated, "x", final=True))
    assert failed.handle(m.LocalnetDied(DIED)) == [] and failed.state is D.failed
    degraded = _running()
    degraded.handle(m.LocalnetDied(DIED))
    assert degraded.handle(m.DownRequested("down")) == [m.StopServices("down")]
    assert degraded.handle(m.LocalnetRestarted()) == []
    degraded.handle(m.Finished())
    assert degraded.state is D.stopped


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
    st.just(m.LocalnetDied(DIED)),
    st.just(m.LocalnetRestarted()),
    st.just(m.LocalnetRestartFailed("no")),
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
        if machine.state is D.degraded:
            assert before in (D.starting, D.running, D.degraded)
        if any(isinstance(action, m.DeploymentRecovered) for action in actions):
            assert before is D.degraded and machine.state in (D.starting, D.running)
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


def test_services_changed_only_while_running_or_degraded() -> None:
    machine = _started()
    with pytest.raises(m.IllegalTransition):
        machine.handle(m.ServicesChanged(((("db", 1),),)))
    stopping = _running()
    stopping.handle(m.DownRequested("down"))
    with pytest.raises(m.IllegalTransition):
        stopping.handle(m.ServicesChanged(((("db", 1),),)))


def test_changes_are_taken_while_running_and_while_degraded_once_the_network_is_back() -> None:
    machine = _started()
    assert machine.change_refusal() == "the deployment is starting: a change applies once it runs"
    machine = _running()
    assert machine.change_refusal() is None
    machine.handle(m.LocalnetDied(DIED))
    refusal = machine.change_refusal()
    assert refusal is not None and "being restarted" in refusal
    machine.handle(m.LocalnetRestarted())
    assert machine.state is D.degraded and machine.change_refusal() is None
    machine.handle(m.DownRequested("down"))
    assert machine.change_refusal() == "the deployment is stopping: a change applies once it runs"
    failed = _running()
    failed.handle(m.Crashed("boom"))
    assert failed.change_refusal() == "the deployment is failed: a change applies once it runs"


def test_a_scale_down_while_degraded_stops_awaiting_the_removed_instances() -> None:
    """web.1's provider stays dead: degraded lasts. Scaling web to 1 removes it, so the
    deployment recovers once the rest runs again; the change itself keeps it degraded."""
    machine = _running()
    machine.handle(m.LocalnetDied(DIED))
    machine.handle(m.LocalnetRestarted())
    for key in KEYS[:-1]:
        assert _run(machine, *key) == []
    assert machine.state is D.degraded  # web.1 is still awaited
    waves = ((("db", 1), ("cache", 1)), (("web", 1),))
    assert machine.handle(m.ServicesChanged(waves, started=())) == [
        m.DeploymentRecovered(D.running, DIED)
    ]
    assert machine.state is D.running

    growing = _running()
    growing.handle(m.LocalnetDied(DIED))
    growing.handle(m.LocalnetRestarted())
    more = ((("db", 1), ("cache", 1)), (("web", 4),))
    assert growing.handle(m.ServicesChanged(more, started=())) == []
    assert growing.state is D.degraded  # nothing ran again yet: a scale up recovers nothing
