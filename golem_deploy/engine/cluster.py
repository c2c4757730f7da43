"""Cluster: the instances of one service class, each driven by its own InstanceRunner.

The cluster owns the service's market session (one demand, a pool of negotiated offers),
the expiration timer and the runners' task group. It knows the engine only through the
EngineContext it is given.

A cluster lives until the Golem stops or `terminate()` is awaited, not only while it has
instances: as in yapapi, `spawn_instances` works on an empty cluster and on one whose
instances all finished. The market runs while there are instances to serve (a finished
cluster unsubscribes its demand; spawning into it subscribes again).

Size: a little over 400 lines; who holds each index, who replaces it and who is retiring
reads best in one class.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Generic

import anyio
from anyio.abc import TaskGroup, TaskStatus
from typing_extensions import TypeVar  # a default, so a bare `Cluster` means Cluster[Service]

from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine.config import HealthCheck
from golem_deploy.engine.context import EngineContext
from golem_deploy.engine.market import Demand, MarketSession
from golem_deploy.engine.network import Network, NetworkError
from golem_deploy.engine.payload import VmPayload
from golem_deploy.engine.renewal import Renewer
from golem_deploy.engine.runner import InstanceRunner
from golem_deploy.engine.service import InstanceSnapshot, Service, record_of
from golem_deploy.errors import GolemDeployError

__all__ = ["Cluster", "ServiceType", "instance_params_list", "reserve_addresses"]

log = logging.getLogger(__name__)
ServiceType = TypeVar("ServiceType", bound=Service, default=Service, covariant=True)


class Cluster(Generic[ServiceType]):
    """The instances started by one `Golem.run_service` call (`Cluster[MyService]`)."""

    def __init__(
        self,
        ctx: EngineContext,
        service_class: type[ServiceType],
        *,
        payload: VmPayload,
        demand: Demand,
        expiration: datetime,
        lifecycle_config: lc.LifecycleConfig,
        healthcheck: HealthCheck,
        network: Network | None = None,
        network_addresses: Sequence[str] = (),
        renewal: lc.RenewalPolicy | None = None,
    ) -> None:
        self._ctx = ctx
        # None: instances end with `expiration` (yapapi's); else they are renewed on fresh
        # agreements before theirs end, for the policy's lifetime (engine/renewal.py)
        self.renewal = renewal
        self.started_at = datetime.now(UTC)
        self._retiring: list[InstanceRunner] = []  # replaced, draining or stopping
        self._successors: list[InstanceRunner] = []  # a renewal's replacements, starting
        self.stopping = False  # stop() was called: renew nothing any more
        self.id = str(uuid.uuid4())
        self.service_class = service_class
        self.service_name = service_class.service_name()
        self.payload = payload
        self.expiration = expiration
        self.lifecycle_config = lifecycle_config
        self.healthcheck = healthcheck
        self.network = network
        # Every cluster on the same Golem (the Golem sets it): a renewal tells all their
        # instances where the renewed instance's names point now (engine/names.py).
        self.peers: Callable[[], Sequence[Cluster]] = lambda: [self]
        # instance index -> its address, when given (reserved on the network by the Golem);
        # other instances reserve the next free address when they first start
        self.network_addresses = tuple(network_addresses)
        self._runners: list[InstanceRunner] = []
        self._tg: TaskGroup | None = None
        self._market_scope: anyio.CancelScope | None = None
        self._active = 0
        self._finished = anyio.Event()
        self._closed = anyio.Event()
        self.scope = anyio.CancelScope()  # cancelled by Golem.stop if stopping takes too long
        self.done_running = anyio.Event()
        self._demand = demand
        self.market = self._new_market()

    def __repr__(self) -> str:
        return f"Cluster {self.id}: {len(self._runners)}x[Service: {self.service_name}]"

    # ------------------------------------------------------------------ public API

    @property
    def instances(self) -> list[ServiceType]:
        return [r.instance for r in self._runners]  # type: ignore[misc]  # made from service_class

    @property
    def finished(self) -> bool:
        """Every instance is final (terminated/unresponsive with no restart to come)."""
        return self._finished.is_set()

    @property
    def ctx(self) -> EngineContext:
        return self._ctx

    @property
    def runners(self) -> list[InstanceRunner]:
        """The runner holding each index, in index order (engine/renewal.py reads them)."""
        return list(self._runners)

    @property
    def draining(self) -> list[Service]:
        """Replaced instances that still run while their connections drain."""
        return [r.instance for r in self._retiring if not r.done.is_set()]

    @property
    def serving(self) -> list[Service]:
        """Instances new connections through forwarded ports go to: all but the retiring."""
        return [r.instance for r in self._runners if r not in self._retiring]

    def retire(self, instance: Service) -> InstanceRunner | None:
        """A change replaced `instance` (supervisor/reconcile.py): it keeps running and
        serving the connections it has, but gets no new one, until it is stopped."""
        for runner in self._runners:
            if runner.instance is instance:
                if runner not in self._retiring:
                    self._retiring.append(runner)
                return runner
        return None

    def snapshot(self) -> list[InstanceSnapshot]:
        """A plain, typed copy of every instance's visible state (for supervisors and UIs)."""
        return [r.record.snapshot() for r in self._runners]

    def stop(self) -> None:
        """Ask every instance to stop (running ones run their shutdown handler once)."""
        self.stopping = True
        for runner in dict.fromkeys((*self._runners, *self._successors, *self._retiring)):
            runner.send(lc.StopRequested())

    def network_lost(self, reason: str) -> None:
        """The network under every instance died with their activities (the supervisor's
        local network lost a daemon): each one vanished, by nobody's fault, and its restart
        policy decides what follows (lifecycle's NetworkLost)."""
        for runner in self._runners:
            runner.send(lc.NetworkLost(reason))

    def stop_instance(self, instance: Service) -> None:
        for runner in self._runners:
            if runner.instance is instance:
                runner.send(lc.StopRequested())

    async def terminate(self, timeout: float = 60.0) -> None:
        """Stop every instance, wait (at most `timeout` seconds, then cancel them) until
        they finished, and end the cluster: it spawns no more instances (yapapi's)."""
        self.stop()
        with anyio.move_on_after(timeout):
            await self._finished.wait()
        if not self.finished:
            log.warning("cluster %s did not stop in %g s: cancelled", self.service_name, timeout)
            self.scope.cancel()
        self.close()
        await self.done_running.wait()

    def close(self) -> None:
        """End the cluster's task once its instances finished (Golem.stop does this)."""
        self._closed.set()

    def spawn_instances(
        self,
        num_instances: int | None = None,
        instance_params: Iterable[Mapping[str, object]] | None = None,
        network_addresses: Sequence[str] | None = None,
        *,
        indices: Sequence[int] | None = None,
    ) -> list[ServiceType]:
        """Add instances (scaling up; also to an empty or finished cluster, as yapapi).
        On the cluster's network the k-th new instance takes `network_addresses[k]` when
        given (reserved here), else the next free address. Returns the new Services.

        `indices` (golem-deploy's reconciler) names the k-th new instance `indices[k]`
        instead of the next position: a replacement takes over the index it replaces, and
        scaling up after scaling down reuses the indices that were stopped."""
        return self._spawn(num_instances, instance_params, network_addresses, (), indices)

    def _spawn(
        self,
        num_instances: int | None,
        instance_params: Iterable[Mapping[str, object]] | None,
        network_addresses: Sequence[str] | None,
        reserved: Sequence[str],
        indices: Sequence[int] | None = None,
    ) -> list[ServiceType]:
        """spawn_instances, with `reserved` the addresses already held for the new ones."""
        if self._tg is None or self._closed.is_set():
            raise GolemDeployError(f"cluster {self.service_name} is not running (terminated)")
        if self.renewal is None and self.expiration <= datetime.now(UTC):
            raise GolemDeployError(
                f"cluster {self.service_name} expired at {self.expiration.isoformat()}",
                hint="run_service again with a later expiration",
            )
        params = instance_params_list(num_instances, instance_params)
        wanted = list(network_addresses or ())[: len(params)]  # yapapi ignores the rest
        addresses = tuple(reserved) or reserve_addresses(self.network, wanted)
        if params and self._market_scope is None:
            # (again) instances to serve: a market of their own (the drafts a finished
            # market kept belong to its ended subscription)
            if self._runners:
                self.market = self._new_market()
            self._market_scope = anyio.CancelScope()
            self._tg.start_soon(self._run_market, self._market_scope)
        self.stopping = False
        if params and self._finished.is_set():
            self._finished = anyio.Event()  # not finished any more: waiters wait anew
        new = []
        make: Callable[..., ServiceType] = self.service_class  # **params: the user's
        for k, p in enumerate(params):
            instance = make(**p)
            record = record_of(instance)
            record.service = self.service_name
            record.index = indices[k] if indices and k < len(indices) else len(self._runners)
            record.cluster = self
            record.network = self.network
            if self.network is not None and k < len(addresses):
                record.network_address = addresses[k]
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

    def start_successor(self, index: int) -> InstanceRunner:
        """Start a replacement for instance `index` on a fresh agreement, beside the one
        holding the index (engine/replace.py): a new object of the service class with the
        same parameters, on the cluster's current market, at a free network address (the
        planned one when it is free). It holds nothing of the old one's until `promote`."""
        if self._tg is None or self._closed.is_set() or self.stopping:
            raise GolemDeployError(f"cluster {self.service_name} is stopping: nothing to renew")
        old = record_of(self._runners[index].instance)
        make: Callable[..., ServiceType] = self.service_class
        instance = make(**old.params)
        record = record_of(instance)
        record.service, record.index, record.cluster = self.service_name, index, self
        record.network = self.network
        record.renewals = old.renewals
        record.restarts = old.restarts
        if self.network is not None and index < len(self.network_addresses):
            planned = self.network_addresses[index]
            with contextlib.suppress(NetworkError):  # taken: the next free one, at start
                record.network_address = self.network.reserve(planned)
        runner = InstanceRunner(
            self._ctx,
            self.market,
            instance,
            lifecycle_config=self.lifecycle_config,
            healthcheck=self.healthcheck,
        )
        runner.role = "successor"
        runner.lifecycle.restarts = self._runners[index].lifecycle.restarts
        self._successors.append(runner)
        self._active += 1
        self._tg.start_soon(self._run_instance, runner)
        return runner

    def promote(self, successor: InstanceRunner) -> InstanceRunner:
        """The successor holds its index from now on; returns the runner it replaced, which
        keeps running (draining) until the caller stops it."""
        index = successor.record.index
        old = self._runners[index]
        self._runners[index] = successor
        successor.role, old.role = "", "retiring"
        if successor in self._successors:
            self._successors.remove(successor)
        successor.record.renewals += 1
        self._retiring.append(old)
        successor.record.cost += old.record.cost  # the instance's cost so far, and to come:
        for retiring in self._retiring:
            if retiring.record.index == index:
                retiring.provider.cost_record = successor.record
        return old

    def retired(self, runner: InstanceRunner) -> None:
        """A replaced runner finished: forget it and give back its network address."""
        for pending in (self._retiring, self._successors):
            if runner in pending:
                pending.remove(runner)
        address = runner.record.network_address
        network = self.network
        held = any(r.record.network_address == address for r in self._runners)
        if network is not None and address is not None and not network.removed and not held:
            network.unreserve(address)

    async def wait_finished(self) -> None:
        """Until every instance is final (terminated/unresponsive without restart)."""
        while not self._finished.is_set():
            await self._finished.wait()  # a spawn into a finished cluster makes a new event

    # --------------------------------------------------------------------- internals

    def _new_market(self) -> MarketSession:
        ctx, expiration = self._ctx, self.expiration
        return MarketSession(
            client=ctx.client,
            service=self.service_name,
            demand=self._demand,
            caps=ctx.price_caps,
            payment_terms=ctx.payment_terms,
            platform=ctx.platform,
            expiration=expiration,
            emit=ctx.emit,
            avoided=ctx.providers.is_avoided,
            busy_providers=self._busy_providers,
            strategy=ctx.strategy,
            max_lanes=ctx.timings.market_lanes,
            expected_seconds=max(60.0, (expiration - datetime.now(UTC)).total_seconds()),
        )

    def _busy_providers(self) -> list[str]:
        return [r.agreement.provider_id for r in self._runners if r.agreement is not None]

    async def _run_market(self, scope: anyio.CancelScope) -> None:
        """Negotiate while some instance may need a provider (unsubscribes when cancelled)."""
        with scope:
            await self.market.collect()

    async def _run_instance(self, runner: InstanceRunner) -> None:
        try:
            await runner.run()
        finally:
            self._active -= 1
            if self._active == 0:
                if self._market_scope is not None:
                    self._market_scope.cancel()
                    self._market_scope = None
                self._finished.set()

    async def run(
        self,
        initial: list[Mapping[str, object]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """The cluster's task: negotiation, expiration timer and instance runners, until
        it is closed (its instances finished by then) or cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.renewal is None:
                tg.start_soon(self._expiration_timer)
            else:
                tg.start_soon(Renewer(self, self.renewal, self._ctx).run)
            if initial:
                self._spawn(None, initial, None, self.network_addresses)
            else:
                self._finished.set()
            task_status.started()
            await self._closed.wait()
            await self.wait_finished()
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


def reserve_addresses(network: Network | None, addresses: Sequence[str] | None) -> tuple[str, ...]:
    """Hold the given addresses on `network` for new instances (all or none)."""
    if not addresses:
        return ()
    if network is None:
        raise GolemDeployError("network_addresses given without a network")
    if network.removed:
        raise GolemDeployError(f"{network} was removed")
    if len(set(addresses)) != len(addresses):
        raise GolemDeployError(f"network_addresses has duplicates: {list(addresses)}")
    reserved: list[str] = []
    try:
        for address in addresses:
            reserved.append(network.reserve(address))
    except NetworkError as e:
        for address in reserved:
            network.unreserve(address)
        raise GolemDeployError(str(e)) from e
    return tuple(reserved)
