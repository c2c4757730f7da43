"""A.5, pure parts: yapapi-shaped events made from the engine's, `add_event_consumer`'s
class/name filter, a failing consumer never reaching the engine, and the summary log."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import pytest

from golem_deploy.engine import EngineError, Golem, Service, ServiceState, log_summary
from golem_deploy.engine import events as ev
from golem_deploy.engine import yapapi_events as ye
from golem_deploy.engine.cluster import Cluster
from golem_deploy.engine.dispatch import EventDispatcher, YapapiEvents, event_classes
from golem_deploy.engine.service import record_of


class Web(Service):
    pass


@dataclass
class FakeCluster:
    """What YapapiEvents reads of a Cluster: its id, service name and instances."""

    id: str
    service_name: str
    instances: list[Service] = field(default_factory=list)


def _cluster(cluster_id: str, n: int) -> FakeCluster:
    cluster = FakeCluster(cluster_id, "Web")
    for index in range(n):
        instance = Web()
        record_of(instance).index = index
        cluster.instances.append(instance)
    return cluster


class Translator:
    """YapapiEvents, told that events come from `cluster` (as the Golem tells it)."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.inner = YapapiEvents("public")
        self.cluster = cast(Cluster, cluster)

    def translate(self, event: ev.EngineEvent) -> list[ye.Event]:
        return self.inner.translate(event, self.cluster)


def _translator(cluster: FakeCluster) -> Translator:
    return Translator(cluster)


def _agreement(index: int = 0, agreement_id: str = "agr-1") -> ev.AgreementCreated:
    return ev.AgreementCreated(
        service="Web", index=index, agreement_id=agreement_id, provider_id="0xp", provider_name="p1"
    )


def test_event_classes_take_classes_and_names_yapapi_names_first() -> None:
    assert event_classes(["ServiceStateChanged", ev.InstanceStateChanged]) == (
        ye.ServiceStateChanged,
        ev.InstanceStateChanged,
    )
    # both families have an AgreementCreated: a yapapi program means yapapi's
    assert event_classes(["AgreementCreated", "InstanceRestarted"]) == (
        ye.AgreementCreated,
        ev.InstanceRestarted,
    )
    for bad in ("NoSuchEvent", "Job", int):
        with pytest.raises(EngineError, match="is not an event class"):
            event_classes([bad])  # type: ignore[list-item]


def test_a_failing_consumer_is_logged_and_the_others_still_get_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = EventDispatcher()
    got: list[object] = []

    def broken(event: Any) -> None:
        raise RuntimeError("consumer bug")

    dispatcher.add(broken, (ye.Event,))
    dispatcher.add(got.append, (ye.ShutdownFinished,))
    dispatcher.add(got.append, (ev.EngineEvent,))
    shutdown = ye.ShutdownFinished()
    with caplog.at_level(logging.ERROR, "golem_deploy.engine.dispatch"):
        dispatcher.dispatch(shutdown)  # must not raise
    assert got == [shutdown]
    assert "failed on ShutdownFinished" in caplog.text and "consumer bug" in caplog.text


def test_agreement_and_activity_events_carry_yapapis_attributes() -> None:
    t = _translator(_cluster("c1", 1))
    [created] = t.translate(_agreement())
    assert isinstance(created, ye.AgreementCreated)
    assert (created.job_id, created.agr_id, created.provider_id) == ("c1", "agr-1", "0xp")
    assert created.provider_info is not None and created.provider_info.name == "p1"
    activity = ev.ActivityCreated(service="Web", index=0, activity_id="act-1", agreement_id="agr-1")
    confirmed, made = t.translate(activity)
    assert isinstance(confirmed, ye.AgreementConfirmed) and isinstance(made, ye.ActivityCreated)
    assert made.activity is not None and made.activity.id == "act-1"
    # a second activity on the same agreement does not confirm it again
    assert [type(e) for e in t.translate(activity)] == [ye.ActivityCreated]
    [invoice] = t.translate(
        ev.InvoiceAccepted(
            invoice_id="inv", agreement_id="agr-1", amount=Decimal("0.0100"), new_spend=Decimal(0)
        )
    )
    assert isinstance(invoice, ye.InvoiceAccepted) and invoice.amount == "0.01"
    [failed] = t.translate(
        ev.PaymentRejected(
            kind="debit_note",
            document_id="dn",
            agreement_id="agr-1",
            amount=Decimal(1),
            reason="over budget",
        )
    )
    assert isinstance(failed, ye.PaymentFailed)
    assert "debit note dn not accepted: over budget" in str(failed.exception)
    [ended] = t.translate(
        ev.AgreementTerminated(agreement_id="agr-1", provider_id="0xp", by="provider", reason="x")
    )
    assert isinstance(ended, ye.AgreementTerminated)
    assert ended.reason == {"message": "x", "terminator": "provider"}
    # an agreement the translator never saw made makes nothing (no guessing)
    unknown = ev.AgreementTerminated(
        agreement_id="zz", provider_id="0xp", by="requestor", reason=""
    )
    assert t.translate(unknown) == []


def test_state_changes_carry_the_service_object_and_its_error() -> None:
    cluster = _cluster("c1", 2)
    t = _translator(cluster)
    t.translate(_agreement(index=1))
    instance = cluster.instances[1]
    record = record_of(instance)
    record.agreement_id, record.activity_id = "agr-1", "act-1"
    try:
        raise ValueError("handler bug")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    changed, finished = t.translate(
        ev.InstanceStateChanged(
            service="Web",
            index=1,
            old=ServiceState.running,
            new=ServiceState.terminated,
            reason="run failed",
        )
    )
    assert isinstance(changed, ye.ServiceStateChanged) and isinstance(finished, ye.ServiceFinished)
    assert changed.service is instance and finished.service is instance
    assert (changed.old, changed.new) == (ServiceState.running, ServiceState.terminated)
    assert changed.agr_id == "agr-1" and changed.activity is not None
    assert isinstance(changed.exception, ValueError)
    assert "exception=ValueError('handler bug')" in str(changed)
    assert "timestamp" not in str(changed)


def test_payment_events_find_their_job_through_the_agreement() -> None:
    first, second = _cluster("c1", 1), _cluster("c2", 1)  # one service class, two clusters
    t = YapapiEvents("public")
    t.translate(_agreement(agreement_id="agr-a"), cast(Cluster, first))
    t.translate(_agreement(agreement_id="agr-b"), cast(Cluster, second))
    note = ev.DebitNoteAccepted(
        debit_note_id="dn",
        agreement_id="agr-a",
        activity_id="act",
        amount=Decimal(1),
        total_due=Decimal(1),
    )
    [accepted] = t.translate(note, None)  # the payment loop is the Golem's, not a cluster's
    assert isinstance(accepted, ye.DebitNoteAccepted)
    assert accepted.job_id == "c1" and accepted.amount == "1"


def test_command_output_names_the_running_command() -> None:
    t = _translator(_cluster("c1", 1))
    [started] = t.translate(ev.CommandStarted(service="Web", index=0, command="run /bin/ls"))
    [err] = t.translate(ev.CommandOutput(service="Web", index=0, stream="stderr", text="oops\n"))
    [out] = t.translate(ev.CommandOutput(service="Web", index=0, stream="stdout", text="a\n"))
    [done] = t.translate(
        ev.CommandFinished(
            service="Web", index=0, command="run /bin/ls", return_code=2, message="x"
        )
    )
    assert isinstance(started, ye.CommandStarted)
    assert isinstance(err, ye.CommandStdErr) and (err.command, err.output) == (
        "run /bin/ls",
        "oops\n",
    )
    assert isinstance(out, ye.CommandStdOut)
    assert isinstance(done, ye.CommandExecuted) and not done.success and done.message == "x"


def test_golem_without_a_consumer_logs_yapapis_summary(caplog: pytest.LogCaptureFixture) -> None:
    golem = Golem(budget=1)
    got: list[ye.Event] = []
    golem.add_event_consumer(got.append, ["JobStarted"])
    job = ye.Job("c1", "Web")
    ref = ye.AgreementRef("agr-1", "0xp", ye.ProviderInfo("p1"))
    with caplog.at_level(logging.INFO, "golem_deploy.engine.summary"):
        # what the Golem hands its added consumers
        golem._extra.dispatch(ye.JobStarted(job=job))
        golem._extra.dispatch(ye.AgreementCreated(job=job, agreement=ref))
        golem._extra.dispatch(ye.AgreementConfirmed(job=job, agreement=ref))
        invoice = ye.InvoiceRef("inv", "0.25")
        golem._extra.dispatch(ye.InvoiceAccepted(job=job, agreement=ref, invoice=invoice))
        golem._extra.dispatch(ye.JobFinished(job=job))
        golem._extra.dispatch(ye.ShutdownFinished())
    assert [type(e) for e in got] == [ye.JobStarted]
    text = caplog.text
    for line in (
        "Agreement proposed to provider 'p1' (0xp)",
        "Agreement confirmed by provider 'p1'",
        "Accepted invoice from 'p1', amount: 0.25",
        "Job finished in",
        "Negotiated 1 agreement with 1 provider",
        "Total cost: 0.25",
        "Golem engine has shut down",
    ):
        assert line in text, line


def test_a_golem_with_an_engine_consumer_adds_no_summary() -> None:
    golem = Golem(budget=1, event_consumer=lambda e: None)
    assert not golem._extra
    summary = log_summary()
    summary(ye.ShutdownFinished())  # usable on its own, as yapapi's


@dataclass(frozen=True, kw_only=True, repr=False)
class ActivityEvaluated(ye.ActivityEvent):
    """yapapi's custom-event example, as a dataclass."""

    activity_score: float


def test_work_context_emit_fills_a_yapapi_events_context_as_yapapi() -> None:
    from golem_deploy.engine import WorkContext

    got: list[object] = []
    ref = ye.AgreementRef("agr", "0xp", ye.ProviderInfo("p"))
    job = ye.Job("c1", "Web")
    ctx = WorkContext(
        activity_id="act",
        agreement_id="agr",
        provider_id="0xp",
        provider_name="p",
        emit=got.append,
        event_context={"job": job, "agreement": ref, "activity": ye.ActivityRef("act")},
    )
    made = ctx.emit(ActivityEvaluated, activity_score=7.5)  # type: ignore[arg-type]
    assert got == [made] and isinstance(made, ActivityEvaluated) and made.activity_score == 7.5
    assert (made.job_id, made.agr_id) == ("c1", "agr")
    assert made.activity is not None and made.activity.id == "act"
    # engine events have none of those fields: nothing is added to them
    out = ctx.emit(ev.CommandOutput, service="s", index=0, stream="note", text="hi")
    assert isinstance(out, ev.CommandOutput)
    assert event_classes(["ActivityEvent"]) == (ye.ActivityEvent,)
