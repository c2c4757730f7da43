"""Cluster: the instances of one service class, each driven by its own runner task.

Each instance has an `_InstanceRunner`: it owns a pure `Lifecycle`, feeds it events (from its
own tasks: acquisition, handlers, the watcher; and from outside: stop, expiration, provider
terminations, over-budget) through one inbox, and executes the actions it returns. Every task
lives in the runner's anyio task group; the tasks of one provider attempt (handlers, watcher,
acquisition) carry the attempt number, so a late result from an abandoned provider is
dropped instead of confusing the machine, and releasing an attempt cancels exactly its tasks.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from golem_deploy.engine import events as ev
from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.market import AgreementFailed, MarketSession, SignedAgreement
from golem_deploy.engine.payload import VmPayload
from golem_deploy.engine.service import (
    CommandFailed,
    CommandResult,
    Script,
    Service,
    WorkContext,
)
from golem_deploy.errors import GolemDeployError
from golem_deploy.yagna.errors import (
    ActivityGone,
    YagnaError,
    YagnaStatusError,
    YagnaUnreachable,
)
from golem_deploy.yagna.models import ExeResult

if TYPE_CHECKING:
    from golem_deploy.engine.golem import Golem

__all__ = ["Cluster", "HealthcheckConfig"]

log = logging.getLogger(__name__)
ANY_ATTEMPT = -1
VANISHED_STATES = ("Terminated", "Unresponsive")
#: How long a running instance waits for an unreachable yagna (restarting, overloaded) to
#: answer again before a failed call counts against the instance.
YAGNA_OUTAGE_GRACE = 60.0


@dataclass(frozen=True)
class HealthcheckConfig:
    """How an instance's health is checked while it runs.

    With `argv` a command is run on the provider (non-zero exit = failure); without it the
    activity's state is queried, as yapapi does. `retries` consecutive failures make the
    instance unhealthy (replaced when its restart policy allows)."""

    argv: tuple[str, ...] | None = None
    interval: float = 10.0
    timeout: float = 10.0
    retries: int = 3
    start_period: float = 0.0

    @classmethod
    def from_spec(cls, spec: Any) -> HealthcheckConfig:
        """From the manifest's Healthcheck (run: RunStep, interval, timeout, retries, ...)."""
        if spec is None:
            return cls()
        if isinstance(spec, HealthcheckConfig):
            return spec
        run = getattr(spec, "run", None)
        argv = tuple(getattr(run, "argv", ()) or ()) or None
        return cls(
            argv=argv,
            interval=float(spec.interval),
            timeout=float(spec.timeout),
            retries=int(spec.retries),
            start_period=float(getattr(spec, "start_period", 0.0)),
        )


class _Results:
    """What `yield script` sends back into a handler: `await` it for the results list."""

    def __init__(self, results: list[CommandResult]) -> None:
        self.results = results

    def __await__(self) -> Generator[Any, None, list[CommandResult]]:
        if False:  # pragma: no cover - makes this a generator
            yield None
        return self.results


class ProviderGone(GolemDeployError):
    """The activity was terminated/lost on the provider side."""


class Cluster:
    """The instances started by one `Golem.run_service` call."""

    def __init__(
        self,
        engine: Golem,
        service_class: type[Service],
        *,
        payload: VmPayload,
        expiration: datetime,
        lifecycle_config: lc.LifecycleConfig,
        healthcheck: HealthcheckConfig,
    ) -> None:
        self._engine = engine
        self.service_class = service_class
        self.service_name = service_class.service_name()
        self.payload = payload
        self.expiration = expiration
        self.lifecycle_config = lifecycle_config
        self.healthcheck = healthcheck
        self._runners: list[_InstanceRunner] = []
        self._tg: TaskGroup | None = None
        self._active = 0
        self._finished = anyio.Event()
        self._stopping = False
        self.scope = anyio.CancelScope()  # cancelled by Golem.stop if stopping takes too long
        self.done_running = anyio.Event()
        demand = engine.build_demand(payload, expiration)
        self.market = MarketSession(
            client=engine.client,
            service=self.service_name,
            demand=demand,
            caps=engine.price_caps,
            platform=engine.platform,
            expiration=expiration,
            emit=engine.emit,
            avoided=engine.is_avoided,
            busy_providers=self._busy_providers,
            expected_seconds=max(60.0, (expiration - datetime.now(UTC)).total_seconds()),
        )

    # ------------------------------------------------------------------ public API

    @property
    def instances(self) -> list[Service]:
        return [r.instance for r in self._runners]

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def stop(self) -> None:
        """Ask every instance to stop (running ones run their shutdown handler once)."""
        self._stopping = True
        for runner in self._runners:
            runner.send(lc.StopRequested())

    def stop_instance(self, instance: Service) -> None:
        for runner in self._runners:
            if runner.instance is instance:
                runner.send(lc.StopRequested())

    def spawn_instances(
        self,
        num_instances: int | None = None,
        instance_params: Iterable[dict[str, Any]] | None = None,
    ) -> list[Service]:
        """Add instances (scaling up). Returns the new Service objects."""
        if self._tg is None or self._finished.is_set():
            raise GolemDeployError(f"cluster {self.service_name} is not running")
        params = instance_params_list(num_instances, instance_params)
        new = []
        for p in params:
            runner = _InstanceRunner(self, self.service_class(**p), len(self._runners))
            self._runners.append(runner)
            self._active += 1
            self._tg.start_soon(self._run_instance, runner)
            new.append(runner.instance)
        return new

    async def wait_finished(self) -> None:
        """Until every instance is final (terminated/unresponsive without restart)."""
        await self._finished.wait()

    def runner_for_agreement(self, agreement_id: str) -> _InstanceRunner | None:
        for r in self._runners:
            if r.agreement is not None and r.agreement.agreement_id == agreement_id:
                return r
        return None

    # --------------------------------------------------------------------- internals

    def _busy_providers(self) -> list[str]:
        return [r.agreement.provider_id for r in self._runners if r.agreement is not None]

    async def _run_instance(self, runner: _InstanceRunner) -> None:
        try:
            await runner.run()
        finally:
            self._active -= 1
            if self._active == 0:
                self._finished.set()

    async def run(
        self,
        initial: list[dict[str, Any]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """The cluster's task: negotiation, expiration timer and instance runners."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self.market.collect)
            tg.start_soon(self._expiration_timer)
            if initial:
                self.spawn_instances(instance_params=initial)
            else:
                self._finished.set()
            task_status.started()
            await self._finished.wait()
            tg.cancel_scope.cancel()
        self._tg = None

    async def _expiration_timer(self) -> None:
        delay = (self.expiration - datetime.now(UTC)).total_seconds()
        await anyio.sleep(max(0.0, delay))
        for runner in self._runners:
            runner.send(lc.ExpirationReached())


def instance_params_list(
    num_instances: int | None, instance_params: Iterable[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """yapapi's rules: num_instances wins; instance_params runs out -> error."""
    params = list(instance_params) if instance_params is not None else None
    if num_instances is None:
        return params if params is not None else [{}]
    if params is None:
        return [{} for _ in range(num_instances)]
    if len(params) < num_instances:
        raise GolemDeployError(
            f"instance_params has {len(params)} entries for {num_instances} instances"
        )
    return params[:num_instances]


class _InstanceRunner:
    """Drives one instance: lifecycle decisions in, effects out."""

    def __init__(self, cluster: Cluster, instance: Service, index: int) -> None:
        self.cluster = cluster
        self.engine = cluster._engine
        self.instance = instance
        instance.index = index
        instance.cluster = cluster
        self.lifecycle = lc.Lifecycle(cluster.lifecycle_config)
        self.attempt = 0
        self.agreement: SignedAgreement | None = None
        self.activity_id: str | None = None
        self._scopes: dict[int, list[anyio.CancelScope]] = {}
        self._exec_lock = anyio.Lock()
        self._send: MemoryObjectSendStream[tuple[int, lc.Event]]
        self._recv: MemoryObjectReceiveStream[tuple[int, lc.Event]]
        self._send, self._recv = anyio.create_memory_object_stream[tuple[int, lc.Event]](math.inf)
        self._tg: TaskGroup | None = None
        self._last_batch: str | None = None  # of the current activity, for CheckProvider

    @property
    def name(self) -> str:
        return self.instance.service

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
                await self._release(lc.ReleaseActivity("instance finished"))

    async def _apply(self, event: lc.Event) -> None:
        """Feed one event to the machine and carry out what it decides. IllegalTransition
        propagates: the races that can happen are no-ops in the machine, so anything it
        refuses is a bug and must not pass quietly."""
        old = self.lifecycle.state
        actions = self.lifecycle.handle(event)
        new = self.lifecycle.state
        self.instance.restarts = self.lifecycle.restarts
        self.instance.reason = self.lifecycle.last_reason
        self.instance.restart_scheduled = self.lifecycle.restart_scheduled
        if new is not old:
            self.instance.state = new
            if new is ServiceState.running:
                self.instance.started_at = datetime.now(UTC)
            self.engine.emit(
                ev.InstanceStateChanged(
                    service=self.name,
                    index=self.instance.index,
                    old=old,
                    new=new,
                    reason=self.lifecycle.transition_reason,
                )
            )
        for action in actions:
            await self._do(action)

    async def _do(self, action: lc.Action) -> None:
        assert self._tg is not None
        match action:
            case lc.AcquireAgreement(restart=restart):
                if restart:
                    self.engine.emit(
                        ev.InstanceRestarted(
                            service=self.name, index=self.instance.index, attempt=restart
                        )
                    )
                self._spawn(self.attempt, self._acquire)
            case lc.RunHandler(name=name):
                if name == "start":
                    self._spawn(self.attempt, self._watch)
                self._spawn(self.attempt, lambda a: self._handler(a, name))
            case lc.AvoidProvider(reason=reason):
                if self.agreement is not None:
                    self.engine.avoid(
                        self.agreement.provider_id, self.agreement.provider_name, reason
                    )
            case lc.ReleaseActivity():
                # This provider attempt is over: cancel its tasks, and anything they still
                # send carries the old attempt number and is dropped unread.
                for scope in self._scopes.pop(self.attempt, []):
                    scope.cancel()
                self.attempt += 1
                with anyio.CancelScope(shield=True):
                    await self._release(action)
            case lc.ScheduleRestart(delay=delay, attempt=n, reason=reason):
                self.engine.emit(
                    ev.InstanceRestartScheduled(
                        service=self.name,
                        index=self.instance.index,
                        attempt=n,
                        delay=delay,
                        reason=reason,
                    )
                )
                self._tg.start_soon(self._restart_after, delay)
            case lc.CheckProvider():
                self._spawn(self.attempt, self._check_provider)
            case lc.ReportHealth(ok=ok, consecutive_failures=failures, message=message):
                self.engine.emit(
                    ev.HealthCheckResult(
                        service=self.name,
                        index=self.instance.index,
                        ok=ok,
                        consecutive_failures=failures,
                        message=message,
                    )
                )

    def _spawn(self, attempt: int, fn: Callable[[int], Awaitable[None]]) -> None:
        assert self._tg is not None
        scope = anyio.CancelScope()
        self._scopes.setdefault(attempt, []).append(scope)

        async def task() -> None:
            with scope:
                await fn(attempt)

        self._tg.start_soon(task)

    async def _restart_after(self, delay: float) -> None:
        await anyio.sleep(delay)
        self.send(lc.RestartDue())

    # ------------------------------------------------------------- acquisition

    async def _acquire(self, attempt: int) -> None:
        """Sign an agreement with a provider we don't avoid and create an activity on it."""
        engine, index = self.engine, self.instance.index
        while True:
            try:
                signed = await self.cluster.market.sign(index)
            except AgreementFailed as e:
                engine.avoid(e.provider_id, e.provider_name, e.reason)
                continue
            except YagnaError as e:
                log.warning("%s[%d]: negotiation: %s", self.name, index, e)
                await anyio.sleep(2.0)
                continue
            self.agreement = signed
            inst = self.instance
            inst.agreement_id = signed.agreement_id
            inst.provider_id = signed.provider_id
            inst.provider_name = signed.provider_name
            engine.payments.track(signed.agreement_id, self._add_cost)
            try:
                activity_id = await engine.client.create_activity(signed.agreement_id)
            except YagnaError as e:
                reason = f"activity creation failed: {e.detail}"
                engine.emit(
                    ev.ActivityCreateFailed(
                        service=self.name,
                        index=index,
                        agreement_id=signed.agreement_id,
                        reason=reason,
                    )
                )
                engine.avoid(signed.provider_id, signed.provider_name, reason)
                with anyio.CancelScope(shield=True):
                    await self._release(lc.ReleaseActivity(reason))
                continue
            self.activity_id = activity_id
            self._last_batch = None
            inst.activity_id = activity_id
            engine.emit(
                ev.ActivityCreated(
                    service=self.name,
                    index=index,
                    activity_id=activity_id,
                    agreement_id=signed.agreement_id,
                )
            )
            self.send(lc.ActivityReady(), attempt)
            return

    def _add_cost(self, amount: Decimal) -> None:
        self.instance.cost += amount

    async def _release(self, release: lc.ReleaseActivity) -> None:
        """Destroy the activity and terminate the agreement (bounded), as `release` says.

        The Activity/AgreementTerminated events are emitted only for what really ended (or
        what the provider ended itself), so a journal keeps anything still open for a later
        cleanup (`golem-deploy down` after a crash)."""
        engine, reason = self.engine, release.reason
        activity_id, self.activity_id = self.activity_id, None
        signed, self.agreement = self.agreement, None
        vanished = release.cause is lc.ReleaseCause.vanished
        by_provider = not release.terminate_agreement
        self.instance.activity_id = None
        self.instance.agreement_id = None
        # A vanished provider cannot answer: don't let yagna's forwarding hold us up long.
        patience = 3.0 if vanished else 15.0
        if activity_id is not None:
            destroyed = False
            with anyio.move_on_after(patience):
                try:
                    await engine.client.destroy_activity(activity_id, timeout=patience)
                    destroyed = True
                except YagnaError as e:
                    log.info("destroy activity %s: %s", activity_id, e)
            if destroyed:
                engine.emit(
                    ev.ActivityDestroyed(
                        service=self.name, index=self.instance.index, activity_id=activity_id
                    )
                )
        if signed is None:
            return
        terminated = by_provider
        if not by_provider:
            with anyio.move_on_after(patience):
                try:
                    await engine.client.terminate_agreement(
                        signed.agreement_id, reason[:200] or "Work finished", "Success"
                    )
                    terminated = True
                except YagnaError as e:
                    log.warning("terminate agreement %s: %s", signed.agreement_id, e)
        engine.payments.agreement_ended(signed.agreement_id, expect_invoice=release.expect_invoice)
        if terminated:
            engine.emit(
                ev.AgreementTerminated(
                    agreement_id=signed.agreement_id,
                    provider_id=signed.provider_id,
                    by="provider" if by_provider else "requestor",
                    reason=reason,
                )
            )

    # ------------------------------------------------------------------ handlers

    async def _handler(self, attempt: int, name: str) -> None:
        signed = self.agreement
        activity_id = self.activity_id
        assert signed is not None and activity_id is not None
        self.instance._ctx = WorkContext(
            activity_id=activity_id,
            agreement_id=signed.agreement_id,
            provider_id=signed.provider_id,
            provider_name=signed.provider_name,
        )
        try:
            await self._drive(getattr(self.instance, name)())
        except ProviderGone as e:
            log.info("%s[%d] %s: %s", self.name, self.instance.index, name, e)
            self.send(lc.ActivityUnresponsive(str(e)), attempt)
            return
        except Exception as e:  # any failure of user code or the provider is an event
            reason = str(e) or type(e).__name__
            log.info("%s[%d] %s failed: %s", self.name, self.instance.index, name, reason)
            self.send(_handler_event(name, reason), attempt)
            return
        self.send(_handler_event(name, None), attempt)

    async def _drive(self, gen: Any) -> None:
        """Run a handler generator: execute each yielded Script, send results back,
        throw command failures in (so the handler may catch them)."""
        if not inspect.isasyncgen(gen):
            raise TypeError("Service handlers must be async generators yielding Scripts")
        to_send: Any = None
        to_throw: BaseException | None = None
        try:
            while True:
                try:
                    if to_throw is not None:
                        script = await gen.athrow(to_throw)
                    else:
                        script = await gen.asend(to_send)
                except StopAsyncIteration:
                    return
                to_send, to_throw = None, None
                if not isinstance(script, Script):
                    raise TypeError(f"a handler yielded {type(script).__name__}, not a Script")
                try:
                    to_send = _Results(await self._execute(script))
                except CommandFailed as e:
                    to_throw = e
        finally:
            await gen.aclose()

    # ----------------------------------------------------------------- execution

    async def _execute(self, script: Script) -> list[CommandResult]:
        """Execute one script on the activity; results in order; CommandFailed on failure."""
        steps = script.steps
        if not steps:
            return []
        activity_id = self.activity_id
        if activity_id is None:
            raise ProviderGone("the activity is gone")
        storage = self.engine.storage
        try:
            for step in steps:
                if step.before is not None:
                    if storage is None:
                        raise GolemDeployError(
                            f"`{step.describe}` needs file transfer, which is not available",
                            hint="see docs/engine.md (GFTP over yagna's gsb-api)",
                        )
                    await step.before(storage)
            async with self._exec_lock:
                if script.timeout is not None:
                    with anyio.fail_after(script.timeout):
                        results = await self._run_batch(activity_id, steps)
                else:
                    results = await self._run_batch(activity_id, steps)
            failed: CommandResult | None = None
            for step, result in zip(steps, results, strict=False):
                if result.success and failed is None:
                    if step.after is not None:
                        await step.after(result)
                    step.future._set(result)
                else:
                    failed = failed or result
            if failed is None and len(results) < len(steps):
                failed = CommandResult(
                    len(results),
                    steps[len(results)].describe,
                    -1,
                    None,
                    None,
                    "the batch ended early",
                )
            if failed is not None:
                error = CommandFailed(failed, self.name, self.instance.index)
                for step in steps:
                    if not step.future.done():
                        step.future._fail(error)
                raise error
            return results
        finally:
            with anyio.CancelScope(shield=True):
                for step in steps:
                    for release in step.cleanup:
                        with contextlib.suppress(Exception):
                            await release()

    async def _run_batch(self, activity_id: str, steps: list[Any]) -> list[CommandResult]:
        client, engine = self.engine.client, self.engine
        index = self.instance.index
        for tries_left in range(3, -1, -1):
            try:
                batch_id = await client.exec(activity_id, [s.command for s in steps])
                self._last_batch = batch_id
                break
            except YagnaError as e:
                if not tries_left:
                    raise
                await self._check_gone(activity_id, e)
        streamed: dict[int, dict[str, str]] = {}
        stream_done = anyio.Event()

        async def stream() -> None:
            """Live output over SSE; best effort (the poll below is authoritative)."""
            try:
                async for rt in client.stream_exec(activity_id, batch_id):
                    if rt.batch_id != batch_id or not 0 <= rt.index < len(steps):
                        continue
                    if rt.kind == "started":
                        engine.emit(
                            ev.CommandStarted(
                                service=self.name, index=index, command=steps[rt.index].describe
                            )
                        )
                    elif rt.kind in ("stdout", "stderr") and rt.text:
                        self._output(rt.kind, rt.text)
                        buf = streamed.setdefault(rt.index, {})
                        buf[rt.kind] = buf.get(rt.kind, "") + rt.text
                    elif rt.kind == "finished" and (
                        rt.index == len(steps) - 1 or rt.return_code != 0
                    ):
                        return
            except (YagnaError, OSError, Exception) as e:
                log.debug("exec stream %s: %s", batch_id, e)
            finally:
                stream_done.set()

        results: list[ExeResult] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream)
            failures = 0
            while True:
                try:
                    results = await client.exec_results(activity_id, batch_id, timeout=5.0)
                    failures = 0
                except YagnaError as e:
                    failures += 1
                    if failures >= 4:
                        raise
                    await self._check_gone(activity_id, e)
                    continue
                if results and (results[-1].is_batch_finished or len(results) == len(steps)):
                    break
            # Let trailing output events arrive: the stream ends at the last command's
            # "finished". (Waiting for output from every command instead cost a full 0.5 s
            # per batch whenever a command printed nothing, e.g. deploy and start.)
            with anyio.move_on_after(0.5):
                await stream_done.wait()
            tg.cancel_scope.cancel()

        out: list[CommandResult] = []
        for r in results:
            if r.index >= len(steps):
                continue
            for kind, full in (("stdout", r.stdout), ("stderr", r.stderr)):
                seen = streamed.get(r.index, {}).get(kind, "")
                if full and len(full) > len(seen) and full.startswith(seen):
                    self._output(kind, full[len(seen) :])  # output the stream missed
            code = 0 if r.result == "Ok" else _exit_code(r.message)
            result = CommandResult(
                index=r.index,
                command=steps[r.index].describe,
                return_code=code,
                stdout=r.stdout,
                stderr=r.stderr,
                message=r.message if r.result == "Error" else None,
            )
            engine.emit(
                ev.CommandFinished(
                    service=self.name,
                    index=index,
                    command=result.command,
                    return_code=code,
                    message=result.message,
                )
            )
            out.append(result)
        return out

    async def _check_gone(self, activity_id: str, error: YagnaError) -> None:
        """After an exec error: raise ProviderGone if the activity is lost, else pause.

        ActivityGone is yagna saying the provider's ExeUnit is no longer on the bus. When
        yagna itself did not answer, that says nothing about the provider: wait for yagna to
        come back (bounded) instead of spending the caller's few retries within a second of
        a yagna restart."""
        if isinstance(error, ActivityGone):
            raise ProviderGone(f"the provider's ExeUnit is gone ({error.detail})") from error
        if isinstance(error, YagnaUnreachable):
            await self._wait_for_yagna()
        state = None
        with contextlib.suppress(YagnaError), anyio.move_on_after(6):
            state = await self.engine.client.activity_state(activity_id)
        if state is not None and state.state in VANISHED_STATES:
            raise ProviderGone(f"activity {state.state.lower()} on the provider") from error
        await anyio.sleep(1.0)

    async def _check_provider(self, attempt: int) -> None:
        """Answer the machine's CheckProvider: is this attempt's provider still there?"""
        activity_id = self.activity_id
        gone = "the activity is gone" if activity_id is None else None
        if activity_id is not None:
            gone = await self._provider_gone(activity_id)
        self.send(lc.ActivityUnresponsive(gone) if gone else lc.ProviderAlive(), attempt)

    async def _provider_gone(self, activity_id: str) -> str | None:
        """Why the provider of `activity_id` is gone, or None when it is still there.

        First the provider's yagna (it marks the activity Unresponsive/Terminated), then
        the ExeUnit itself: asking it for a batch's results is answered by the ExeUnit when
        it is there (with the results, or an error for an unknown batch) and by yagna with
        ActivityGone when it is not."""
        client = self.engine.client
        failures = 0
        while True:
            try:
                with anyio.fail_after(10):
                    state = await client.activity_state(activity_id)
                if state.state in VANISHED_STATES:
                    why = state.reason or state.error_message or f"activity {state.state.lower()}"
                    return f"provider lost the activity: {why}"
                with anyio.fail_after(10):
                    await client.exec_results(activity_id, self._last_batch or "probe", timeout=0)
                return None
            except ActivityGone as e:
                return f"the provider's ExeUnit is gone ({e.detail})"
            except YagnaUnreachable:
                await self._wait_for_yagna()
            except YagnaStatusError:
                return None  # the ExeUnit answered, if only that it knows no such batch
            except (YagnaError, TimeoutError) as e:
                failures += 1
                log.info("%s[%d]: provider check: %s", self.name, self.instance.index, e)
                if failures >= 3:
                    return "activity not answering"
                await anyio.sleep(1.0)

    async def _wait_for_yagna(self) -> None:
        """Until yagna answers again (any answer), at most YAGNA_OUTAGE_GRACE seconds."""
        with anyio.move_on_after(YAGNA_OUTAGE_GRACE):
            while True:
                try:
                    await self.engine.client.me()
                    return
                except YagnaUnreachable:
                    pass
                except YagnaError:
                    return  # it answers, if only with an error
                await anyio.sleep(1.0)

    def _output(self, stream: str, text: str) -> None:
        self.engine.emit(
            ev.CommandOutput(service=self.name, index=self.instance.index, stream=stream, text=text)
        )
        if stream == "stdout":
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if lines:
                self.instance.last_output = lines[-1][-200:]

    # ------------------------------------------------------------------- watcher

    async def _watch(self, attempt: int) -> None:
        """While this provider attempt lives: detect a vanished activity; when running,
        run health checks."""
        hc = self.cluster.healthcheck
        client = self.engine.client
        failures = 0
        await anyio.sleep(min(hc.interval, 5.0))
        running_since: float | None = None
        last_check = anyio.current_time()
        while True:
            activity_id = self.activity_id
            if activity_id is None:
                return
            state = None
            try:
                with anyio.fail_after(10):
                    state = await client.activity_state(activity_id)
                failures = 0
            except (YagnaError, TimeoutError) as e:
                failures += 1
                log.info("%s[%d]: activity state: %s", self.name, self.instance.index, e)
            if state is not None and state.state in VANISHED_STATES:
                reason = state.reason or state.error_message or f"activity {state.state.lower()}"
                self.send(lc.ActivityUnresponsive(f"provider lost the activity: {reason}"), attempt)
                return
            if failures >= 3:
                self.send(lc.ActivityUnresponsive("activity not answering"), attempt)
                return
            if (
                self.lifecycle.state is ServiceState.running
                and not self.lifecycle.checking_provider
            ):
                now = anyio.current_time()
                running_since = running_since if running_since is not None else now
                due = now - running_since >= hc.start_period and now - last_check >= hc.interval
                if hc.argv is not None and due:
                    last_check = now
                    await self._health_command(attempt, hc)
            await anyio.sleep(min(hc.interval, 5.0))

    async def _health_command(self, attempt: int, hc: HealthcheckConfig) -> None:
        activity_id = self.activity_id
        assert hc.argv is not None and activity_id is not None
        if self._exec_lock.locked():
            return  # a script is running; the ExeUnit would answer Busy
        ok, message = False, ""
        try:
            async with self._exec_lock:
                with anyio.fail_after(hc.timeout):
                    body = {
                        "entry_point": hc.argv[0],
                        "args": list(hc.argv[1:]),
                        "capture": {
                            "stdout": {"atEnd": {"tail": 512}},
                            "stderr": {"atEnd": {"tail": 512}},
                        },
                    }
                    batch = await self.engine.client.exec(activity_id, [{"run": body}])
                    while True:
                        res = await self.engine.client.exec_results(activity_id, batch, timeout=2)
                        if res and res[-1].is_batch_finished:
                            break
                    ok = res[-1].result == "Ok"
                    message = (res[-1].message or res[-1].stderr or "").strip()[-200:]
        except TimeoutError:
            message = f"no answer within {hc.timeout:g} s"
        except ActivityGone as e:
            gone = f"the provider's ExeUnit is gone ({e.detail})"
            self.send(lc.ActivityUnresponsive(gone), attempt)
            return
        except YagnaError as e:
            message = e.detail
        if ok:
            self.send(lc.HealthCheckPassed(message or "ok"), attempt)
        else:
            self.send(lc.HealthCheckFailed(message or "failed"), attempt)


def _handler_event(name: str, error: str | None) -> lc.Event:
    """The lifecycle event for handler `name` having returned (error None) or raised."""
    if name == "start":
        return lc.StartReturned() if error is None else lc.StartRaised(error)
    if name == "run":
        return lc.RunReturned() if error is None else lc.RunRaised(error)
    return lc.ShutdownReturned() if error is None else lc.ShutdownRaised(error)


def _exit_code(message: str | None) -> int:
    """yagna reports non-zero exits as "ExeScript command exited with code <n>"."""
    if message:
        tail = message.rsplit(" ", 1)[-1]
        if tail.lstrip("-").isdigit():
            return int(tail)
    return -1
