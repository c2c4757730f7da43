"""Cluster: the instances of one service class, each driven by its own InstanceRunner.

The cluster owns the service's market session (one demand, a pool of negotiated offers),
the expiration timer and the runners' task group. It knows the engine only through the
EngineContext it is given.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

import anyio
from anyio.abc import TaskGroup, TaskStatus

from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.config import HealthCheck
from golem_deploy.engine.context import EngineContext
from golem_deploy.engine.market import Demand, MarketSession
from golem_deploy.engine.network import Network
from golem_deploy.engine.payload import VmPayload
from golem_deploy.engine.runner import InstanceRunner
from golem_deploy.engine.service import InstanceSnapshot, Service
from golem_deploy.errors import GolemDeployError

__all__ = ["Cluster", "instance_params_list"]

log = logging.getLogger(__name__)


class Cluster:
    """The instances started by one `Golem.run_service` call."""

    def __init__(
        self,
        ctx: EngineContext,
        service_class: type[Service],
        *,
        payload: VmPayload,
        demand: Demand,
        expiration: datetime,
        lifecycle_config: lc.LifecycleConfig,
        healthcheck: HealthCheck,
        network: Network | None = None,
        network_addresses: Sequence[str] = (),
    ) -> None:
        self._ctx = ctx
        self.service_class = service_class
        self.service_name = service_class.service_name()
        self.payload = payload
        self.expiration = expiration
        self.lifecycle_config = lifecycle_config
        self.healthcheck = healthcheck
        self.network = network
        # instance index -> its address, when given (reserved on the network by the Golem);
        # other instances reserve the next free address when they first start
        self.network_addresses = tuple(network_addresses)
        self._runners: list[InstanceRunner] = []
        self._tg: TaskGroup | None = None
        self._active = 0
        self._finished = anyio.Event()
        self.scope = anyio.CancelScope()  # cancelled by Golem.stop if stopping takes too long
        self.done_running = anyio.Event()
        self.market = MarketSession(
            client=ctx.client,
            service=self.service_name,
            demand=demand,
            caps=ctx.price_caps,
            platform=ctx.platform,
            expiration=expiration,
            emit=ctx.emit,
            avoided=ctx.providers.is_avoided,
            busy_providers=self._busy_providers,
            expected_seconds=max(60.0, (expiration - datetime.now(UTC)).total_seconds()),
        )

    # ------------------------------------------------------------------ public API

    @property
    def instances(self) -> list[Service]:
        return [r.instance for r in self._runners]

    @property
    def finished(self) -> bool:
        """Every instance is final (terminated/unresponsive with no restart to come)."""
        return self._finished.is_set()

    def snapshot(self) -> list[InstanceSnapshot]:
        """A plain, typed copy of every instance's visible state (for supervisors and UIs)."""
        return [r.instance.snapshot() for r in self._runners]

    def stop(self) -> None:
        """Ask every instance to stop (running ones run their shutdown handler once)."""
        for runner in self._runners:
            runner.send(lc.StopRequested())

    def stop_instance(self, instance: Service) -> None:
        for runner in self._runners:
            if runner.instance is instance:
                runner.send(lc.StopRequested())

    def spawn_instances(
        self,
        num_instances: int | None = None,
        instance_params: Iterable[Mapping[str, object]] | None = None,
    ) -> list[Service]:
        """Add instances (scaling up). Returns the new Service objects."""
        if self._tg is None or self._finished.is_set():
            raise GolemDeployError(f"cluster {self.service_name} is not running")
        params = instance_params_list(num_instances, instance_params)
        new = []
        for p in params:
            instance = self.service_class(**p)
            instance.index = len(self._runners)
            instance.cluster = self
            instance._network = self.network
            if self.network is not None and instance.index < len(self.network_addresses):
                instance._network_address = self.network_addresses[instance.index]
            runner = InstanceRunner(
                self._ctx,
                self.market,
                instance,
                lifecycle_config=self.lifecycle_config,
                healthcheck=self.healthcheck,
            )
            self._runners.append(runner)
            self._active += 1
            self._tg.start_soon(self._run_instance, runner)
            new.append(instance)
        return new

    async def wait_finished(self) -> None:
        """Until every instance is final (terminated/unresponsive without restart)."""
        await self._finished.wait()

    # --------------------------------------------------------------------- internals

    def _busy_providers(self) -> list[str]:
        return [r.agreement.provider_id for r in self._runners if r.agreement is not None]

    async def _run_instance(self, runner: InstanceRunner) -> None:
        try:
            await runner.run()
        finally:
            self._active -= 1
            if self._active == 0:
                self._finished.set()

    async def run(
        self,
        initial: list[Mapping[str, object]],
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
    num_instances: int | None, instance_params: Iterable[Mapping[str, object]] | None
) -> list[Mapping[str, object]]:
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
