"""A provider agent's activities: their events, one ExeUnit each, debit notes while it runs.

This polls the CreateActivity/DestroyActivity events of the agent's agreements (several
long polls at once: loops.py says why) and acts on each once. For each activity it starts
an ExeUnit, sends a debit note at the agreed interval and a final one when it ends, and
reports to yagna (activity state Terminated) whatever the ExeUnit cannot report itself:
a creation that failed, a crash, a failed shutdown.

With mid-agreement payments agreed, about one note per payment timeout is payable (a
`paymentDueDate` that far ahead), as ya-provider does; a payable note the requestor has not
accepted by its due date ends the agreement (ya-provider waits for the payment itself,
which the offline network cannot make: acceptance is what the requestor controls).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

import anyio
from anyio.abc import TaskStatus

from golem_deploy.localnet.provider import terms
from golem_deploy.localnet.provider.api import ProviderApi, ProviderApiError
from golem_deploy.localnet.provider.events import (
    CREATE_ACTIVITY,
    DESTROY_ACTIVITY,
    ActivityEvent,
    event_age,
    seconds_text,
)
from golem_deploy.localnet.provider.exeunits import ExeUnitFactory, ExeUnitLike
from golem_deploy.localnet.provider.loops import (
    ACTIVITY_POLL_LANES,
    EventCursor,
    poll_in_lanes,
    retried,
)
from golem_deploy.localnet.provider.state import Activity, Agreement, ProviderConfig
from golem_deploy.protocol import ActivityStateName

log = logging.getLogger(__name__)

#: How long an ExeUnit's shutdown, or the final debit note, may take before we move on.
STOP_DEADLINE = 10.0

Spawn = Callable[[Callable[[], Awaitable[None]], str], None]
Terminate = Callable[[Agreement, str], Awaitable[None]]


class ActivityRunner:
    """The activities of one provider agent, from CreateActivity to the final debit note."""

    def __init__(
        self,
        *,
        name: str,
        api: ProviderApi,
        config: ProviderConfig,
        exeunit_factory: ExeUnitFactory,
        spawn: Spawn,
        terminate_agreement: Terminate,
    ) -> None:
        self._name = name
        self._api = api
        self._config = config
        self._exeunit_factory = exeunit_factory
        self._spawn = spawn
        self._terminate_agreement = terminate_agreement
        self.activities: dict[str, Activity] = {}
        self.dead = False  # the die_after fault struck: say nothing to anyone any more

    async def follow_events(self, agreements: Mapping[str, Agreement]) -> None:
        """Poll CreateActivity / DestroyActivity of our agreements (`agreements`, the
        agent's, kept up to date by it) and act on each once, until cancelled. Several
        polls at once: loops.ACTIVITY_POLL_LANES says why."""
        cursor = EventCursor()

        async def poll() -> list[ActivityEvent]:
            events = await self._api.activity_events(cursor.after)
            return cursor.fresh(events, lambda e: (e.activity_id, e.kind))

        def on_event(event: ActivityEvent) -> None:
            seen_after = event_age(event.event_date)
            if event.kind == CREATE_ACTIVITY:
                self.create(event.activity_id, agreements.get(event.agreement_id), seen_after)
            elif event.kind == DESTROY_ACTIVITY:
                self.destroy(event.activity_id, seen_after)

        await poll_in_lanes(
            f"{self._name}: activity events",
            poll,
            on_event,
            lanes=ACTIVITY_POLL_LANES,
        )

    def create(
        self, activity_id: str, agreement: Agreement | None, seen_after: float | None = None
    ) -> None:
        """CreateActivity (seen `seen_after` s after yagna recorded it): start its ExeUnit,
        or report why it cannot start."""
        if agreement is None or agreement.ended.is_set():
            self._report_terminated(activity_id, "creation failed", "unknown agreement")
            return
        if self._config.faults.fail_activity_create:
            self._report_terminated(
                activity_id,
                "creation failed",
                "fault injected: this provider fails every activity creation",
            )
            return
        activity = Activity(
            activity_id=activity_id,
            agreement=agreement,
            create_seen_after=seen_after,
            started_at=time.monotonic(),
        )
        agreement.activities[activity_id] = activity
        self.activities[activity_id] = activity
        self._spawn(lambda: self._run(activity), f"activity {activity_id}")

    def destroy(self, activity_id: str, seen_after: float | None = None) -> None:
        """DestroyActivity (seen `seen_after` s after yagna recorded it): stop it; one that
        never started is reported Terminated."""
        activity = self.activities.get(activity_id)
        if activity is not None:
            if not activity.stop.is_set():
                activity.destroy_seen_after = seen_after
            activity.request_stop("destroyed by requestor")
        else:  # never started (e.g. create timed out): make sure yagna knows
            self._report_terminated(activity_id, "destroyed", None)

    def vanish(self) -> None:
        """The die_after fault: every ExeUnit dies like on a crashed machine, silently."""
        self.dead = True
        for activity in self.activities.values():
            if activity.exeunit is not None:
                activity.exeunit.vanish()

    def _report_terminated(self, activity_id: str, reason: str, error: str | None) -> None:
        self._spawn(
            lambda: self._set_terminated(activity_id, reason, error), f"activity {activity_id}"
        )

    async def _set_terminated(self, activity_id: str, reason: str, error: str | None) -> None:
        try:
            await self._api.set_activity_state(
                activity_id, ActivityStateName.TERMINATED, reason, error
            )
        except ProviderApiError as failure:
            log.info("%s: setting %s Terminated failed: %s", self._name, activity_id, failure)

    async def _run(self, activity: Activity) -> None:
        agreement = activity.agreement
        try:
            unit = self._exeunit_factory(
                activity_id=activity.activity_id,
                agreement_id=agreement.agreement_id,
                gsb_url=self._config.gsb_url,
                work_dir=self._config.work_root / activity.activity_id,
                mounts=dict(agreement.mounts),
                usage_vector=list(agreement.tariff.usage_vector),
                requestor_id=agreement.requestor_id,
                fail_commands_matching=self._config.faults.fail_commands_matching,
                slow_start=self._config.faults.slow_start,
                task_package=agreement.task_package,
                local_image=agreement.local_image,
                storage_gib=agreement.reserved.storage_gib,
                cpu_threads=agreement.reserved.threads,
                mem_gib=agreement.reserved.mem_gib,
                unsafe_host_exec=self._config.unsafe_host_exec,
                vpn=self._config.vpn,
                provider_id=self._config.identity.node_id,
                lose_terminated_report=self._config.faults.lose_terminated_report,
            )
            activity.exeunit = unit
            async with anyio.create_task_group() as tg:
                try:
                    await tg.start(self._serve_exeunit, activity, unit)
                except Exception as error:  # the ExeUnit could not come up
                    log.exception("%s: ExeUnit for %s failed", self._name, activity.activity_id)
                    await self._set_terminated(activity.activity_id, "creation failed", str(error))
                    activity.exeunit = None
                    return
                activity.running = True
                log.info(
                    "%s: activity %s up (CreateActivity seen after %s s, Initialized %.3f s later)",
                    self._name,
                    activity.activity_id,
                    seconds_text(activity.create_seen_after),
                    time.monotonic() - activity.started_at,
                )
                tg.start_soon(self._debit_notes, activity)
                await activity.stop.wait()
                await self._stop_exeunit(activity, unit)
                tg.cancel_scope.cancel()
            log.info(
                "%s: activity %s ended: %s (DestroyActivity seen after %s s, "
                "Terminated %.3f s later)",
                self._name,
                activity.activity_id,
                activity.stop_reason,
                seconds_text(activity.destroy_seen_after),
                time.monotonic() - activity.stop_requested_at,
            )
            if self.dead:
                return
            activity.final_cost = activity.cost()
            activity.finished.set()  # the invoice need not wait for the final note (state.py)
            with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_DEADLINE):
                await self._debit_note(activity, final=True)
            if not agreement.multi_activity and not agreement.ended.is_set():
                await self._terminate_agreement(agreement, "activity finished")
        finally:
            self.activities.pop(activity.activity_id, None)
            activity.finished.set()
            activity.done.set()

    async def _stop_exeunit(self, activity: Activity, unit: ExeUnitLike) -> None:
        """End the ExeUnit after a stop request; report what it cannot report itself."""
        if activity.crashed is not None:  # as ya-provider reports a dead ExeUnit
            await self._set_terminated(activity.activity_id, "execution aborted", activity.crashed)
        elif not self.dead:
            with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_DEADLINE):
                try:
                    if not await unit.shutdown(activity.stop_reason):
                        log.warning("%s: %s Terminated over REST", self._name, activity.activity_id)
                        await self._set_terminated(activity.activity_id, activity.stop_reason, None)
                except Exception:
                    log.exception("%s: ExeUnit shutdown failed", self._name)
                    await self._set_terminated(
                        activity.activity_id, activity.stop_reason, "shutdown failed"
                    )

    async def _serve_exeunit(
        self, activity: Activity, unit: ExeUnitLike, *, task_status: TaskStatus[None]
    ) -> None:
        """Run the ExeUnit; if it stops on its own, the activity is over."""
        try:
            await unit.serve(task_status=task_status)
        except Exception as error:
            if not activity.running:
                raise  # it never came up: _run reports "creation failed"
            log.exception("%s: ExeUnit of %s crashed", self._name, activity.activity_id)
            activity.crashed = f"{type(error).__name__}: {error}"
        finally:
            activity.request_stop("execution aborted")

    async def _debit_notes(self, activity: Activity) -> None:
        # the debit_notes_every fault ignores what was agreed (the requestor should object)
        every = self._config.faults.debit_notes_every or activity.agreement.debit_note_interval
        while True:
            await anyio.sleep(every)
            await self._debit_note(activity)

    async def _debit_note(self, activity: Activity, *, final: bool = False) -> None:
        """One cumulative debit note: issue it, then deliver it (retried: 408 when busy)."""
        if self.dead:
            return
        agreement = activity.agreement
        usage = activity.usage()
        amount = activity.final_cost if final else agreement.tariff.cost(usage)
        timeout = agreement.payment_timeout
        now = anyio.current_time()
        payable = terms.payable_now(
            final=final, now=now, last_payable=agreement.last_payable, timeout=timeout
        )
        due = datetime.now(UTC) + timedelta(seconds=timeout) if payable and timeout else None
        try:
            note_id = await self._api.create_debit_note(
                activity.activity_id,
                terms.amount_str(amount),
                agreement.tariff.counters(usage),
                due,
            )
            await retried(
                f"{self._name}: sending debit note {note_id}",
                lambda: self._api.send_debit_note(note_id),
                attempts=4,
                delay=lambda attempt: 0.5 * (attempt + 1),
            )
            activity.debit_notes += 1
        except ProviderApiError as error:
            log.info("%s: debit note for %s failed: %s", self._name, activity.activity_id, error)
            return
        if due is not None and timeout is not None:
            agreement.last_payable = now
            if not final:
                self._spawn(
                    lambda: self._expect_acceptance(agreement, note_id, timeout),
                    f"payable debit note {note_id}",
                )

    async def _expect_acceptance(self, agreement: Agreement, note_id: str, timeout: float) -> None:
        """At the note's due date: unaccepted (and the agreement still on), end it."""
        with anyio.move_on_after(timeout):
            await agreement.ended.wait()
        if agreement.ended.is_set() or self.dead:
            return
        try:
            status = await retried(
                f"{self._name}: status of debit note {note_id}",
                lambda: self._api.debit_note_status(note_id),
                attempts=3,
                delay=lambda attempt: 0.5 * (attempt + 1),
            )
        except ProviderApiError as error:
            log.info("%s: cannot tell whether %s was accepted: %s", self._name, note_id, error)
            return
        if status in terms.ACCEPTED_STATES or agreement.ended.is_set():
            return
        message = f"debit note {note_id} not accepted within the payment timeout ({timeout:g} s)"
        log.info("%s: ending %s: %s", self._name, agreement.agreement_id, message)
        await self._terminate_agreement(agreement, message)
