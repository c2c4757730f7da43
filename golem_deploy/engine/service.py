"""The Services API users (and the compiler) program against: Service and WorkContext.

Shaped like yapapi 0.13 so yapapi users feel at home: a Service subclass defines
`get_payload()` and the async generators `start()`, `run()` and `shutdown()`; each yields
Scripts (engine/script.py) built with `self._ctx.new_script()`. yapapi's hooks `reset()` and
`is_activity_responsive()` are honoured; an override of `restart_condition` is refused by
`run_service` (restarts follow its `restart=` policy).

The engine keeps what it knows about an instance in an `InstanceRecord` stored under one
private, name-mangled attribute, never in the user's namespace: a subclass may have its own
`index`, `cost` or `healthcheck` without the engine overwriting or tripping over them. The
public names are yapapi's (`id`, `state`, `provider_id`, `provider_name`, `cluster`,
`network`, `network_node`, `exc_info`, `is_available`) plus `snapshot()`.

Size: Service and WorkContext are one surface for users (yapapi's), with the engine's
private record of an instance beside them; splitting them would split that surface.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field, is_dataclass
from dataclasses import fields as dc_fields
from datetime import UTC, datetime
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.network import DeployArgs, Network, Node
from golem_deploy.engine.offers import LinearPricing
from golem_deploy.engine.payload import VmPayload
from golem_deploy.engine.script import (
    DOWNLOAD_BYTES_LIMIT_DEFAULT,
    BatchError,
    BatchTimeoutError,
    CommandExecutionError,
    CommandFailed,
    CommandResult,
    Script,
    StepFuture,
    Storage,
    _Step,
)
from golem_deploy.errors import GolemDeployError
from golem_deploy.yagna.client import YagnaClient
from golem_deploy.yagna.errors import YagnaError
from golem_deploy.yagna.models import ActivityState
from golem_deploy.yagna.models import ActivityUsage as RawUsage

if TYPE_CHECKING:
    from datetime import timedelta

    from golem_deploy.engine.cluster import Cluster

__all__ = [
    "DOWNLOAD_BYTES_LIMIT_DEFAULT",
    "ActivityUsage",
    "BatchError",
    "BatchTimeoutError",
    "CommandExecutionError",
    "CommandFailed",
    "CommandResult",
    "ExcInfo",
    "ImageDownload",
    "InstanceRecord",
    "InstanceSnapshot",
    "Script",
    "Service",
    "StepFuture",
    "Storage",
    "WorkContext",
    "_Step",
    "record_of",
]

#: What `sys.exc_info()` returns: the exception behind an instance's last state change.
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
NO_EXC: ExcInfo = (None, None, None)


@dataclass
class ActivityUsage:
    """yapapi's usage record: counter name -> value, and when yagna heard it."""

    current_usage: dict[str, float] = field(default_factory=dict)
    timestamp: datetime | None = None


class WorkContext:
    """The handle a Service gets on its current activity (`self._ctx`); `id` is the
    activity's id, as in yapapi."""

    def __init__(
        self,
        *,
        activity_id: str,
        agreement_id: str,
        provider_id: str,
        provider_name: str,
        client: YagnaClient | None = None,
        emit: Callable[[ev.EngineEvent], None] | None = None,
        offer_properties: Mapping[str, object] | None = None,
        event_context: Mapping[str, object] | None = None,
    ) -> None:
        self.activity_id = activity_id
        self.agreement_id = agreement_id
        self.provider_id = provider_id
        self.provider_name = provider_name
        self._client = client
        self._emit = emit
        self._event_context = dict(event_context or {})  # yapapi events' job, agreement, ...
        self._offer = dict(offer_properties or {})

    def __repr__(self) -> str:
        return f"WorkContext(id={self.id}, provider={self.provider_id})"

    @property
    def id(self) -> str:
        return self.activity_id

    def new_script(
        self, timeout: timedelta | float | None = None, wait_for_results: bool = True
    ) -> Script:
        """A new script on this activity (yapapi's signature; `timeout` may be seconds)."""
        return Script(self, timeout=timeout, wait_for_results=wait_for_results)

    def emit(self, event: ev.EngineEvent | type[ev.EngineEvent], **fields: Any) -> ev.EngineEvent:
        """Hand an event to the Golem's event consumer: an event, or (as yapapi's
        `emit(EventClass, **kwargs)`) an event class and its fields; like yapapi's, the
        context fields a yapapi-shaped class has (`job`, `agreement`, `activity`) are filled
        in when not given. Returns the event."""
        if isinstance(event, type) and is_dataclass(event):
            known = {f.name for f in dc_fields(event)}
            fields = {k: v for k, v in self._event_context.items() if k in known} | fields
        made = event(**fields) if isinstance(event, type) else event
        if self._emit is not None:
            self._emit(made)
        return made

    def _yagna(self) -> YagnaClient:
        if self._client is None:
            raise GolemDeployError("this WorkContext is not attached to a running engine")
        return self._client

    async def get_raw_state(self) -> ActivityState:
        """The activity's state as yagna reports it (raises YagnaError if it cannot)."""
        return await self._yagna().activity_state(self.activity_id)

    async def get_raw_usage(self) -> RawUsage:
        """The activity's usage counters as yagna reports them, uninterpreted."""
        return await self._yagna().activity_usage(self.activity_id)

    def _pricing(self) -> LinearPricing | None:
        try:
            return LinearPricing.from_properties(self._offer)
        except ValueError:
            return None

    async def get_usage(self) -> ActivityUsage:
        """The usage counters by name (the agreement's usage vector), and their time."""
        raw = await self.get_raw_usage()
        usage = ActivityUsage(timestamp=datetime.fromtimestamp(raw.timestamp, UTC).astimezone())
        pricing = self._pricing()
        if raw.current_usage is not None and pricing is not None:
            usage.current_usage = dict(zip(pricing.prices, raw.current_usage, strict=False))
        return usage

    async def get_cost(self) -> float | None:
        """The activity's cost so far under the agreement's linear pricing (GLM, a float as
        in yapapi); None before the provider reported any usage."""
        raw = await self.get_raw_usage()
        pricing = self._pricing()
        if raw.current_usage is None or pricing is None:
            return None
        counters = dict(zip(pricing.prices, raw.current_usage, strict=False))
        return float(pricing.cost(dict(counters.items())))


@dataclass(frozen=True)
class ImageDownload:
    """How far the provider is with downloading the instance's image (its deploy step's
    progress reports): bytes done, bytes in all (None: unknown), and the mean rate."""

    done: int
    total: int | None
    bytes_per_s: float


@dataclass(frozen=True)
class InstanceSnapshot:
    """A plain copy of an instance's visible state, for the supervisor and UI."""

    service: str
    index: int
    state: ServiceState
    provider_id: str | None
    provider_name: str | None
    agreement_id: str | None
    activity_id: str | None
    started_at: datetime | None
    restarts: int
    cost: Decimal
    last_output: str
    reason: str
    restart_scheduled: bool = False  # ended on this provider, a restart will follow
    ip: str | None = None  # the instance's address on its network (kept across restarts)
    download: ImageDownload | None = None  # while its deploy step downloads the image
    renewals: int = 0  # times the instance moved to a fresh agreement before one ended
    expires_at: datetime | None = None  # when its current agreement ends (the engine's view)


@dataclass
class InstanceRecord:
    """What the engine knows about one instance, kept out of the Service's namespace.

    `service`/`index` name the instance in events (index: its position in the cluster,
    stable across providers); `network_address` is the address it keeps on every provider;
    `exc_info` the exception behind its last state change, as yapapi's."""

    id: str
    params: Mapping[str, object] = field(default_factory=dict)
    service: str = ""
    index: int = 0
    cluster: Cluster | None = None
    state: ServiceState = ServiceState.pending
    provider_id: str | None = None
    provider_name: str | None = None
    agreement_id: str | None = None
    activity_id: str | None = None
    started_at: datetime | None = None
    restarts: int = 0
    cost: Decimal = Decimal(0)
    last_output: str = ""
    reason: str = ""
    restart_scheduled: bool = False
    exc_info: ExcInfo = NO_EXC
    network: Network | None = None
    network_address: str | None = None
    download: ImageDownload | None = None  # while its deploy step downloads the image
    renewals: int = 0  # agreements renewed before they ended (engine/renewal.py)
    agreement_signed_at: datetime | None = None
    agreement_expires_at: datetime | None = None
    agreement_pricing: LinearPricing | None = None  # from its offer; None if not linear
    healthy: bool | None = None  # the last health check's verdict on this provider

    def snapshot(self) -> InstanceSnapshot:
        return InstanceSnapshot(
            service=self.service,
            index=self.index,
            state=self.state,
            provider_id=self.provider_id,
            provider_name=self.provider_name,
            agreement_id=self.agreement_id,
            activity_id=self.activity_id,
            started_at=self.started_at,
            restarts=self.restarts,
            cost=self.cost,
            last_output=self.last_output,
            reason=self.reason,
            restart_scheduled=self.restart_scheduled,
            ip=self.network_address,
            download=self.download,
            renewals=self.renewals,
            expires_at=self.agreement_expires_at,
        )


_RECORD = "_Service__record"  # what `self.__record` is called inside Service


def record_of(instance: Service) -> InstanceRecord:
    """The engine's record of `instance` (made here if its `__init__` skipped Service's)."""
    record = instance.__dict__.get(_RECORD)
    if not isinstance(record, InstanceRecord):
        record = InstanceRecord(id=str(uuid.uuid4()), service=type(instance).service_name())
        instance.__dict__[_RECORD] = record
    return record


HandlerGen = AsyncGenerator[Script, object]


class Service:
    """Base class of a service; subclass it and override the handlers you need.

    The engine creates one object per instance (`instance_params` become keyword arguments
    of `__init__`; `_id` sets `id`, else a fresh uuid) and keeps it across replacements on
    other providers.

    Class attributes of the engine's types give `Golem.run_service` its defaults (the
    compiler sets them from the manifest): `restart` (a RestartPolicy), `healthcheck` (a
    HealthCheck) and `respawn_unstarted_instances` (a bool). Attributes of other types under
    those names are the subclass's own business and are ignored.
    """

    _ctx: WorkContext = None  # type: ignore[assignment]  # set before any handler runs
    _network_node: Node | None = None  # yapapi's name: the node on the current provider

    def __init__(self, _id: str | None = None, **params: object) -> None:
        self.__record = InstanceRecord(
            id=_id or str(uuid.uuid4()), params=params, service=self.service_name()
        )

    @classmethod
    def service_name(cls) -> str:
        """The name events and snapshots use (the class name unless overridden)."""
        return cls.__name__

    @staticmethod
    async def get_payload() -> VmPayload | None:
        """The payload every instance of this service runs (None: given to run_service)."""
        return None

    # ------------------------------------------------------------ yapapi's properties

    @property
    def id(self) -> str:
        """The instance's unique id (a uuid unless `_id` was given)."""
        return record_of(self).id

    @property
    def state(self) -> ServiceState:
        return record_of(self).state

    @property
    def provider_id(self) -> str | None:
        return record_of(self).provider_id

    @property
    def provider_name(self) -> str | None:
        return record_of(self).provider_name

    @property
    def cluster(self) -> Cluster | None:
        return record_of(self).cluster

    @property
    def exc_info(self) -> ExcInfo:
        """The exception that caused the instance's last state change (a handler raised, the
        provider vanished), as `sys.exc_info()`; `(None, None, None)` when none did."""
        return record_of(self).exc_info

    @property
    def network(self) -> Network | None:
        """The network the instance is on (``run_service(network=...)``), or None."""
        return record_of(self).network

    @property
    def network_node(self) -> Node | None:
        """The instance's node on its network while it holds a provider (``.ip``,
        ``.node_id``, ``.get_websocket_uri(port)``), else None."""
        return self._network_node

    @property
    def is_available(self) -> bool:
        return self.state in (ServiceState.starting, ServiceState.running, ServiceState.stopping)

    def get_deploy_args(self) -> DeployArgs:
        """The ``deploy`` command's arguments: the network and hosts when on one, else {}."""
        return self._network_node.get_deploy_args() if self._network_node is not None else {}

    def snapshot(self) -> InstanceSnapshot:
        """A frozen copy of what the engine knows about this instance (index, cost,
        restarts, reason, last output, ...)."""
        return record_of(self).snapshot()

    # ------------------------------------------------------------------- handlers

    async def start(self) -> HandlerGen:
        """Deploy and start the VM; override and call `async for s in super().start()`."""
        script = self._ctx.new_script()
        script.deploy(**self.get_deploy_args())
        script.start()
        yield script

    async def run(self) -> HandlerGen:
        """Runs while the instance is running; the default just waits to be stopped."""
        await anyio.sleep_forever()
        yield self._ctx.new_script()  # pragma: no cover - unreachable

    async def shutdown(self) -> HandlerGen:
        """Runs once when a running instance stops; the default terminates the VM."""
        script = self._ctx.new_script()
        script.terminate()
        yield script

    # ---------------------------------------------------------------- yapapi hooks

    async def reset(self) -> None:
        """Runs before the instance is tried on another provider (a respawn after a failed
        start, or a restart): put back what the handlers change. The default does nothing."""

    async def is_activity_responsive(self) -> bool:
        """Whether the activity answers (its state can be queried). Override it to check the
        service itself: while the instance runs it is then called every `interval` of its
        HealthCheck, and `retries` False answers in a row make the instance unhealthy."""
        if self._ctx is None:
            return False
        try:
            return bool(await self._ctx.get_raw_state())
        except YagnaError:
            return False

    @property
    def restart_condition(self) -> bool:
        """Not consulted: restarts follow `run_service(restart=RestartPolicy(...))` and
        `respawn_unstarted_instances`, and `run_service` refuses a class overriding this."""
        return False

    def __repr__(self) -> str:
        record = record_of(self)
        return f"<{type(self).__name__} {record.service}[{record.index}] {record.state.value}>"
