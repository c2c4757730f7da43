"""The instance runner: one instance's lifecycle decisions in, effects out.

The runner owns a pure `Lifecycle`, feeds it events through one inbox (from its own tasks:
acquisition, handlers, the watcher, the provider check; and from outside: stop, expiration,
the agreement router), and carries out the actions it returns with its helpers: a
ProviderAttempt (agreement + activity), a ScriptExecutor and a Watcher. Every task lives
in the runner's task group; the tasks of one provider attempt carry the attempt number, and
releasing an attempt cancels exactly its tasks and bumps the number, so a late result from
an abandoned provider is dropped unread instead of confusing the machine.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from golem_deploy.engine import events as ev
from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine import yapapi_events as ye
from golem_deploy.engine.attempt import ProviderAttempt
from golem_deploy.engine.config import HealthCheck
from golem_deploy.engine.context import EngineContext
from golem_deploy.engine.executor import ProviderGone, ScriptExecutor
from golem_deploy.engine.handlers import drive, handler_event
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.market import MarketSession, SignedAgreement
from golem_deploy.engine.service import (
    NO_EXC,
    CommandResult,
    ImageDownload,
    Script,
    Service,
    WorkContext,
    record_of,
)
from golem_deploy.engine.watcher import Watcher
from golem_deploy.errors import GolemDeployError
from golem_deploy.protocol import DEPLOY_REPORTS_PROGRESS

__all__ = ["ANY_ATTEMPT", "InstanceRunner", "ServiceRunnerError", "responsive_hook"]

log = logging.getLogger(__name__)
ANY_ATTEMPT = -1


class ServiceRunnerError(GolemDeployError):
    """yapapi's name for the error of an instance whose health checks failed: it becomes
    the instance's `exc_info` when the last allowed check fails, as in yapapi."""


class InstanceRunner:
    """Drives one instance: lifecycle decisions in, effects out."""

    def __init__(
        self,
        ctx: EngineContext,
        market: MarketSession,
        instance: Service,
        *,
        lifecycle_config: lc.LifecycleConfig,
        healthcheck: HealthCheck,
    ) -> None:
        self.ctx = ctx
        self.instance = instance
        self.record = record = record_of(instance)
        self.name = record.service
        self.lifecycle = lc.Lifecycle(lifecycle_config)
        self.attempt = 0
        self.provider = ProviderAttempt(ctx, market, instance)
        self.executor = ScriptExecutor(
            ctx.client,
            storage=ctx.storage,
            emit=ctx.emit,
            service=self.name,
            index=record.index,
            timings=ctx.timings,
            on_stdout=self._last_output,
            on_download=self._download,
            reports_deploy_progress=self._reports_deploy_progress,
        )
        self.watcher = Watcher(
            ctx.client,
            self.executor,
            healthcheck,
            ctx.timings,
            f"{self.name}[{record.index}]",
            node=lambda: instance.network_node,
            responsive=responsive_hook(instance),
        )
        self._scopes: dict[int, list[anyio.CancelScope]] = {}
        self._send: MemoryObjectSendStream[tuple[int, lc.Event]]
        self._recv: MemoryObjectReceiveStream[tuple[int, lc.Event]]
        self._send, self._recv = anyio.create_memory_object_stream[tuple[int, lc.Event]](math.inf)
        self._tg: TaskGroup | None = None
        #: "" while the runner holds its index; engine/replace.py sets "successor" and
        #: "retiring" during a renewal (carried by InstanceStateChanged.renewal)
        self.role = ""
        self._changed = anyio.Event()
        self.done = anyio.Event()  # run() returned: the instance is final and released

    @property
    def agreement(self) -> SignedAgreement | None:
        return self.provider.agreement

    async def changed(self) -> None:
        """Until the instance's state or health verdict changes (or the runner ends)."""
        if not self.done.is_set():
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _download(self, download: ImageDownload | None) -> None:
        self.record.download = download

    def _reports_deploy_progress(self) -> bool:
        signed = self.provider.agreement
        offer = signed.agreement.offer_properties if signed is not None else {}
        return offer.get(DEPLOY_REPORTS_PROGRESS) is True

    def send(self, event: lc.Event, attempt: int = ANY_ATTEMPT) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._send.send_nowait((attempt, event))

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._apply(lc.Spawn())
                async with self._recv:
                    async for attempt, event in self._recv:
                        if attempt not in (ANY_ATTEMPT, self.attempt):
                            continue  # a late result from an abandoned provider
                        await self._apply(event)
                        if self.lifecycle.final:
                            break
                tg.cancel_scope.cancel()
        finally:
            self._send.close()
            with anyio.CancelScope(shield=True):
                await self.provider.release(lc.ReleaseActivity("instance finished"))
            self.done.set()
            self._notify()

    async def _apply(self, event: lc.Event) -> None:
        """Feed one event to the machine and carry out what it decides. IllegalTransition
        propagates: the races that can happen are no-ops in the machine, so anything it
        refuses is a bug and must not pass quietly."""
        old = self.lifecycle.state
        actions = self.lifecycle.handle(event)
        new = self.lifecycle.state
        inst = self.record
        inst.restarts = self.lifecycle.restarts
        inst.reason = self.lifecycle.last_reason
        inst.restart_scheduled = self.lifecycle.restart_scheduled
        if new is not old:
            inst.state = new
            if new is ServiceState.running:
                inst.started_at = datetime.now(UTC)
            if new is ServiceState.starting:
                inst.healthy = None  # a new provider: no verdict yet
            self.ctx.emit(
                ev.InstanceStateChanged(
                    service=self.name,
                    index=inst.index,
                    old=old,
                    new=new,
                    reason=self.lifecycle.transition_reason,
                    final=self.lifecycle.final,
                    renewal=self.role,
                )
            )
            self._notify()
        for action in actions:
            await self._do(action)

    async def _do(self, action: lc.Action) -> None:
        assert self._tg is not None
        index = self.record.index
        match action:
            case lc.AcquireAgreement(restart=restart):
                if restart:
                    self.ctx.emit(
                        ev.InstanceRestarted(service=self.name, index=index, attempt=restart)
                    )
                reset = action.reset
                self._spawn(lambda attempt: self._acquire(attempt, reset))
            case lc.RunHandler(name=name):
                if name == "start":
                    self._spawn(self._watch)
                self._spawn(lambda attempt: self._handler(attempt, name))
            case lc.AvoidProvider(reason=reason):
                signed = self.provider.agreement
                if signed is not None:
                    self.ctx.providers.avoid(signed.provider_id, signed.provider_name, reason)
            case lc.ReleaseActivity():
                # This provider attempt is over: cancel its tasks, and anything they still
                # send carries the old attempt number and is dropped unread.
                for scope in self._scopes.pop(self.attempt, []):
                    scope.cancel()
                self.attempt += 1
                with anyio.CancelScope(shield=True):
                    await self.provider.release(action)
            case lc.ScheduleRestart(delay=delay, attempt=n, reason=reason):
                self.ctx.emit(
                    ev.InstanceRestartScheduled(
                        service=self.name, index=index, attempt=n, delay=delay, reason=reason
                    )
                )
                self._tg.start_soon(self._restart_after, delay)
            case lc.CheckProvider():
                self._spawn(self._check_provider)
            case lc.ReportHealth(ok=ok, consecutive_failures=failures, message=message):
                if not ok and failures >= self.lifecycle.config.healthcheck_retries:
                    self._health_failed(failures, message)
                self.record.healthy = ok
                self._notify()
                self.ctx.emit(
                    ev.HealthCheckResult(
                        service=self.name,
                        index=index,
                        ok=ok,
                        consecutive_failures=failures,
                        message=message,
                        instance_id=self.record.id,
                    )
                )

    def _health_failed(self, failures: int, message: str) -> None:
        """yapapi sets `exc_info` to a raised ServiceRunnerError when health checks fail;
        so do we (the state change that follows carries it; a shutdown that then runs
        cleanly clears it again, as in yapapi)."""
        try:
            raise ServiceRunnerError(
                f"Service health check failed after {failures} retries: {message}"
            )
        except ServiceRunnerError:
            self.record.exc_info = sys.exc_info()

    def _event_context(self, signed: SignedAgreement, activity_id: str) -> dict[str, object]:
        """What yapapi's `ctx.emit` fills into a yapapi-shaped event: the job (the
        cluster), the agreement and the activity."""
        cluster = self.record.cluster
        info = ye.ProviderInfo(signed.provider_name)
        return {
            "job": ye.Job(cluster.id if cluster is not None else "", self.name),
            "agreement": ye.AgreementRef(signed.agreement_id, signed.provider_id, info),
            "activity": ye.ActivityRef(activity_id),
        }

    def _spawn(self, fn: Callable[[int], Awaitable[None]]) -> None:
        """Start `fn(attempt)` as a task of the current provider attempt."""
        assert self._tg is not None
        attempt = self.attempt
        scope = anyio.CancelScope()
        self._scopes.setdefault(attempt, []).append(scope)

        async def task() -> None:
            with scope:
                await fn(attempt)

        self._tg.start_soon(task)

    def _background(self, fn: Callable[[], Awaitable[None]]) -> None:
        """A script that does not wait for its results: it lives as long as this provider
        attempt, not as long as the handler that yielded it."""
        self._spawn(lambda attempt: fn())

    def _sender(self, attempt: int) -> Callable[[lc.Event], None]:
        return lambda event: self.send(event, attempt)

    async def _restart_after(self, delay: float) -> None:
        await anyio.sleep(delay)
        self.send(lc.RestartDue())

    def _last_output(self, line: str) -> None:
        self.record.last_output = line

    # ------------------------------------------------------------- attempt tasks

    async def _acquire(self, attempt: int, reset: bool) -> None:
        if reset:  # yapapi's hook, before the instance is tried again
            try:
                await self.instance.reset()
            except Exception as e:  # user code: its failure ends the instance, loudly
                log.warning("%s: reset() failed", self.provider.name, exc_info=True)
                self.record.exc_info = sys.exc_info()
                self.send(lc.StopRequested(f"reset() failed: {e!r}"), attempt)
                return
        await self.provider.acquire(self._sender(attempt))
        self.executor.last_batch = None
        self.send(lc.ActivityReady(), attempt)

    async def _watch(self, attempt: int) -> None:
        activity_id = self.provider.activity_id
        if activity_id is None:
            return

        def checks_due() -> bool:
            m = self.lifecycle
            return m.state is ServiceState.running and not m.checking_provider

        await self.watcher.watch(activity_id, checks_due, self._sender(attempt))

    async def _check_provider(self, attempt: int) -> None:
        await self.watcher.check_provider(self.provider.activity_id, self._sender(attempt))

    async def _join_network(self, provider_id: str) -> None:
        """Before the deploy: make the provider a node of the instance's network, at the
        address the instance keeps (reserved at its first start when none was planned). A
        failure here fails the start, like a failed deploy."""
        record = self.record
        network = record.network
        if network is None or network.removed:
            return
        if record.network_address is None:
            record.network_address = network.reserve()
        # the local network under it restarts: joined only once its VPN is there again
        await self.ctx.network.wait(self.ctx.timings.yagna_outage_grace)
        self.instance._network_node = await network.add_node(provider_id, record.network_address)

    async def _handler(self, attempt: int, name: str) -> None:
        signed = self.provider.agreement
        activity_id = self.provider.activity_id
        assert signed is not None and activity_id is not None
        inst, index = self.instance, self.record.index
        inst._ctx = WorkContext(
            activity_id=activity_id,
            agreement_id=signed.agreement_id,
            provider_id=signed.provider_id,
            provider_name=signed.provider_name,
            client=self.ctx.client,
            emit=self.ctx.emit,
            offer_properties=signed.agreement.offer_properties,
            event_context=self._event_context(signed, activity_id),
        )

        async def execute(script: Script) -> list[CommandResult]:
            return await self.executor.execute(self.provider.activity_id, script)

        try:
            try:
                if name == "start":
                    await self._join_network(signed.provider_id)
                await drive(getattr(inst, name)(), execute, background=self._background)
            finally:
                if name == "start":  # the next instance may start on this provider
                    self.provider.start_ended()
        except ProviderGone as e:
            log.info("%s[%d] %s: %s", self.name, index, name, e)
            self.record.exc_info = sys.exc_info()
            self.send(lc.ActivityUnresponsive(str(e)), attempt)
            return
        except Exception as e:  # a handler is user code: whatever it raises is its failure
            reason = str(e) or type(e).__name__
            log.info("%s[%d] %s failed: %s", self.name, index, name, reason)
            self.record.exc_info = sys.exc_info()
            self.send(handler_event(name, reason), attempt)
            return
        self.record.exc_info = NO_EXC
        self.send(handler_event(name, None), attempt)


def responsive_hook(instance: Service) -> Callable[[], Awaitable[bool]] | None:
    """The instance's own `is_activity_responsive()` when its class overrides yapapi's
    default (which only queries the activity state, as the watcher does anyway)."""
    if type(instance).is_activity_responsive is Service.is_activity_responsive:
        return None
    return instance.is_activity_responsive
