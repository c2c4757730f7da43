"""The plan of a change to a running deployment (supervisor/changes.py) and the requests
that ask for one (supervisor/reconcile_request.py, generations.py): pure, no engine."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.service import InstanceSnapshot
from golem_deploy.manifest.model import (
    Manifest,
    NetworkSpec,
    Payload,
    PortSpec,
    RunSpec,
    RunStep,
    ServiceSpec,
    UpdatePolicy,
)
from golem_deploy.supervisor.changes import Kind, Plan, ServiceChange, batches, plan
from golem_deploy.supervisor.generations import hidden
from golem_deploy.supervisor.journal import fold
from golem_deploy.supervisor.reconcile_request import ReconcileRefused, parse

IMAGE = Payload(image_hash="d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376")


def service(name: str, instances: int = 1, run: str = "date", **kw: object) -> ServiceSpec:
    steps = RunSpec(steps=(RunStep(("/bin/sh", "-c", run), shell=True),), every=5.0)
    return ServiceSpec(name=name, payload=IMAGE, instances=instances, run=steps, **kw)  # type: ignore[arg-type]


def manifest(*services: ServiceSpec, budget: str = "1", **kw: object) -> Manifest:
    return Manifest(
        path=Path("/m/deploy.yaml"),
        name="d",
        budget=Decimal(budget),
        services={s.name: s for s in services},
        **kw,  # type: ignore[arg-type]
    )


def by_name(p: Plan) -> dict[str, ServiceChange]:
    return {c.service: c for c in p.changes}


def test_the_same_manifest_plans_nothing() -> None:
    m = manifest(service("db"), service("web", 2, depends_on=("db",)))
    p = plan(m, m)
    assert p.empty
    assert [c.kind for c in p.changes] == [Kind.unchanged, Kind.unchanged]
    assert p.lines() == ["db: unchanged, 1 -> 1 instance", "web: unchanged, 2 -> 2 instances"]


def test_scaling_up_starts_the_next_indices() -> None:
    p = plan(manifest(service("web", 2)), manifest(service("web", 5)))
    web = by_name(p)["web"]
    assert (web.kind, web.start, web.stop, web.replace) == (Kind.scaled, (2, 3, 4), (), ())
    assert web.describe() == "web: scaled, 2 -> 5 instances: start web.2, web.3, web.4"


def test_scaling_down_stops_the_highest_index_first() -> None:
    web = by_name(plan(manifest(service("web", 5)), manifest(service("web", 1))))["web"]
    assert (web.kind, web.stop, web.start) == (Kind.scaled, (4, 3, 2, 1), ())


def test_a_changed_run_step_replaces_every_instance_that_stays() -> None:
    running = manifest(service("web", 3))
    wanted = manifest(service("web", 2, run="uptime", update=UpdatePolicy(parallelism=2)))
    web = by_name(plan(running, wanted))["web"]
    assert web.kind is Kind.replaced
    assert (web.replace, web.stop, web.parallelism, web.changed) == ((0, 1), (2,), 2, ("run",))
    assert web.describe() == (
        "web: replaced (run changed), 3 -> 2 instances: "
        "replace web.0, web.1 (2 at a time); stop web.2"
    )


def test_count_order_update_and_logs_are_not_a_spec_change() -> None:
    running = manifest(service("db"), service("web"))
    wanted = manifest(
        service("db"), service("web", 1, depends_on=("db",), update=UpdatePolicy(parallelism=3))
    )
    assert plan(running, wanted).empty


def test_added_and_removed_services_follow_depends_on() -> None:
    running = manifest(service("db"), service("web", depends_on=("db",)), service("old"))
    wanted = manifest(
        service("api", depends_on=("cache",)), service("cache"), service("db"), service("web")
    )
    p = plan(running, wanted)
    order = [(c.service, c.kind) for c in p.changes]
    assert order[0] == ("old", Kind.removed)
    names = [name for name, _ in order]
    assert names.index("cache") < names.index("api")
    assert by_name(p)["api"].start == (0,)
    assert by_name(p)["old"].stop == (0,)


def test_removed_dependants_go_before_what_they_depend_on() -> None:
    running = manifest(service("db"), service("web", 2, depends_on=("db",)))
    p = plan(running, manifest(service("other")))
    assert [c.service for c in p.changes[:2]] == ["web", "db"]
    assert by_name(p)["web"].stop == (1, 0)


def test_restart_replaces_only_the_named_instances() -> None:
    m = manifest(service("web", 3))
    web = by_name(plan(m, m, restart={"web": [2, 7]}))["web"]
    assert (web.kind, web.replace, web.changed) == (Kind.replaced, (2,), ())


def test_a_budget_below_what_was_spent_is_refused() -> None:
    p = plan(manifest(service("w")), manifest(service("w"), budget="0.5"), spent=Decimal("0.7"))
    assert not p.empty
    assert p.refused == ("the budget 0.5 GLM is below the 0.7 GLM already spent",)
    assert p.lines() == ["refused: the budget 0.5 GLM is below the 0.7 GLM already spent"]


def test_another_budget_is_taken_when_it_covers_what_was_spent() -> None:
    raised = plan(manifest(service("w")), manifest(service("w"), budget="2"), spent=Decimal("0.7"))
    assert not raised.refused and not raised.empty
    assert raised.budget == (Decimal("1"), Decimal("2"))
    assert raised.lines() == ["budget: 1 -> 2 GLM", "w: unchanged, 1 -> 1 instance"]
    lowered = plan(
        manifest(service("w")), manifest(service("w"), budget="0.7"), spent=Decimal("0.7")
    )
    assert not lowered.refused and lowered.budget == (Decimal("1"), Decimal("0.7"))
    same = plan(manifest(service("w")), manifest(service("w")))
    assert same.empty and same.budget is None


def test_another_network_range_or_ports_are_refused() -> None:
    web = service("web", ports=(PortSpec("127.0.0.1", 8080, 8000),))
    running = manifest(web, network=NetworkSpec("192.168.0.0/24"))
    moved = dataclasses.replace(web, ports=(PortSpec("127.0.0.1", 8081, 8000),))
    wanted = manifest(moved, budget="2", network=NetworkSpec("10.8.0.0/24"))
    reasons = plan(running, wanted).refused
    assert len(reasons) == 2
    assert "192.168.0.0/24" in reasons[0] and "10.8.0.0/24" in reasons[0]
    assert "forwarded ports" in reasons[1]


def test_plain_form_for_json() -> None:
    p = plan(manifest(service("web", 1)), manifest(service("web", 2)))
    assert p.plain() == {
        "refused": [],
        "empty": False,
        "budget": None,
        "services": [
            {
                "service": "web",
                "change": "scaled",
                "before": 1,
                "after": 2,
                "start": [1],
                "stop": [],
                "replace": [],
                "parallelism": 1,
                "changed": [],
            }
        ],
    }


# ---- properties --------------------------------------------------------------------------------

NAMES = ["a", "b", "c", "d"]


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
    specs = []
    for position, name in enumerate(names):
        earlier = names[:position]
        deps = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        specs.append(
            service(
                name,
                draw(st.integers(0, 6)),
                run=draw(st.sampled_from(["date", "uptime"])),
                depends_on=tuple(deps),
                update=UpdatePolicy(draw(st.integers(1, 3))),
            )
        )
    return manifest(*specs)


@given(manifests(), manifests())
def test_applying_a_plan_gives_the_wanted_instances(running: Manifest, wanted: Manifest) -> None:
    p = plan(running, wanted)
    assert not p.refused
    changes = by_name(p)
    assert set(changes) == set(running.services) | set(wanted.services)
    for name, change in changes.items():
        before = running.services[name].instances if name in running.services else 0
        after = wanted.services[name].instances if name in wanted.services else 0
        assert (change.before, change.after) == (before, after)
        indices = (set(range(before)) - set(change.stop)) | set(change.start)
        assert indices == set(range(after))
        assert list(change.stop) == sorted(change.stop, reverse=True)
        assert all(i >= before for i in change.start) and all(i >= after for i in change.stop)
        assert set(change.replace) <= set(range(min(before, after)))
        untouched = not (change.start or change.stop or change.replace)
        if name in running.services and name in wanted.services:
            # a spec change with no instance to replace still swaps the spec new ones get
            assert (untouched and not change.changed) == (change.kind is Kind.unchanged)
        else:  # a service of no instances is still added or removed
            assert change.kind is (Kind.added if name in wanted.services else Kind.removed)


@given(manifests(), manifests())
def test_a_plan_respects_depends_on(running: Manifest, wanted: Manifest) -> None:
    order = [c.service for c in plan(running, wanted).changes]
    kinds = [c.kind for c in plan(running, wanted).changes]
    removed = [i for i, k in enumerate(kinds) if k is Kind.removed]
    assert removed == list(range(len(removed)))  # removals come first
    for name, spec in wanted.services.items():
        for dependency in spec.depends_on:
            assert order.index(dependency) < order.index(name)
    for name in [order[i] for i in removed]:
        for other, spec in running.services.items():
            if name in spec.depends_on and other not in wanted.services:
                assert order.index(other) < order.index(name)


@given(manifests())
def test_a_manifest_against_itself_is_empty(m: Manifest) -> None:
    assert plan(m, m).empty


# ---- requests (supervisor/reconcile_request.py) ------------------------------------------------


def test_scale_and_restart_requests_name_running_services() -> None:
    current = manifest(service("web", 2), service("db"))
    wanted, restart = parse({"scale": {"web": 4}, "restart": ["db", "web.1"]}, current)
    assert wanted.services["web"].instances == 4 and wanted.services["db"].instances == 1
    assert restart == {"db": (0,), "web": (1,)}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scale": {"wbe": 2}}, "no service 'wbe' in deployment 'd' (did you mean 'web'?)"),
        ({"restart": ["web.2"]}, "web.2: web has instances 0 to 1"),
        ({"restart": ["web.x"]}, "web.x: web has instances 0 to 1"),
        ({"scale": {"web": -1}}, "scale: give SERVICE=COUNT with a count of 0 or more"),
        ({"restart": "web"}, "restart: give SERVICE or SERVICE.INDEX"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(body: dict[str, object], message: str) -> None:
    with pytest.raises(ReconcileRefused) as refused:
        parse(body, manifest(service("web", 2), service("db")))
    assert refused.value.message == message


# ---- which instances the snapshot shows across a change (supervisor/generations.py) ----------


def _view(index: int, state: ServiceState, *, restart: bool = False) -> InstanceSnapshot:
    return InstanceSnapshot(
        service="web",
        index=index,
        state=state,
        provider_id=None,
        provider_name=None,
        agreement_id=None,
        activity_id=None,
        started_at=None,
        restarts=0,
        cost=Decimal(0),
        last_output="",
        reason="",
        restart_scheduled=restart,
    )


def test_instances_a_change_ended_are_hidden_live_ones_never() -> None:
    ended, running = ServiceState.terminated, ServiceState.running
    assert hidden(_view(3, ended), 2, shown=False)  # scaled away
    assert not hidden(_view(3, running), 2, shown=False)  # still stopping: shown
    assert not hidden(_view(1, ended), 2, shown=False)  # ended by itself: shown
    assert hidden(_view(1, ended), 2, shown=True)  # a failed replacement: the old one shows
    assert not hidden(_view(3, ended, restart=True), 2, shown=False)  # a restart comes


def test_replacements_run_parallelism_at_a_time() -> None:
    assert batches((0, 1, 2, 3, 4), 2) == [(0, 1), (2, 3), (4,)]
    assert batches((0, 1), 1) == [(0,), (1,)]
    assert batches((), 3) == []


def test_the_services_a_change_leaves_are_what_the_journal_folds_to() -> None:
    records = [
        {"ts": 1, "kind": "DeploymentStarted", "services": [{"name": "web", "instances": 2}]},
        {
            "ts": 2,
            "kind": "ReconcileFinished",
            "ok": True,
            "services": [{"name": "web", "instances": 5}, {"name": "cache", "instances": 1}],
        },
    ]
    assert fold(records).services == [("web", 5), ("cache", 1)]


def test_scaling_beyond_the_network_range_or_onto_a_host_name_is_refused() -> None:
    net = NetworkSpec("10.8.0.0/29")  # 6 hosts: the requestor and 5 instances
    running = manifest(service("web", 2), service("web-3"), network=net)
    fits = manifest(service("web", 3), service("web-3"), network=net)
    assert plan(running, fits).refused == ()
    too_many = manifest(service("web", 5), service("web-3"), network=net)
    assert plan(running, too_many).refused == (
        "the network 10.8.0.0/29 holds 6 hosts, but the requestor and 6 instances need 7",
        "services 'web' and 'web-3' would both answer to host name 'web-3'",
    )
