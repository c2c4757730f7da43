"""`Golem.add_event_consumer`: yapapi's extra event consumers, and the yapapi-shaped events
they receive.

Two kinds of consumer, on purpose. The `event_consumer` given to `Golem` gets the engine's
own events synchronously and a failure there stops the deployment (a supervisor's journal
must not silently stop recording). Consumers added with `add_event_consumer` are yapapi's:
each gets the events of the classes it asked for (yapapi-shaped ones from
engine/yapapi_events.py, engine events, or both), and one that raises is logged and skipped
— it never stops the deployment, as in yapapi. They are called synchronously, in order,
right after the engine's own consumer (yapapi queues them on a task; calling them in place
keeps their order with the engine's and needs no task to drain on exit).

`YapapiEvents` makes the yapapi-shaped events from the engine's. The Golem tells it which
cluster an event comes from (each cluster emits through its own context), so an event that
names an instance by (service name, index) is given that cluster's Service object; payment
events name their agreement, whose cluster is known from its AgreementCreated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import cast

from golem_deploy.engine import events as ev
from golem_deploy.engine import yapapi_events as ye
from golem_deploy.engine.cluster import Cluster
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.run_args import EngineError
from golem_deploy.engine.service import Service, record_of

__all__ = ["AnyEvent", "EventConsumer", "EventDispatcher", "YapapiEvents", "event_classes"]

log = logging.getLogger(__name__)

AnyEvent = ye.Event | ev.EngineEvent
#: A consumer of yapapi-shaped events, of engine events, or of both.
EventConsumer = (
    Callable[[ye.Event], None] | Callable[[ev.EngineEvent], None] | Callable[[AnyEvent], None]
)
_Deliver = Callable[[AnyEvent], None]
EventClass = type[ye.Event] | type[ev.EngineEvent]
_FINAL = (ServiceState.terminated, ServiceState.unresponsive)


def event_classes(classes_or_names: Iterable[EventClass | str]) -> tuple[EventClass, ...]:
    """yapapi's argument: event classes, or their names. A name is looked up among the
    yapapi-shaped events first (what a yapapi program means by "AgreementCreated"), then
    the engine's own (`InstanceStateChanged`, ...)."""
    found: list[EventClass] = []
    for item in classes_or_names:
        cls = (
            (getattr(ye, item, None) or getattr(ev, item, None)) if isinstance(item, str) else item
        )
        if not (
            isinstance(cls, type) and (issubclass(cls, ye.Event) or issubclass(cls, ev.EngineEvent))
        ):
            raise EngineError(
                f"{item!r} is not an event class",
                hint="give classes (or class names) of golem_deploy.engine.yapapi_events "
                "or golem_deploy.engine.events",
            )
        found.append(cls)
    return tuple(found)


class EventDispatcher:
    """The consumers added by `add_event_consumer`, each with the classes it wants."""

    def __init__(self) -> None:
        self._consumers: list[tuple[_Deliver, tuple[EventClass, ...]]] = []

    def add(self, consumer: EventConsumer, classes: tuple[EventClass, ...]) -> None:
        # it is only ever given events of the classes it asked for
        self._consumers.append((cast(_Deliver, consumer), classes))

    def __bool__(self) -> bool:
        return bool(self._consumers)

    def dispatch(self, event: AnyEvent) -> None:
        """Hand `event` to every consumer that asked for its class; a consumer's exception
        is logged with its traceback and goes no further."""
        for consumer, classes in list(self._consumers):
            if not isinstance(event, classes):
                continue
            try:
                consumer(event)
            except Exception:
                log.exception(
                    "event consumer %r failed on %s (ignored: the deployment goes on)",
                    consumer,
                    type(event).__name__,
                )


def _error(message: str) -> ye.ExcInfo:
    """An exc_info for an error the engine reports as text (no traceback to give)."""
    error = EngineError(message)
    return (type(error), error, None)


def _amount(amount: Decimal) -> str:
    return ye.amount_text(amount)


class YapapiEvents:
    """Makes yapapi-shaped events from the engine's (see the module docstring)."""

    def __init__(self, subnet: str) -> None:
        self._subnet = subnet
        self._agreements: dict[str, tuple[ye.Job, ye.AgreementRef]] = {}
        self._confirmed: set[str] = set()
        self._commands: dict[tuple[str, int], str] = {}  # (cluster, index) -> command running

    @staticmethod
    def job(cluster: Cluster) -> ye.Job:
        return ye.Job(id=cluster.id, service=cluster.service_name)

    def _where(
        self, cluster: Cluster, index: int
    ) -> tuple[Service, ye.Job, ye.AgreementRef | None, ye.ActivityRef | None] | None:
        """The instance, its job, and the agreement and activity it holds now."""
        instances = cluster.instances
        if not 0 <= index < len(instances):
            return None
        instance = instances[index]
        record = record_of(instance)
        known = self._agreements.get(record.agreement_id or "")
        activity = ye.ActivityRef(record.activity_id) if record.activity_id else None
        return instance, self.job(cluster), known[1] if known else None, activity

    def translate(self, event: ev.EngineEvent, cluster: Cluster | None) -> list[ye.Event]:
        """The yapapi-shaped events `event` (from `cluster`, if any) stands for (often none)."""
        if cluster is not None:
            made = self._of_cluster(event, cluster)
            if made is not None:
                return made
        return self._by_agreement(event)

    def _of_cluster(self, event: ev.EngineEvent, cluster: Cluster) -> list[ye.Event] | None:
        """Events that name an instance or the cluster's market; None: not one of those."""
        job = self.job(cluster)
        match event:
            case ev.DemandSubscribed(subscription_id=sub):
                return [ye.SubscriptionCreated(job=job, subscription=ye.Subscription(sub))]
            case ev.ProposalRejected():
                proposal = ye.ProposalRef(event.provider_id, event.provider_name)
                return [ye.ProposalRejected(job=job, proposal=proposal, reason=event.reason)]
            case ev.AgreementCreated(agreement_id=agreement_id):
                info = ye.ProviderInfo(event.provider_name, self._subnet)
                ref = ye.AgreementRef(agreement_id, event.provider_id, info)
                self._agreements[agreement_id] = (job, ref)
                return [ye.AgreementCreated(job=job, agreement=ref)]
            case ev.InstanceStateChanged():
                return self._state_changed(event, cluster)
            case ev.CommandStarted() | ev.CommandOutput() | ev.CommandFinished():
                return self._command(event, cluster)
        return None

    def _by_agreement(self, event: ev.EngineEvent) -> list[ye.Event]:
        """Events that name their agreement."""
        agreement_id = getattr(event, "agreement_id", None)
        known = self._agreements.get(agreement_id) if isinstance(agreement_id, str) else None
        if known is None:
            return []
        job, ref = known
        match event:
            case ev.AgreementRejected(reason=reason):
                return [ye.AgreementRejected(job=job, agreement=ref, exc_info=_error(reason))]
            case ev.ActivityCreated(activity_id=activity_id, agreement_id=agreement_id):
                made: list[ye.Event] = []
                if agreement_id not in self._confirmed:
                    self._confirmed.add(agreement_id)
                    made.append(ye.AgreementConfirmed(job=job, agreement=ref))
                activity = ye.ActivityRef(activity_id)
                made.append(ye.ActivityCreated(job=job, agreement=ref, activity=activity))
                return made
            case ev.ActivityCreateFailed(reason=reason):
                return [ye.ActivityCreateFailed(job=job, agreement=ref, exc_info=_error(reason))]
            case ev.AgreementTerminated(by=by, reason=reason):
                why = {"message": reason, "terminator": by}
                return [ye.AgreementTerminated(job=job, agreement=ref, reason=why)]
            case ev.DebitNoteAccepted(debit_note_id=note_id, total_due=due):
                note = ye.DebitNoteRef(note_id, _amount(due))
                return [ye.DebitNoteAccepted(job=job, agreement=ref, debit_note=note)]
            case ev.InvoiceAccepted(invoice_id=invoice_id, amount=amount):
                invoice = ye.InvoiceRef(invoice_id, _amount(amount))
                return [ye.InvoiceAccepted(job=job, agreement=ref, invoice=invoice)]
            case ev.PaymentRejected(kind=kind, document_id=doc, reason=reason):
                error = _error(f"{kind.replace('_', ' ')} {doc} not accepted: {reason}")
                return [ye.PaymentFailed(job=job, agreement=ref, exc_info=error)]
        return []

    def _state_changed(self, event: ev.InstanceStateChanged, cluster: Cluster) -> list[ye.Event]:
        where = self._where(cluster, event.index)
        if where is None:
            return []
        instance, job, agreement, activity = where
        _, error, traceback = record_of(instance).exc_info
        exc_info = (type(error), error, traceback) if error is not None else None
        made: list[ye.Event] = [
            ye.ServiceStateChanged(
                job=job,
                agreement=agreement,
                activity=activity,
                service=instance,
                old=event.old,
                new=event.new,
                exc_info=exc_info,
            )
        ]
        if event.new in _FINAL:
            made.append(
                ye.ServiceFinished(
                    job=job, agreement=agreement, activity=activity, service=instance
                )
            )
        return made

    def _command(
        self, event: ev.CommandStarted | ev.CommandOutput | ev.CommandFinished, cluster: Cluster
    ) -> list[ye.Event]:
        where = self._where(cluster, event.index)
        if where is None:
            return []
        _, job, agreement, activity = where
        key = (cluster.id, event.index)
        match event:
            case ev.CommandStarted(command=command):
                self._commands[key] = command
                return [
                    ye.CommandStarted(
                        job=job, agreement=agreement, activity=activity, command=command
                    )
                ]
            case ev.CommandOutput(stream=stream, text=text):
                kind = ye.CommandStdErr if stream == "stderr" else ye.CommandStdOut
                command = self._commands.get(key, "")
                return [
                    kind(
                        job=job,
                        agreement=agreement,
                        activity=activity,
                        command=command,
                        output=text,
                    )
                ]
            case ev.CommandFinished(command=command, return_code=code, message=message):
                self._commands.pop(key, None)
                return [
                    ye.CommandExecuted(
                        job=job,
                        agreement=agreement,
                        activity=activity,
                        command=command,
                        success=code == 0,
                        message=message or "",
                    )
                ]
        return []
