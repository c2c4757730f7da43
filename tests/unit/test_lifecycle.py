"""The instance lifecycle machine: every rule, plus a hypothesis stateful search.

The machine is pure, so these tests drive it with events and check the state and the
actions it asks for — exactly what the cluster runner executes.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.lifecycle import (
    AcquireAgreement,
    AvoidProvider,
    Lifecycle,
    LifecycleConfig,
    ReleaseActivity,
    RunHandler,
    ScheduleRestart,
    ServiceState,
)

S = ServiceState


def running(config: LifecycleConfig | None = None) -> Lifecycle:
    m = Lifecycle(config or LifecycleConfig())
    assert m.handle(lc.Spawn()) == [AcquireAgreement()]
    assert m.handle(lc.ActivityReady()) == [RunHandler("start")]
    assert m.state is S.starting
    assert m.handle(lc.StartReturned()) == [RunHandler("run")]
    assert m.state is S.running
    return m


def kinds(actions: list[lc.Action]) -> list[type]:
    return [type(a) for a in actions]


def test_state_values_are_the_names_users_see() -> None:
    assert [s.value for s in ServiceState] == [
        "pending",
        "starting",
        "running",
        "stopping",
        "terminated",
        "unresponsive",
    ]


def test_happy_path_stop_runs_shutdown_once() -> None:
    m = running()
    assert m.handle(lc.StopRequested()) == [RunHandler("shutdown")]
    assert m.state is S.stopping
    assert m.handle(lc.StopRequested()) == []  # a second stop changes nothing
    assert kinds(m.handle(lc.ShutdownReturned())) == [ReleaseActivity]
    assert m.state is S.terminated and m.final


def test_start_failure_respawns_on_another_provider() -> None:
    m = Lifecycle(LifecycleConfig(respawn_unstarted_instances=True))
    m.handle(lc.Spawn())
    m.handle(lc.ActivityReady())
    actions = m.handle(lc.StartRaised("boom"))
    assert kinds(actions) == [AvoidProvider, ReleaseActivity, AcquireAgreement]
    assert m.state is S.pending and m.respawns == 1 and m.restarts == 0
    assert "boom" in m.last_reason


def test_start_failure_without_respawn_terminates() -> None:
    m = Lifecycle(LifecycleConfig(respawn_unstarted_instances=False))
    m.handle(lc.Spawn())
    m.handle(lc.ActivityReady())
    assert kinds(m.handle(lc.StartRaised("boom"))) == [AvoidProvider, ReleaseActivity]
    assert m.state is S.terminated and m.final


def test_start_failure_never_restarts_even_with_restart_policy() -> None:
    """Unstarted instances are governed by respawn, not by the restart policy."""
    m = Lifecycle(LifecycleConfig(respawn_unstarted_instances=False, restart_policy="always"))
    m.handle(lc.Spawn())
    m.handle(lc.ActivityReady())
    assert ScheduleRestart not in kinds(m.handle(lc.StartRaised("x")))
    assert m.final


def test_run_failure_runs_shutdown_then_terminates_without_restart_by_default() -> None:
    m = running()
    assert m.handle(lc.RunRaised("crash")) == [RunHandler("shutdown")]
    assert m.state is S.stopping
    assert kinds(m.handle(lc.ShutdownReturned())) == [ReleaseActivity]
    assert m.final


def test_on_failure_restarts_with_doubling_backoff_up_to_max() -> None:
    m = running(LifecycleConfig(restart_policy="on-failure", max_restarts=2, backoff=5.0))
    delays = []
    for _ in range(2):
        m.handle(lc.RunRaised("crash"))
        actions = m.handle(lc.ShutdownReturned())
        restart = [a for a in actions if isinstance(a, ScheduleRestart)]
        assert len(restart) == 1
        delays.append(restart[0].delay)
        assert not m.final and m.restart_scheduled
        assert m.handle(lc.RestartDue()) == [AcquireAgreement()]
        assert m.state is S.pending
        m.handle(lc.ActivityReady())
        m.handle(lc.StartReturned())
    assert delays == [5.0, 10.0]
    assert m.restarts == 2
    m.handle(lc.RunRaised("crash again"))
    assert ScheduleRestart not in kinds(m.handle(lc.ShutdownReturned()))
    assert m.final


def test_on_failure_does_not_restart_a_run_that_returned() -> None:
    m = running(LifecycleConfig(restart_policy="on-failure"))
    m.handle(lc.RunReturned())
    assert ScheduleRestart not in kinds(m.handle(lc.ShutdownReturned()))
    assert m.final


def test_always_restarts_a_run_that_returned() -> None:
    m = running(LifecycleConfig(restart_policy="always", backoff=1.0))
    m.handle(lc.RunReturned())
    assert ScheduleRestart(delay=1.0, attempt=1) in m.handle(lc.ShutdownReturned())


def test_shutdown_failure_counts_as_failure() -> None:
    m = running(LifecycleConfig(restart_policy="on-failure"))
    m.handle(lc.RunReturned())
    assert ScheduleRestart in kinds(m.handle(lc.ShutdownRaised("x")))


@pytest.mark.parametrize("policy", ["never", "on-failure", "always"])
def test_stop_and_expiration_never_restart(policy: str) -> None:
    for event in (lc.StopRequested(), lc.ExpirationReached()):
        m = running(LifecycleConfig(restart_policy=policy))
        assert m.handle(event) == [RunHandler("shutdown")]
        assert ScheduleRestart not in kinds(m.handle(lc.ShutdownRaised("x")))
        assert m.final


def test_provider_vanishing_skips_shutdown() -> None:
    m = running()
    actions = m.handle(lc.ActivityUnresponsive("gone"))
    assert RunHandler("shutdown") not in actions
    assert kinds(actions) == [AvoidProvider, ReleaseActivity]
    assert m.state is S.unresponsive and m.final

    m = running()
    actions = m.handle(lc.AgreementTerminatedByProvider("bye"))
    assert RunHandler("shutdown") not in actions
    assert m.state is S.terminated and m.final


def test_provider_vanishing_is_replaced_under_on_failure() -> None:
    m = running(LifecycleConfig(restart_policy="on-failure", backoff=2.0))
    actions = m.handle(lc.ActivityUnresponsive("gone"))
    assert kinds(actions) == [AvoidProvider, ReleaseActivity, ScheduleRestart]
    assert m.state is S.unresponsive and not m.final
    assert m.handle(lc.RestartDue()) == [AcquireAgreement()]
    assert m.restarts == 1


def test_vanishing_during_start_respawns() -> None:
    m = Lifecycle()
    m.handle(lc.Spawn())
    m.handle(lc.ActivityReady())
    actions = m.handle(lc.ActivityUnresponsive("gone"))
    assert kinds(actions) == [AvoidProvider, ReleaseActivity, AcquireAgreement]
    assert m.state is S.pending


def test_vanishing_during_stopping_terminates_without_waiting() -> None:
    m = running()
    m.handle(lc.StopRequested())
    assert kinds(m.handle(lc.AgreementTerminatedByProvider())) == [AvoidProvider, ReleaseActivity]
    assert m.final
    # the shutdown handler's late result is no longer legal
    with pytest.raises(lc.IllegalTransition):
        m.handle(lc.ShutdownReturned())


def test_health_checks_replace_after_retries() -> None:
    m = running(LifecycleConfig(restart_policy="on-failure", healthcheck_retries=3))
    assert m.handle(lc.HealthCheckFailed("1")) == []
    assert m.handle(lc.HealthCheckFailed("2")) == []
    assert m.handle(lc.HealthCheckPassed()) == []  # resets the count
    assert m.handle(lc.HealthCheckFailed("1")) == []
    assert m.handle(lc.HealthCheckFailed("2")) == []
    actions = m.handle(lc.HealthCheckFailed("3"))
    assert kinds(actions) == [AvoidProvider, RunHandler]
    assert "unhealthy" in m.last_reason and m.state is S.stopping
    assert ScheduleRestart in kinds(m.handle(lc.ShutdownReturned()))


def test_stop_while_pending_or_starting_terminates_at_once() -> None:
    m = Lifecycle()
    m.handle(lc.Spawn())
    assert kinds(m.handle(lc.StopRequested())) == [ReleaseActivity]
    assert m.final
    m = Lifecycle()
    m.handle(lc.Spawn())
    m.handle(lc.ActivityReady())
    assert kinds(m.handle(lc.StopRequested())) == [ReleaseActivity]
    assert m.state is S.terminated


def test_stop_while_waiting_for_restart_cancels_it() -> None:
    m = running(LifecycleConfig(restart_policy="on-failure"))
    m.handle(lc.ActivityUnresponsive())
    assert m.restart_scheduled
    assert m.handle(lc.StopRequested()) == []
    assert m.final
    with pytest.raises(lc.IllegalTransition):
        m.handle(lc.RestartDue())


def test_runner_events_out_of_place_are_illegal() -> None:
    m = Lifecycle()
    for event in (lc.StartReturned(), lc.RunReturned(), lc.ShutdownReturned(), lc.RestartDue()):
        with pytest.raises(lc.IllegalTransition):
            m.handle(event)
    assert m.state is S.pending


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        LifecycleConfig(restart_policy="sometimes")


# ----------------------------------------------------------------------- stateful search

EVENTS = st.sampled_from(
    [
        lc.ActivityReady(),
        lc.StartReturned(),
        lc.StartRaised("x"),
        lc.RunReturned(),
        lc.RunRaised("x"),
        lc.ShutdownReturned(),
        lc.ShutdownRaised("x"),
        lc.StopRequested(),
        lc.ExpirationReached(),
        lc.ActivityUnresponsive(),
        lc.AgreementTerminatedByProvider(),
        lc.HealthCheckPassed(),
        lc.HealthCheckFailed(),
        lc.RestartDue(),
    ]
)


class LifecycleMachine(RuleBasedStateMachine):
    """Random event sequences never break the rules."""

    @rule(
        respawn=st.booleans(),
        policy=st.sampled_from(["never", "on-failure", "always"]),
        max_restarts=st.integers(0, 3),
        retries=st.integers(1, 3),
    )
    @precondition(lambda self: not hasattr(self, "m"))
    def create(self, respawn: bool, policy: str, max_restarts: int, retries: int) -> None:
        self.config = LifecycleConfig(
            respawn_unstarted_instances=respawn,
            restart_policy=policy,
            max_restarts=max_restarts,
            backoff=1.0,
            healthcheck_retries=retries,
        )
        self.m = Lifecycle(self.config)
        assert self.m.handle(lc.Spawn()) == [AcquireAgreement()]
        self.acquiring = True  # an acquisition is in flight
        self.shutdowns_this_attempt = 0
        self.starts_this_attempt = 0
        self.reached_running = False
        self.stop_requested = False
        self.finished = False

    @rule(event=EVENTS)
    @precondition(lambda self: hasattr(self, "m"))
    def feed(self, event: lc.Event) -> None:
        m = self.m
        before = m.state
        # the runner only delivers ActivityReady for an acquisition in flight
        if isinstance(event, lc.ActivityReady) and not self.acquiring:
            return
        try:
            actions = m.handle(event)
        except lc.IllegalTransition:
            assert m.state is before  # refused events change nothing
            return
        if self.finished:
            assert actions == [] and m.state is before, f"{event} changed a final instance"
            return
        if isinstance(event, lc.ActivityReady):
            self.acquiring = False
            self.shutdowns_this_attempt = 0
            self.starts_this_attempt = 0
            self.reached_running = False
        if isinstance(event, lc.StartReturned):
            self.reached_running = True
        if isinstance(event, lc.StopRequested | lc.ExpirationReached):
            self.stop_requested = True
        for action in actions:
            if action == RunHandler("shutdown"):
                self.shutdowns_this_attempt += 1
                assert self.reached_running, "shutdown only for instances that ran"
                assert self.shutdowns_this_attempt <= 1, "shutdown ran twice on one provider"
            if action == RunHandler("start"):
                self.starts_this_attempt += 1
                assert self.starts_this_attempt <= 1
            if isinstance(action, ScheduleRestart):
                assert self.config.restart_policy != "never"
                assert self.reached_running, "restarts are only for instances that ran"
                assert not self.stop_requested
                assert action.delay == self.config.backoff * 2 ** (action.attempt - 1)
            if isinstance(action, AcquireAgreement):
                self.acquiring = True
                if not isinstance(event, lc.RestartDue):
                    # a respawn: only for instances that never ran, when allowed
                    assert self.config.respawn_unstarted_instances
                    assert not self.reached_running
                    assert not self.stop_requested
        if m.final:
            self.finished = True

    @invariant()
    def sane(self) -> None:
        if not hasattr(self, "m"):
            return
        m = self.m
        assert isinstance(m.state, ServiceState)
        assert 0 <= m.restarts <= self.config.max_restarts
        if m.final:
            assert m.state in (S.terminated, S.unresponsive)
        if m.restart_scheduled:
            assert m.state in (S.terminated, S.unresponsive)
        assert m.health_failures <= self.config.healthcheck_retries


TestLifecycleMachine = LifecycleMachine.TestCase
TestLifecycleMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
