"""yapapi's default event consumer: a short summary log of a Golem's work.

`Golem(...)` without an `event_consumer` adds `log_summary(log_event_repr)`, as yapapi does:
every yapapi-shaped event is logged at DEBUG (`golem_deploy.engine.events`) and a summary
at INFO (`golem_deploy.engine.summary`): agreements proposed and confirmed, invoices
accepted, a provider ending an agreement, each job's outcome and agreements, the total cost
and "Golem engine has shut down". The messages are yapapi's, so logs read the same after a
port. (With an `event_consumer` — the supervisor's journal — nothing is added: the
supervisor narrates the deployment itself.)
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from decimal import Decimal

from golem_deploy.engine import yapapi_events as ye
from golem_deploy.engine.lifecycle import ServiceState

__all__ = ["SummaryLogger", "log_event_repr", "log_summary"]

event_logger = logging.getLogger("golem_deploy.engine.events")

Consumer = Callable[[ye.Event], None]


def log_event_repr(event: ye.Event) -> None:
    """Log `repr(event)` at DEBUG (with the traceback of its exception, if any)."""
    event_logger.debug("%r", event, exc_info=event.exc_info)


def _plural(n: int, thing: str) -> str:
    return f"1 {thing}" if n == 1 else f"{n} {thing}s"


def _reason(error: BaseException | None) -> str:
    return (str(error) or repr(error)) if error is not None else "unexpected error"


class SummaryLogger:
    """Aggregates yapapi-shaped events into yapapi's summary messages. `log` is the
    consumer; `wrapped_emitter` is called first with every event (yapapi's chaining)."""

    GOLEM_SHUTDOWN_SUCCESSFUL_MESSAGE = "Golem engine has shut down"
    logger = logging.getLogger("golem_deploy.engine.summary")

    def __init__(self, wrapped_emitter: Consumer | None = None) -> None:
        self._wrapped = wrapped_emitter
        self._broken = False
        self.start_time: dict[str, float] = {}
        self.providers: dict[str, str] = {}  # agreement id -> provider name
        self.confirmed: defaultdict[str, set[str]] = defaultdict(set)  # job -> agreements
        self.cost: defaultdict[str, Decimal] = defaultdict(Decimal)  # provider -> GLM
        self.failures: defaultdict[str, Counter[str]] = defaultdict(Counter)  # job -> provider

    def log(self, event: ye.Event) -> None:
        if self._wrapped is not None:
            self._wrapped(event)
        if self._broken:
            return
        try:
            self._handle(event)
        except Exception:
            self.logger.exception("summary logger in an invalid state: no more summary")
            self._broken = True

    def _provider(self, event: ye.AgreementEvent) -> str:
        return self.providers.get(event.agr_id or "", event.provider_id or "?")

    def _handle(self, event: ye.Event) -> None:
        say = self.logger.info
        match event:
            case ye.JobStarted():
                self.start_time[event.job_id] = time.monotonic()
            case ye.AgreementCreated(agreement=ref) if ref is not None:
                self.providers[ref.id] = ref.provider_info.name or ref.provider_id
                say(
                    "Agreement proposed to provider '%s' (%s)",
                    self._provider(event),
                    ref.provider_id,
                )
            case ye.AgreementConfirmed(agreement=ref) if ref is not None:
                say("Agreement confirmed by provider '%s'", self._provider(event))
                self.confirmed[event.job_id].add(ref.id)
            case ye.ServiceStateChanged(old=old, exc_info=exc_info) if (
                exc_info is not None and old in (ServiceState.starting, ServiceState.running)
            ):
                self.failures[event.job_id][self._provider(event)] += 1
                self.logger.warning(
                    "Service %s on provider '%s' failed; reason: %s",
                    event.service.id,
                    self._provider(event),
                    _reason(event.exception),
                )
            case ye.InvoiceAccepted(invoice=invoice):
                provider = self._provider(event)
                self.cost[provider] += Decimal(invoice.amount)
                say("Accepted invoice from '%s', amount: %s", provider, invoice.amount)
            case ye.PaymentFailed():
                self.logger.error(
                    "Failed to accept an invoice or a debit note from '%s', reason: %s",
                    self._provider(event),
                    _reason(event.exception),
                )
            case ye.AgreementTerminated(reason=reason) if reason.get("terminator") == "provider":
                say("Terminated agreement with %s", self._provider(event))
            case ye.JobFinished():
                self._job_finished(event)
            case ye.ShutdownFinished():
                total = sum(self.cost.values(), Decimal(0))
                say("Total cost: %s", total.normalize())
                self.cost.clear()
                if event.exc_info is None:
                    say(self.GOLEM_SHUTDOWN_SUCCESSFUL_MESSAGE)
                else:
                    self.logger.error(
                        "Error when shutting down Golem engine: %s", _reason(event.exception)
                    )

    def _job_finished(self, event: ye.JobFinished) -> None:
        job = event.job_id
        error = event.exception
        if error is None:
            started = self.start_time.get(job, time.monotonic())
            self.logger.info("Job finished in %.1fs", time.monotonic() - started)
        elif isinstance(error, BaseException) and type(error).__name__ == "CancelledError":
            self.logger.warning("Job cancelled")
        else:
            self.logger.error("Job failed, reason: %s", _reason(error))
        agreements = self.confirmed[job]
        providers = {self.providers.get(a, a) for a in agreements}
        self.logger.info(
            "Negotiated %s with %s",
            _plural(len(agreements), "agreement"),
            _plural(len(providers), "provider"),
        )
        for provider, n in self.failures[job].items():
            self.logger.info("Activity failed %s on provider '%s'", _plural(n, "time"), provider)


def log_summary(wrapped_emitter: Consumer | None = None) -> Consumer:
    """yapapi's helper: a SummaryLogger's `log`, chained after `wrapped_emitter`."""
    return SummaryLogger(wrapped_emitter).log
