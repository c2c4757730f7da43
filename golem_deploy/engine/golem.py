"""Golem: the engine's entry point, an async context manager shaped like yapapi's.

    async with Golem(budget=Decimal("1.0"), event_consumer=print) as golem:
        cluster = await golem.run_service(MyService, num_instances=2)
        ...
        cluster.stop()
        await cluster.wait_finished()

Entering: GET /me, one allocation for the whole budget, its demand decorations, then the
background loops (debit notes, invoices, agreement events). Leaving: stop every cluster
(shutdown handlers run), wait for them (bounded), wait (bounded) for the invoices of every
terminated agreement and accept them within the budget, remove the networks it created,
release the allocation.
Configuration not given explicitly comes from the environment, as yapapi reads it:
YAGNA_API_URL, YAGNA_APPKEY, YAGNA_SUBNET, YAGNA_PAYMENT_DRIVER, YAGNA_PAYMENT_NETWORK, and
the per-API YAGNA_MARKET_URL, YAGNA_PAYMENT_URL, YAGNA_ACTIVITY_URL, YAGNA_NET_URL (or all
of the yagna part from a yapapi-style `api_config=ApiConfig(...)`).

Size: yapapi's whole `Golem` surface (start/stop, run_service, create_network) in one place;
what each part does lives in the modules it calls.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import anyio
from anyio.abc import TaskGroup

from golem_deploy.engine import events as ev
from golem_deploy.engine import lifecycle as lc
from golem_deploy.engine import yapapi_events as ye
from golem_deploy.engine.api_config import ApiConfig
from golem_deploy.engine.cluster import (
    Cluster,
    ServiceType,
    instance_params_list,
    reserve_addresses,
)
from golem_deploy.engine.config import HealthCheck, PriceCaps, RestartPolicy
from golem_deploy.engine.context import AgreementRouter, EngineContext, Providers
from golem_deploy.engine.dispatch import (
    EventClass,
    EventConsumer,
    EventDispatcher,
    YapapiEvents,
    event_classes,
)
from golem_deploy.engine.images import resolve_payload
from golem_deploy.engine.market import Demand, build_demand
from golem_deploy.engine.network import Network
from golem_deploy.engine.payload import VmPayload
from golem_deploy.engine.payment_terms import PaymentTerms
from golem_deploy.engine.payments import PaymentManager
from golem_deploy.engine.run_args import (
    DEFAULT_EXPIRATION,
    EngineError,
    _class_default,
    check_hooks,
    expiration_time,
)
from golem_deploy.engine.service import Storage
from golem_deploy.engine.storage import GsbApiStorage
from golem_deploy.engine.strategy import BaseMarketStrategy, decorate, default_strategy
from golem_deploy.engine.summary import log_event_repr, log_summary
from golem_deploy.engine.timing import Timings
from golem_deploy.errors import GolemDeployError
from golem_deploy.protocol import payment_platform
from golem_deploy.yagna.client import YagnaClient, YagnaConfig
from golem_deploy.yagna.errors import YagnaError, YagnaStatusError
from golem_deploy.yagna.net import NetApi

__all__ = ["DEFAULT_EXPIRATION", "EngineError", "Golem", "expiration_time"]

log = logging.getLogger(__name__)


class Golem:
    """The requestor engine for one deployment (one allocation, one event stream)."""

    def __init__(
        self,
        budget: Decimal | float | str,
        subnet_tag: str | None = None,
        payment_driver: str | None = None,
        payment_network: str | None = None,
        *,
        api_url: str | None = None,
        app_key: str | None = None,
        api_config: ApiConfig | None = None,
        event_consumer: Callable[[ev.EngineEvent], None] | None = None,
        max_price: PriceCaps | None = None,
        blacklist: Iterable[str] = (),
        stop_timeout: float = 60.0,
        invoice_timeout: float = 30.0,
        storage: Storage | None = None,
        timings: Timings | None = None,
        stream_output: bool = True,
        resolve_images: bool = True,
        payment_terms: PaymentTerms | None = None,
        strategy: BaseMarketStrategy | None = None,
    ) -> None:
        """`payment_terms`: the debit-note interval and mid-agreement payments to negotiate
        (engine/payment_terms.py; default: yapapi's rules).

        `stream_output` is yapapi's flag, accepted for porting: output is always streamed
        here (`CommandOutput` events as it arrives) and always in the results as well, so
        either value gives what a yapapi program expects of it.

        `api_config` (yapapi's `ApiConfig`) gives the yagna's URLs, per-API ones included,
        and app key in one object; it excludes `api_url` and `app_key`.
        `resolve_images=False`: never ask the image registry (engine/images.py says when it
        is asked otherwise).
        `strategy` scores offers and may decorate demands (engine/strategy.py; default:
        yapapi's, `strategy.default_strategy()`); `max_price` and `blacklist` are checked
        before it."""
        del stream_output
        if api_config is not None and (api_url is not None or app_key is not None):
            raise EngineError(
                "api_config and api_url/app_key given together",
                hint="put the URL and the app key in the ApiConfig",
            )
        self._api_config = api_config
        try:
            self.budget = Decimal(str(budget))
        except InvalidOperation:
            raise EngineError(f"budget {budget!r} is not a number") from None
        if not self.budget.is_finite() or self.budget <= 0:
            raise EngineError(f"budget must be a positive amount, got {budget}")
        self.subnet_tag = subnet_tag or os.environ.get("YAGNA_SUBNET") or "public"
        self.payment_driver = payment_driver or os.environ.get("YAGNA_PAYMENT_DRIVER") or "erc20"
        self.payment_network = (
            payment_network or os.environ.get("YAGNA_PAYMENT_NETWORK") or "holesky"
        )
        self.platform = payment_platform(self.payment_driver, self.payment_network)
        self._api_url = api_url
        self._app_key = app_key
        self._consumer = event_consumer
        # yapapi's add_event_consumer: consumers that see yapapi-shaped events (or engine
        # events) and whose failures are logged, never fatal (engine/dispatch.py)
        self._extra = EventDispatcher()
        self._yapapi = YapapiEvents(self.subnet_tag)
        if event_consumer is None:  # yapapi's default consumer: a summary log
            self.add_event_consumer(log_summary(log_event_repr))
        self.price_caps = max_price if max_price is not None else PriceCaps()
        self.payment_terms = payment_terms or PaymentTerms()
        self.strategy = strategy if strategy is not None else default_strategy()
        self.timings = timings or Timings()
        self.stop_timeout = stop_timeout
        self.invoice_timeout = invoice_timeout
        self.storage: Storage | None = storage
        self.resolve_images = resolve_images
        self._providers = Providers(self.emit, blacklist, avoid_for=self.timings.avoid_for)
        self._router = AgreementRouter()
        self._ctx: EngineContext | None = None
        self._clusters: list[Cluster] = []
        self._networks: list[Network] = []
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._client: YagnaClient | None = None
        self._payments: PaymentManager | None = None
        self.node_id: str | None = None

    def __repr__(self) -> str:
        return f"Golem(budget={self.budget}, subnet={self.subnet_tag!r}, platform={self.platform})"

    # -------------------------------------------------------------- public state

    @property
    def spent(self) -> Decimal:
        """GLM accepted so far (debit notes + invoices); never above `budget`."""
        return self._payments.spent if self._payments is not None else Decimal(0)

    @property
    def clusters(self) -> list[Cluster]:
        return list(self._clusters)

    def network_lost(self, reason: str) -> None:
        """The network under every instance died with their activities (the supervisor's
        private local network lost a daemon): each instance vanished by nobody's fault and
        its restart policy decides (lifecycle NetworkLost); their releases wait for
        `network_back()` (at most Timings.yagna_outage_grace) to end the agreements."""
        if self._ctx is not None:
            self._ctx.network.close()
        for cluster in self._clusters:
            cluster.network_lost(reason)

    async def recreate_networks(self) -> None:
        """After `network_lost`, once the restarted yagna answers: every VPN again in it
        (yagna keeps networks in memory only; Network.recreate), before `network_back()`
        lets the lost instances be released and placed again. Journaled as the old network
        removed and the new one created, so a `down` after a crash removes the right one."""
        for network in self.networks:
            old = await network.recreate()
            self.emit(ev.NetworkRemoved(network_id=old))
            self.emit(ev.NetworkCreated(network_id=network.network_id, cidr=network.cidr))

    def network_back(self) -> None:
        """The network is there again (or will not be: call it after a failed restart too)."""
        if self._ctx is not None:
            self._ctx.network.open()

    @property
    def networks(self) -> list[Network]:
        """The networks created by `create_network` and not removed yet."""
        return [n for n in self._networks if not n.removed]

    @property
    def unpaid_agreements(self) -> list[str]:
        """Terminated agreements whose invoice has not been accepted (yet, or in time)."""
        return self._payments.unpaid() if self._payments is not None else []

    @property
    def avoided_providers(self) -> dict[str, str]:
        """provider id -> why we do not sign with it now (engine/context.py: AVOID_FOR)."""
        providers = self._providers
        return {p: why for p, why in list(providers.avoided.items()) if providers.is_avoided(p)}

    # ------------------------------------------------------------ engine internals

    @property
    def client(self) -> YagnaClient:
        if self._client is None:
            raise EngineError("Golem used outside `async with`")
        return self._client

    @property
    def payments(self) -> PaymentManager:
        if self._payments is None:
            raise EngineError("Golem used outside `async with`")
        return self._payments

    def emit(self, event: ev.EngineEvent) -> None:
        """Hand one event to the consumer, synchronously, before anything else happens;
        then to the consumers added with `add_event_consumer` (with the yapapi-shaped
        events it stands for)."""
        self._emit_from(None, event)

    def _emit_from(self, cluster: Cluster | None, event: ev.EngineEvent) -> None:
        """`emit` for an event of `cluster` (None: of the Golem itself)."""
        log.debug("event %s", event)
        if self._consumer is not None:
            self._consumer(event)
        if not self._extra:
            return
        self._extra.dispatch(event)
        try:
            made = self._yapapi.translate(event, cluster)
        except Exception:  # a bug here must not stop a deployment: these are extras
            log.exception("cannot make yapapi-shaped events of %s", type(event).__name__)
            return
        for yapapi_event in made:
            self._extra.dispatch(yapapi_event)

    def add_event_consumer(
        self,
        event_consumer: EventConsumer,
        event_classes_or_names: Iterable[EventClass | str] = (ye.Event,),
    ) -> None:
        """yapapi's: call `event_consumer` with every event of the given classes (or class
        names; default: every yapapi-shaped event, `yapapi_events.Event`). Engine events
        (`events.EngineEvent` and its classes) may be asked for too. A consumer that raises
        is logged and skipped; it never stops the deployment."""
        self._extra.add(event_consumer, event_classes(event_classes_or_names))

    def is_avoided(self, provider_id: str) -> bool:
        return self._providers.is_avoided(provider_id)

    def avoid(self, provider_id: str, provider_name: str, reason: str) -> None:
        self._providers.avoid(provider_id, provider_name, reason)

    def build_demand(self, payload: VmPayload, expiration: datetime) -> Demand:
        decoration = self.payments.decoration
        assert decoration is not None
        return build_demand(
            payload, subnet=self.subnet_tag, expiration=expiration, decoration=decoration
        )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Golem:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._api_config is not None:
            config = self._api_config.yagna_config()
        else:
            config = YagnaConfig.from_env(self._api_url, self._app_key)
        async with AsyncExitStack() as stack:
            self._client = await stack.enter_async_context(YagnaClient(config))
            identity = await self._client.me()
            self.node_id = identity.node_id
            self._payments = PaymentManager(
                self._client,
                budget=self.budget,
                platform=self.platform,
                emit=self.emit,
                on_over_budget=self._over_budget,
                on_misbehaving=self._misbehaving,
            )
            try:
                await self._payments.open(identity.node_id)
            except YagnaStatusError as e:
                raise YagnaStatusError(
                    e.status,
                    f"cannot create an allocation of {self.budget} on {self.platform}: {e.detail}",
                    e.request,
                    hint="is the payment account initialised? "
                    f"(`yagna payment init --sender --driver {self.payment_driver} "
                    f"--network {self.payment_network}`)",
                ) from e
            stack.push_async_callback(self._payments.close)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            self._tg.start_soon(self._payments.run)
            self._tg.start_soon(self._agreement_events)
            if self.storage is None:
                gsb_storage = GsbApiStorage(self._client, identity.node_id)
                await self._tg.start(gsb_storage.run)
                self.storage = gsb_storage
            self._ctx = EngineContext(
                client=self._client,
                payments=self._payments,
                storage=self.storage,
                emit=self.emit,
                providers=self._providers,
                platform=self.platform,
                price_caps=self.price_caps,
                payment_terms=self.payment_terms,
                timings=self.timings,
                router=self._router,
                strategy=self.strategy,
            )
            self._stack = stack.pop_all()

    async def stop(self, wait_for_payments: bool = True) -> None:
        """Stop every cluster, settle payments, release the allocation (idempotent).

        With `wait_for_payments=False` (yapapi's flag) invoices already received are
        accepted, but none is waited for: the unpaid agreements are logged and listed in
        `unpaid_agreements`."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            await self._stop(stack, wait_for_payments)
        except BaseException:
            self._extra.dispatch(ye.ShutdownFinished(exc_info=_exc_info()))
            raise
        self._extra.dispatch(ye.ShutdownFinished())

    async def _stop(self, stack: AsyncExitStack, wait_for_payments: bool) -> None:
        # Every step is bounded; when the caller cancels us (a supervisor's deadline), the
        # runners' and the allocation's own shielded, bounded cleanup still runs.
        try:
            for cluster in self._clusters:
                cluster.stop()
            with anyio.move_on_after(self.stop_timeout):
                for cluster in self._clusters:
                    await cluster.wait_finished()
            for cluster in self._clusters:
                if not cluster.finished:
                    log.warning("cluster %s did not stop in time", cluster.service_name)
            await self._cancel_clusters()
            wait = self.invoice_timeout if wait_for_payments else 0.0
            unpaid = await self.payments.settle(wait)
            if unpaid:
                log.warning("no invoice arrived for agreements %s", ", ".join(unpaid))
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
        finally:
            await self._remove_networks()
            # not inside another cancel scope: the stack holds our task group, whose own
            # scope must be the current one when it exits
            await stack.aclose()
            self._tg = None
            self._client = None
            self._ctx = None

    async def _remove_networks(self) -> None:
        """Delete every network still in yagna (shielded and bounded, like all cleanup). One
        that cannot be deleted is not reported removed, so a journal keeps it for `down`."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.timings.release_patience):
            for network in self.networks:
                try:
                    await network.remove()
                except YagnaError as e:
                    log.warning("cannot remove network %s: %s", network.network_id, e)

    async def create_network(
        self,
        ip: str,
        owner_ip: str | None = None,
        mask: str | None = None,
        gateway: str | None = None,
    ) -> Network:
        """Create a VPN in yagna (yapapi's signature): ``ip`` is the range in CIDR form, or
        an address with ``mask``; the requestor is ``owner_ip`` (default: the first host).

        Use it with ``async with`` to remove it early; whatever is left is removed when the
        Golem exits, after its clusters stopped."""
        if self._client is None or self.node_id is None:
            raise EngineError("create_network needs `async with Golem(...)` first")
        network = await Network.create(
            NetApi(self._client),
            ip,
            self.node_id,
            owner_ip=owner_ip,
            mask=mask,
            gateway=gateway,
        )
        network.on_removed = self._network_removed
        self._networks.append(network)
        self.emit(ev.NetworkCreated(network_id=network.network_id, cidr=network.cidr))
        return network

    def _network_removed(self, network: Network) -> None:
        self.emit(ev.NetworkRemoved(network_id=network.network_id))

    async def _cancel_clusters(self) -> None:
        for cluster in self._clusters:
            if cluster.finished:
                cluster.close()
            else:
                cluster.scope.cancel()
        with anyio.move_on_after(self.timings.cluster_cancel_grace):
            for cluster in self._clusters:
                await cluster.done_running.wait()

    async def run_service(
        self,
        service_class: type[ServiceType],
        num_instances: int | None = None,
        instance_params: Iterable[Mapping[str, object]] | None = None,
        payload: VmPayload | None = None,
        expiration: datetime | timedelta | None = None,
        respawn_unstarted_instances: bool | None = None,
        *,
        network: Network | None = None,
        network_addresses: Sequence[str] | None = None,
        restart: RestartPolicy | None = None,
        healthcheck: HealthCheck | None = None,
        renewal: lc.RenewalPolicy | None = None,
    ) -> Cluster[ServiceType]:
        """Start `num_instances` instances of `service_class`; returns their Cluster.

        `restart`, `healthcheck` and `respawn_unstarted_instances` default to the class
        attributes of the same name when they have the engine's types (the compiler sets
        them from the manifest); `expiration` is an absolute datetime (naive: local time) or
        a timedelta from now (default 180 min). On a `network`,
        instance i takes `network_addresses[i]` (when given; else the next free address when
        it first starts) and keeps it on every provider it moves to. With a `renewal`
        policy the instances outlive `expiration`: each agreement lasts `renewal.agreement`
        seconds and instances are renewed on fresh ones (engine/renewal.py) for the policy's
        lifetime; without one they stop at `expiration`, as yapapi's."""
        if self._tg is None or self._ctx is None:
            raise EngineError("run_service needs `async with Golem(...)` first")
        restart = restart or _class_default(service_class, "restart", RestartPolicy)
        hc = healthcheck or _class_default(service_class, "healthcheck", HealthCheck)
        check_hooks(service_class, hc)
        addresses = _reserve(network, network_addresses)
        if payload is None:
            payload = await service_class.get_payload()
        if payload is None:
            raise EngineError(
                f"{service_class.__name__}.get_payload() returned None and no payload was given"
            )
        if self.resolve_images:  # vm.repo(image_tag=...) as yapapi resolves it
            payload = await resolve_payload(payload, subnet=self.subnet_tag, warn=log.warning)
        now = datetime.now(UTC)
        expires = expiration_time(expiration, now)
        if expires <= now:
            raise EngineError(
                f"expiration {expires.isoformat()} is in the past (now {now.isoformat()})",
                hint="a datetime without tzinfo is local time, as in yapapi; "
                "or pass a timedelta from now",
            )
        if respawn_unstarted_instances is None:
            respawn = _class_default(service_class, "respawn_unstarted_instances", bool)
            respawn_unstarted_instances = respawn is not False
        restart = restart or RestartPolicy()
        hc = hc or HealthCheck()
        config = lc.LifecycleConfig(
            respawn_unstarted_instances=respawn_unstarted_instances,
            restart_policy=restart.policy,
            max_restarts=restart.max_restarts,
            backoff=restart.backoff,
            healthcheck_retries=hc.retries,
        )
        params = _params(num_instances, instance_params)
        # The cluster's events go through `_emit_from`, so the yapapi-shaped ones made of
        # them name its own instances (engine events name instances by service and index).
        made: list[Cluster] = []
        ctx = replace(self._ctx, emit=lambda event: self._emit_from(made[0], event))
        cluster = Cluster(
            ctx,
            service_class,
            payload=payload,
            demand=await decorate(self.strategy, self.build_demand(payload, expires)),
            expiration=expires,
            lifecycle_config=config,
            healthcheck=hc,
            network=network,
            network_addresses=addresses,
            renewal=renewal,
        )
        made.append(cluster)
        self._clusters.append(cluster)
        cluster.peers = lambda: self.clusters  # names follow renewals across services
        await self._tg.start(self._run_cluster, cluster, params)
        return cluster

    async def _run_cluster(
        self,
        cluster: Cluster,
        params: list[Mapping[str, object]],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        job = YapapiEvents.job(cluster)
        self._extra.dispatch(ye.JobStarted(job=job))
        try:
            with cluster.scope:
                await cluster.run(params, task_status=task_status)
        except BaseException:
            self._extra.dispatch(ye.JobFinished(job=job, exc_info=_exc_info()))
            raise
        else:
            self._extra.dispatch(ye.JobFinished(job=job))
        finally:
            cluster.done_running.set()

    # ------------------------------------------------------------------ callbacks

    def _over_budget(self, agreement_id: str, reason: str) -> None:
        self._router.send(agreement_id, lc.StopRequested(reason))

    def _misbehaving(self, agreement_id: str, reason: str) -> None:
        self._router.send(agreement_id, lc.ProviderMisbehaved(reason))

    async def set_budget(self, budget: Decimal) -> None:
        """Change the budget of the running engine (its allocation is amended in yagna);
        ValueError below what was spent, YagnaError when yagna refuses."""
        if self._payments is None:
            raise GolemDeployError("the engine is not running: no budget to change")
        await self._payments.set_budget(budget)

    def burn_rate(self) -> Decimal | None:
        """GLM per hour at the current pace (engine/burn.py); None until it is known."""
        return self._payments.burn.per_hour() if self._payments is not None else None

    async def _agreement_events(self) -> None:
        """Learn about agreements the provider terminated (yapapi misses these)."""
        cursor: str | None = datetime.now(UTC).isoformat()
        poll = self.timings.agreement_events_poll
        while True:
            try:
                events = await self.client.agreement_events(cursor, timeout=poll)
            except YagnaError as e:
                log.debug("agreement events: %s", e)
                await anyio.sleep(self.timings.negotiation_retry)
                continue
            for event in events:
                cursor = event.event_date
                if event.event_type != "AgreementTerminatedEvent":
                    continue
                if (event.terminator or "").lower() != "provider":
                    continue
                reason = f"provider terminated the agreement: {event.reason or '-'}"
                self._router.send(event.agreement_id, lc.AgreementTerminatedByProvider(reason))


def _exc_info() -> ye.ExcInfo:
    """`sys.exc_info()` inside an `except` block, typed as never empty."""
    error = sys.exc_info()[1]
    assert error is not None
    return (type(error), error, error.__traceback__)


def _reserve(network: Network | None, addresses: Sequence[str] | None) -> tuple[str, ...]:
    """Hold the given addresses on the network for the cluster's instances (all or none)."""
    try:
        return reserve_addresses(network, addresses)
    except GolemDeployError as e:
        raise EngineError(str(e)) from e


def _params(
    num_instances: int | None, instance_params: Iterable[Mapping[str, object]] | None
) -> list[Mapping[str, object]]:
    if num_instances is not None and num_instances < 0:
        raise EngineError("num_instances must be >= 0")
    return instance_params_list(num_instances, instance_params)
