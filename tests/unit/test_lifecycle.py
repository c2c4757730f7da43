"""The instance lifecycle machine: every rule, plus a hypothesis stateful search.

The machine is pure, so these tests drive it with events and check the state and the
actions it asks for — exactly what the cluster runner executes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

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
    return [type(a) for a in actions if not isinstance(a, lc.ReportHealth)]


def failed(m: Lifecycle, event: lc.Event) -> list[lc.Action]:
    """A handler failure: the machine first asks whether the provider is still there and
    changes nothing; the answer "alive" makes it the service's failure."""
    before = m.state
    assert kinds(m.handle(event)) == [lc.CheckProvider]
    assert m.state is before and m.checking_provider
    return m.handle(lc.ProviderAlive())


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
    actions = failed(m, lc.StartRaised("boom"))
    assert kinds(actions) == [AvoidProvider, ReleaseActivity, AcquireAgreement]
    assert actions[-1] == AcquireAgreement(respawn=1)
    assert m.state is S.pending and m.respawns == 1 and m.restarts == 0
    assert "boom" in m.last_reason


def test_reset_runs_before_every_acquisition_but_the_first() -> None:
    assert not AcquireAgreement().reset
    assert AcquireAgreement(respawn=1).reset and AcquireAgreement(restart=1).reset


def test_start_failure_without_respawn_terminates() -> None:
    m = Lifecycle(LifecycleConfig(respawn_unstarted_instances=False))
    m.handle(lc.Spawn())
    m.handle(lc.ActivityReady())
    assert kinds(failed(m, lc.StartRaised("boom"))) == [AvoidProvider, ReleaseActivity]
    assert m.state is S.terminated and m.final


def test_start_failure_never_restarts_even_with_restart_policy() -> None:
    """Unstarted instances are governed by respawn, not by the restart policy."""
    m = Lifecycle(LifecycleConfig(respawn_unstarted_instances=False, restart_policy="always"))
    m.handle(lc.Spawn())
    m.handle(lc.ActivityReady())
    assert ScheduleRestart not in kinds(failed(m, lc.StartRaised("x")))
    assert m.final


def test_run_failure_runs_shutdown_then_terminates_without_restart_by_default() -> None:
    m = running()
    assert failed(m, lc.RunRaised("crash")) == [RunHandler("shutdown")]
    assert m.state is S.stopping
    assert kinds(m.handle(lc.ShutdownReturned())) == [ReleaseActivity]
    assert m.final


def test_on_failure_restarts_with_doubling_backoff_up_to_max() -> None:
    m = running(LifecycleConfig(restart_policy="on-failure", max_restarts=2, backoff=5.0))
    delays = []
    for _ in range(2):
        failed(m, lc.RunRaised("crash"))
        actions = m.handle(lc.ShutdownReturned())
        restart = [a for a in actions if isinstance(a, ScheduleRestart)]
        assert len(restart) == 1
        delays.append(restart[0].delay)
        assert not m.final and m.restart_scheduled
        expected = [AcquireAgreement(restart=m.restarts + 1)]
        assert m.handle(lc.RestartDue()) == expected
        assert m.state is S.pending
        m.handle(lc.ActivityReady())
        m.handle(lc.StartReturned())
    assert delays == [5.0, 10.0]
    assert m.restarts == 2
    failed(m, lc.RunRaised("crash again"))
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
    assert ScheduleRestart in kinds(failed(m, lc.ShutdownRaised("x")))


@pytest.mark.parametrize("policy", ["never", "on-failure", "always"])
def test_stop_and_expiration_never_restart(policy: str) -> None:
    for event in (lc.StopRequested(), lc.ExpirationReached()):
        m = running(LifecycleConfig(restart_policy=policy))
        assert m.handle(event) == [RunHandler("shutdown")]
        assert ScheduleRestart not in kinds(failed(m, lc.ShutdownRaised("x")))
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


def test_a_misbehaving_provider_is_ended_by_us_avoided_and_replaced() -> None:
    m = running(LifecycleConfig(restart_policy="on-failure", backoff=2.0))
    actions = m.handle(lc.ProviderMisbehaved("too many debit notes"))
    assert kinds(actions) == [AvoidProvider, ReleaseActivity, ScheduleRestart]
    release = next(a for a in actions if isinstance(a, ReleaseActivity))
    assert release.terminate_agreement and release.expect_invoice  # we end it; it invoices
    assert m.state is S.terminated and RunHandler("shutdown") not in actions
    assert m.handle(lc.ProviderMisbehaved("again")) == []  # already released
    m = Lifecycle()
    m.handle(lc.Spawn())
    assert m.handle(lc.ProviderMisbehaved()) == []  # pending: no activity sends notes yet


def test_provider_vanishing_is_replaced_under_on_failure() -> None:
    m = running(LifecycleConfig(restart_policy="on-failure", backoff=2.0))
    actions = m.handle(lc.ActivityUnresponsive("gone"))
    assert kinds(actions) == [AvoidProvider, ReleaseActivity, ScheduleRestart]
    assert m.state is S.unresponsive and not m.final
    assert m.handle(lc.RestartDue()) == [AcquireAgreement(restart=1)]
    assert m.restarts == 1


def test_vanishing_during_start_respawns() -> None:
    m = Lifecycle()
    m.handle(lc.Spawn())
    m.handle(lc.ActivityReady())
    actions = m.handle(lc.ActivityUnresponsive("gone"))
    assert kinds(actions) == [AvoidProvider, ReleaseActivity, AcquireAgreement]
    assert m.state is S.pending


@pytest.mark.parametrize("policy", ["never", "on-failure", "always"])
def test_a_lost_local_network_is_a_vanishing_that_avoids_nobody(policy: str) -> None:
    """The supervisor's local network died under the instance (NetworkLost): no shutdown,
    no invoice expected, the restart policy decides -- and the provider is not avoided,
    since it comes back with the restarted network."""
    m = running(LifecycleConfig(restart_policy=policy, backoff=2.0))
    actions = m.handle(lc.NetworkLost("the requestor yagna daemon died"))
    assert RunHandler("shutdown") not in actions
    assert AvoidProvider not in kinds(actions)
    assert (
        ReleaseActivity("the requestor yagna daemon died", lc.ReleaseCause.network_lost) in actions
    )
    assert not ReleaseActivity("x", lc.ReleaseCause.network_lost).expect_invoice
    assert m.state is S.unresponsive
    assert m.last_reason == "the requestor yagna daemon died"
    if policy == "never":
        assert m.final and ScheduleRestart not in kinds(actions)
    else:
        assert not m.final and ScheduleRestart in kinds(actions)
        assert m.handle(lc.RestartDue()) == [AcquireAgreement(restart=1)]


def test_a_lost_local_network_while_starting_respawns_while_acquiring_is_nothing() -> None:
    m = Lifecycle()
    m.handle(lc.Spawn())
    assert m.handle(lc.NetworkLost()) == []  # the acquisition in flight fails by itself
    assert m.state is S.pending
    m.handle(lc.ActivityReady())
    actions = m.handle(lc.NetworkLost())
    assert kinds(actions) == [ReleaseActivity, AcquireAgreement]
    assert m.state is S.pending and m.respawns == 1


def test_a_lost_local_network_cuts_a_running_shutdown_and_is_nothing_once_final() -> None:
    m = running()
    m.handle(lc.StopRequested())
    assert kinds(m.handle(lc.NetworkLost())) == [ReleaseActivity]
    assert m.state is S.terminated and m.final
    assert m.handle(lc.NetworkLost()) == []


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
    report = lc.ReportHealth
    assert m.handle(lc.HealthCheckFailed("1")) == [report(False, 1, "1")]
    assert m.handle(lc.HealthCheckFailed("2")) == [report(False, 2, "2")]
    assert m.handle(lc.HealthCheckPassed()) == [report(True, 0, "ok")]  # resets the count
    assert kinds(m.handle(lc.HealthCheckFailed("1"))) == []
    assert kinds(m.handle(lc.HealthCheckFailed("2"))) == []
    actions = failed(m, lc.HealthCheckFailed("3"))
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
    assert m.handle(lc.RestartDue()) == []  # the timer still fires: a documented race
    assert m.final and m.restarts == 0


def test_runner_events_out_of_place_are_illegal() -> None:
    m = Lifecycle()
    for event in (
        lc.StartReturned(),
        lc.RunReturned(),
        lc.ShutdownReturned(),
        lc.RestartDue(),
        lc.ProviderAlive(),
        lc.ActivityReady(),  # not spawned: nothing is being acquired
    ):
        with pytest.raises(lc.IllegalTransition):
            m.handle(event)
    assert m.state is S.pending
    m = running()
    with pytest.raises(lc.IllegalTransition):
        m.handle(lc.ProviderAlive())  # no check was asked for
    m.handle(lc.RunRaised("x"))
    with pytest.raises(lc.IllegalTransition):
        m.handle(lc.ShutdownReturned())


def test_a_run_failure_caused_by_the_vanished_provider_is_the_provider_vanishing() -> None:
    """Rows 4a/4b: the run step fails first, yagna's verdict comes second. The machine
    waits for the check, so the instance goes running -> unresponsive and shutdown is never
    attempted on the dead provider, and no invoice is expected from it."""
    m = running(LifecycleConfig(restart_policy="on-failure", backoff=1.0))
    assert kinds(m.handle(lc.RunRaised("exec failed"))) == [lc.CheckProvider]
    assert m.state is S.running
    assert m.handle(lc.StopRequested()) == []  # decided after the check
    assert m.handle(lc.HealthCheckFailed()) == []  # the check decides
    actions = m.handle(lc.ActivityUnresponsive("ExeUnit gone"))
    assert RunHandler("shutdown") not in actions
    assert m.state is S.unresponsive
    release = next(a for a in actions if isinstance(a, ReleaseActivity))
    assert release.cause is lc.ReleaseCause.vanished and not release.expect_invoice
    assert ScheduleRestart not in kinds(actions)  # the stop came first
    assert m.final


def test_release_says_who_ended_the_work() -> None:
    m = running()
    m.handle(lc.StopRequested())
    (release,) = m.handle(lc.ShutdownReturned())
    assert isinstance(release, ReleaseActivity)
    assert release.cause is lc.ReleaseCause.requestor
    assert release.expect_invoice and release.terminate_agreement
    m = running()
    actions = m.handle(lc.AgreementTerminatedByProvider("bye"))
    release = next(a for a in actions if isinstance(a, ReleaseActivity))
    assert release.expect_invoice and not release.terminate_agreement


def test_restarts_are_actions_of_their_own() -> None:
    m = running(LifecycleConfig(restart_policy="always", backoff=1.0))
    m.handle(lc.RunReturned())
    (restart,) = [a for a in m.handle(lc.ShutdownReturned()) if isinstance(a, ScheduleRestart)]
    assert restart.reason == "run finished"
    assert m.handle(lc.RestartDue()) == [AcquireAgreement(restart=1)]
    assert m.transition_reason == "restarting"


def test_every_race_is_a_no_op() -> None:
    m = running()
    m.handle(lc.StopRequested())
    assert m.handle(lc.RunReturned()) == [] and m.handle(lc.HealthCheckFailed()) == []
    assert m.handle(lc.ExpirationReached()) == []
    m.handle(lc.ShutdownReturned())
    for event in (lc.StopRequested(), lc.ActivityUnresponsive(), lc.HealthCheckPassed()):
        assert m.handle(event) == [] and m.state is S.terminated
    m = Lifecycle()
    m.handle(lc.Spawn())
    assert m.handle(lc.AgreementTerminatedByProvider()) == []
    assert m.state is S.pending


def test_the_docs_diagram_is_the_table() -> None:
    """docs/engine.md shows TRANSITIONS and RACES exactly as lifecycle.py renders them."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()
    assert f"```mermaid\n{lc.render_mermaid()}```" in doc
    assert lc.render_races() in doc


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
        lc.NetworkLost(),
        lc.ProviderMisbehaved(),
        lc.ProviderAlive(),
        lc.HealthCheckPassed(),
        lc.HealthCheckFailed(),
        lc.RestartDue(),
    ]
)
EDGES = {(t.source, t.target, e) for t in lc.TRANSITIONS for e in t.events}
CONFIGS = st.builds(
    LifecycleConfig,
    respawn_unstarted_instances=st.booleans(),
    restart_policy=st.sampled_from(["never", "on-failure", "always"]),
    max_restarts=st.integers(0, 3),
    backoff=st.just(1.0),
    healthcheck_retries=st.integers(1, 3),
)


def check_edge(before: ServiceState, event: lc.Event, m: Lifecycle) -> None:
    """Every state change the code makes is a row of TRANSITIONS (the documented diagram)."""
    if m.state is not before:
        edge = (before, m.state, type(event).__name__)
        assert edge in EDGES, f"{edge} is not in lifecycle.TRANSITIONS"


class LifecycleMachine(RuleBasedStateMachine):
    """Random event sequences, possible or not, never break the rules."""

    @rule(config=CONFIGS)
    @precondition(lambda self: not hasattr(self, "m"))
    def create(self, config: LifecycleConfig) -> None:
        self.config = config
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
        check_edge(before, event, m)
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
                assert action.reset, "every acquisition after the first resets the instance"
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


class RunnerModel(RuleBasedStateMachine):
    """The machine driven the way the instance runner drives it, with the provider able to
    vanish at any moment: handlers, the watcher and the provider check are tasks of one
    provider attempt, each delivering its event in any order; releasing the attempt cancels
    them (the runner drops their late events); stop, expiration and the restart timer come
    from outside at any time. What must hold in EVERY interleaving:

    - the machine never calls an event illegal (every real race is a documented no-op);
    - once anything caused by the vanished provider reached the machine (a step failing on
      it, the watcher's verdict), shutdown is never started on it and the instance never
      enters stopping: in particular a run step failing first, because the provider is
      gone, does not count as the service failing (rows 4a/4b of the fault matrix);
    - a release of a vanished provider's work that follows anything but a stop expects no
      invoice.
    """

    @initialize(config=CONFIGS)
    def create(self, config: LifecycleConfig) -> None:
        self.m = Lifecycle(config)
        self.handlers: set[str] = set()  # running handler tasks of the live attempt
        self.acquiring = False
        self.watching = False
        self.checking = False  # a CheckProvider task is out
        self.timers = 0  # restart timers that have not fired yet
        self.has_activity = False
        self.dead = False  # the live attempt's provider vanished
        self.told = False  # ... and the machine has been fed something caused by that
        self.apply(lc.Spawn())

    def apply(self, event: lc.Event) -> None:
        m = self.m
        before = m.state
        actions = m.handle(event)  # IllegalTransition fails the test
        check_edge(before, event, m)
        if self.told and before is not S.stopping:
            assert m.state is not S.stopping, "shutdown path taken on a vanished provider"
        for action in actions:
            match action:
                case lc.AcquireAgreement():
                    self.acquiring = True
                case lc.RunHandler(name=name):
                    assert not (self.told and name == "shutdown"), "shutdown on a lost provider"
                    self.handlers.add(name)
                    self.watching = self.watching or name == "start"
                case lc.CheckProvider():
                    self.checking = True
                case lc.ReleaseActivity(cause=cause):
                    if self.dead and not isinstance(event, lc.StopRequested | lc.ExpirationReached):
                        assert cause is not lc.ReleaseCause.requestor, (event, cause)
                    # the attempt is over: its tasks are cancelled, a new provider is fresh
                    self.handlers.clear()
                    self.acquiring = self.watching = self.checking = False
                    self.has_activity = self.dead = self.told = False
                case lc.ScheduleRestart():
                    self.timers += 1

    # ------------------------------------------------------------ the attempt's tasks

    @precondition(lambda self: self.acquiring)
    @rule()
    def activity_created(self) -> None:
        self.acquiring = False
        self.has_activity = True
        self.apply(lc.ActivityReady())

    @precondition(lambda self: bool(self.handlers))
    @rule(data=st.data(), ok=st.booleans())
    def handler_ends(self, data: st.DataObject, ok: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.handlers)))
        self.handlers.discard(name)
        ok = ok and not self.dead  # on a vanished provider every step fails
        self.told = self.told or self.dead
        events: dict[str, lc.Event] = {
            "start": lc.StartReturned() if ok else lc.StartRaised("x"),
            "run": lc.RunReturned() if ok else lc.RunRaised("x"),
            "shutdown": lc.ShutdownReturned() if ok else lc.ShutdownRaised("x"),
        }
        self.apply(events[name])

    @precondition(lambda self: self.watching)
    @rule(ok=st.booleans())
    def health_check(self, ok: bool) -> None:
        # By the lifecycle's rule only the LAST allowed failure makes the machine suspect the
        # provider (an earlier one is reported, nothing more: a flaky check is not a provider
        # loss; see test_health_checks_replace_after_retries). So a failure is news of the
        # vanished provider for the machine only when it is that last one.
        last = self.m.health_failures + 1 >= self.m.config.healthcheck_retries
        self.told = self.told or (self.dead and last)
        self.apply(lc.HealthCheckPassed() if ok and not self.dead else lc.HealthCheckFailed())

    @precondition(lambda self: self.watching and self.dead)
    @rule()
    def watcher_sees_it_gone(self) -> None:
        self.watching = False
        self.told = True
        self.apply(lc.ActivityUnresponsive("activity unresponsive"))

    @precondition(lambda self: self.checking)
    @rule()
    def check_answers(self) -> None:
        self.checking = False
        self.apply(lc.ActivityUnresponsive("ExeUnit gone") if self.dead else lc.ProviderAlive())

    @precondition(lambda self: self.has_activity and not self.dead)
    @rule()
    def provider_vanishes(self) -> None:
        self.dead = True

    # -------------------------------------------------------------------- from outside

    @rule()
    def local_network_dies(self) -> None:
        """The supervisor's local network died and took every activity with it: the
        supervisor tells every instance at once, whatever it is doing."""
        self.dead = self.has_activity
        self.told = self.has_activity
        self.apply(lc.NetworkLost("the local network died"))

    @rule(expire=st.booleans())
    def stop(self, expire: bool) -> None:
        self.apply(lc.ExpirationReached() if expire else lc.StopRequested())

    @precondition(lambda self: self.timers > 0)
    @rule()
    def restart_timer_fires(self) -> None:
        self.timers -= 1
        self.apply(lc.RestartDue())

    @invariant()
    def sane(self) -> None:
        if hasattr(self, "m") and self.m.final:
            assert not self.handlers and not self.checking


TestRunnerModel = RunnerModel.TestCase
TestRunnerModel.settings = settings(max_examples=400, stateful_step_count=50, deadline=None)
