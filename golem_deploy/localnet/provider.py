"""The local provider agent: what ya-provider does, for one identity, over yagna's REST API.

One `ProviderAgent` per provider identity runs in the host process (all agents share one
aiohttp session). It publishes a VM offer shaped like a real provider's, negotiates with
requestors (counters once, or rejects with a reason), approves agreements, starts one
in-process ExeUnit per activity, sends debit notes at its interval and one invoice after the
agreement ends. Everything goes through the provider node's real REST API, so the requestor
sees exactly the protocol it would see on the Golem network.

Faults (see faults.py) make an agent misbehave on purpose for reliability tests.
`die_after` counts from the provider's first approved agreement: the provider gets work, and
then vanishes.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import anyio
from anyio.abc import TaskGroup, TaskStatus

from golem_deploy.localnet.faults import NO_FAULTS, ProviderFaults
from golem_deploy.localnet.node import ProviderIdentity

log = logging.getLogger(__name__)

SUBNET = "local-dev"
PLATFORM = "erc20-holesky-tglm"
MOUNTS_PROPERTY = "golem_deploy.local.mounts"
LOCAL_IMAGE_PROPERTY = "golem_deploy.local.image"
TASK_PACKAGE_PROPERTY = "golem.srv.comp.task_package"
USAGE_VECTOR = ("golem.usage.cpu_sec", "golem.usage.duration_sec")

#: What every local provider declares. Agreements reserve the demand's minimum threads,
#: memory and storage; the sum over live agreements never exceeds these.
CPU_CORES = 16
CPU_THREADS = 32
MEM_GIB = 64.0
STORAGE_GIB = 256.0

#: Short enough that a test sees several debit notes within seconds.
DEBIT_NOTE_INTERVAL = 5.0
INTERVAL_PROPERTY = "golem.com.scheme.payu.debit-note.interval-sec?"


def price_coeffs(index: int) -> tuple[float, float, float]:
    """Linear price of provider `index` (1-based): per cpu-second, per second, start price.

    Prices differ per provider, deterministically, so a requestor's price-based choice is
    testable. All well under yapapi's default caps (0.2/cpu-s, 0.1/s, 1.0 start).
    """
    k = index - 1
    return (
        round(0.0001 + 0.00005 * k, 8),
        round(0.00002 + 0.00001 * k, 8),
        round(0.001 * k, 6),
    )


def offer_properties(index: int, name: str, node_id: str) -> dict[str, Any]:
    """The flat offer property set, as a real VM provider publishes it."""
    return {
        "golem.inf.mem.gib": MEM_GIB,
        "golem.inf.storage.gib": STORAGE_GIB,
        "golem.inf.cpu.cores": CPU_CORES,
        "golem.inf.cpu.threads": CPU_THREADS,
        "golem.inf.cpu.architecture": "x86_64",
        "golem.inf.cpu.vendor": "GenuineIntel",
        "golem.inf.cpu.brand": "golem-deploy local provider",
        "golem.inf.cpu.capabilities": ["sse3", "sse4_1", "sse4_2", "avx", "avx2"],
        "golem.runtime.name": "vm",
        "golem.runtime.version": "0.3.0",
        "golem.runtime.capabilities": ["inet", "vpn", "manifest-support", "start-entrypoint"],
        "golem.activity.caps.transfer.protocol": ["http", "https", "gftp"],
        "golem.activity.caps.transfer.report-progress": True,
        "golem.activity.caps.deploy.report-progress": True,
        "golem.com.pricing.model": "linear",
        "golem.com.pricing.model.linear.coeffs": [float(c) for c in price_coeffs(index)],
        "golem.com.usage.vector": list(USAGE_VECTOR),
        "golem.com.scheme": "payu",
        INTERVAL_PROPERTY: int(DEBIT_NOTE_INTERVAL),
        "golem.com.scheme.payu.payment-timeout-sec?": 120,
        "golem.com.payment.debit-notes.accept-timeout?": 240,
        f"golem.com.payment.platform.{PLATFORM}.address": node_id.lower(),
        "golem.com.payment.protocol.version": 3,
        "golem.node.id.name": name,
        "golem.node.debug.subnet": SUBNET,
        "golem.node.net.is-public": False,
        "golem.srv.caps.multi-activity": True,
        "golem.srv.caps.payload-manifest": True,
    }


OVER_CAPACITY = "over capacity"
SHUTTING_DOWN = "provider is shutting down"

OFFER_CONSTRAINTS = f"(&(golem.srv.comp.expiration>0)(golem.node.debug.subnet={SUBNET}))"

_REQUIREMENT = re.compile(
    r"\(\s*golem\.inf\.(mem\.gib|storage\.gib|cpu\.threads)\s*(>=|>|=)\s*([0-9.]+)\s*\)"
)


@dataclass(frozen=True)
class Resources:
    """Threads, memory and storage a demand asks for (its minimums) or a provider has."""

    threads: float = 0.0
    mem_gib: float = 0.0
    storage_gib: float = 0.0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.threads + other.threads,
            self.mem_gib + other.mem_gib,
            self.storage_gib + other.storage_gib,
        )

    def fits_in(self, other: Resources) -> bool:
        return (
            self.threads <= other.threads
            and self.mem_gib <= other.mem_gib
            and self.storage_gib <= other.storage_gib
        )


CAPACITY = Resources(CPU_THREADS, MEM_GIB, STORAGE_GIB)


def demand_requirements(constraints: str) -> Resources:
    """The minimum resources a demand's constraints ask for (yapapi's `>=` clauses)."""
    found: dict[str, float] = {}
    for key, _op, value in _REQUIREMENT.findall(constraints):
        try:
            found[key] = max(found.get(key, 0.0), float(value))
        except ValueError:
            continue
    for key, default in (("cpu.threads", 1.0), ("mem.gib", 0.5), ("storage.gib", 2.0)):
        found.setdefault(key, default)  # yapapi's defaults when a demand names none
    return Resources(found["cpu.threads"], found["mem.gib"], found["storage.gib"])


def parse_local_image(properties: Mapping[str, Any]) -> Path | None:
    """The demand's `golem_deploy.local.image`: a .gvmi file or image tree on this host."""
    raw = properties.get(LOCAL_IMAGE_PROPERTY)
    return Path(raw) if isinstance(raw, str) and Path(raw).is_absolute() else None


def parse_mounts(properties: Mapping[str, Any]) -> dict[str, Path]:
    """The demand's local read-only mounts {container path: absolute host path}.

    Raises ValueError with a message a requestor can act on.
    """
    raw = properties.get(MOUNTS_PROPERTY)
    if raw is None:
        return {}
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, dict):
        raise ValueError(f"{MOUNTS_PROPERTY} must be a JSON object of container -> host paths")
    mounts: dict[str, Path] = {}
    for container, host in data.items():
        if not isinstance(container, str) or not container.startswith("/"):
            raise ValueError(f"{MOUNTS_PROPERTY}: container path {container!r} is not absolute")
        if not isinstance(host, str) or not Path(host).is_absolute():
            raise ValueError(f"{MOUNTS_PROPERTY}: host path {host!r} is not absolute")
        mounts[container] = Path(host)
    return mounts


def linear_cost(
    coeffs: list[float], usage_vector: list[str], usage: Mapping[str, float]
) -> Decimal:
    """Σ coeff[i]·usage[i] + start price, in exact decimals."""
    total = Decimal(repr(float(coeffs[-1])))
    for coeff, counter in zip(coeffs[:-1], usage_vector, strict=False):
        total += Decimal(repr(float(coeff))) * Decimal(repr(float(usage.get(counter, 0.0))))
    return total


def amount_str(value: Decimal) -> str:
    """A plain decimal string (no exponent), at most 18 fractional digits (GLM's precision)."""
    quantized = value.quantize(Decimal(1).scaleb(-18))
    text = format(quantized.normalize(), "f")
    return text if text != "-0" else "0"


def _parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp from yagna (nanoseconds allowed), or None."""
    if not isinstance(value, str):
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", value)
    if match is None:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = match.group(3) or "Z"
    text = match.group(1) + fraction + ("+00:00" if zone == "Z" else zone)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _final(reason: str) -> bool:
    """Whether a rejection stays true if the requestor asks again later (not for capacity)."""
    return not reason.startswith((OVER_CAPACITY, SHUTTING_DOWN))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _now_cursor() -> str:
    """An RFC 3339 event cursor one second in the past (events are strictly after it)."""
    return (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------------------------
# The ExeUnit as the agent uses it (the real one lives in golem_deploy.localnet.exeunit).


class ExeUnitLike(Protocol):
    async def serve(self, *, task_status: TaskStatus[Any] = ...) -> None: ...
    async def shutdown(self, reason: str) -> None: ...
    def vanish(self) -> None: ...
    @property
    def usage(self) -> tuple[float, float]: ...


class ExeUnitFactory(Protocol):
    def __call__(
        self,
        *,
        activity_id: str,
        agreement_id: str,
        gsb_url: str,
        work_dir: Path,
        mounts: dict[str, Path],
        usage_vector: list[str],
        requestor_id: str,
        fail_commands_matching: re.Pattern[str] | None,
        slow_start: float,
        task_package: str | None = None,
        local_image: Path | None = None,
        storage_gib: float | None = None,
        unsafe_host_exec: bool = False,
        cpu_threads: float | None = None,
        mem_gib: float | None = None,
    ) -> ExeUnitLike: ...


def real_exeunit(**kwargs: Any) -> ExeUnitLike:
    """Build the in-process ExeUnit of golem_deploy.localnet.exeunit."""
    from golem_deploy.localnet.exeunit import ExeUnit, ExeUnitConfig

    unit: ExeUnitLike = ExeUnit(ExeUnitConfig(**kwargs))
    return unit


# --------------------------------------------------------------------------------------------
# State the agent keeps per agreement and activity.


@dataclass
class Agreement:
    agreement_id: str
    requestor_id: str
    demand: dict[str, Any]
    offer: dict[str, Any]
    reserved: Resources
    mounts: dict[str, Path]
    valid_to: datetime | None = None
    activities: dict[str, Activity] = field(default_factory=dict)
    ended: anyio.Event = field(default_factory=anyio.Event)
    end_reason: str = ""
    terminated_by_us: bool = False

    @property
    def coeffs(self) -> list[float]:
        return [float(c) for c in self.offer["golem.com.pricing.model.linear.coeffs"]]

    @property
    def usage_vector(self) -> list[str]:
        return [str(c) for c in self.offer["golem.com.usage.vector"]]

    def debit_note_interval(self, default: float) -> float:
        """The agreed interval: the demand's value when the requestor negotiated one.

        Requestors that negotiate it (yapapi with mid-agreement payments raises it to at
        least 60 s) count notes against it and end agreements that get notes too often.
        """
        for properties in (self.demand, self.offer):
            value = properties.get(INTERVAL_PROPERTY)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                return max(float(value), default)
        return default

    @property
    def multi_activity(self) -> bool:
        return self.demand.get("golem.srv.caps.multi-activity") is True


@dataclass
class Activity:
    activity_id: str
    agreement: Agreement
    stop: anyio.Event = field(default_factory=anyio.Event)
    stop_reason: str = ""
    done: anyio.Event = field(default_factory=anyio.Event)
    exeunit: ExeUnitLike | None = None
    final_cost: Decimal = Decimal(0)
    debit_notes: int = 0
    running: bool = False  # the ExeUnit is up (registered, Initialized)
    crashed: str | None = None  # why the ExeUnit died on its own, if it did

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    def cost(self) -> Decimal:
        cpu, duration = self.exeunit.usage if self.exeunit is not None else (0.0, 0.0)
        counters = {"golem.usage.cpu_sec": cpu, "golem.usage.duration_sec": duration}
        return linear_cost(self.agreement.coeffs, self.agreement.usage_vector, counters)

    def usage_counters(self) -> list[float]:
        cpu, duration = self.exeunit.usage if self.exeunit is not None else (0.0, 0.0)
        values = {"golem.usage.cpu_sec": cpu, "golem.usage.duration_sec": duration}
        return [round(values.get(c, 0.0), 6) for c in self.agreement.usage_vector]


class ApiError(Exception):
    """The provider node answered a REST call with an unexpected status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:300]}")
        self.status = status


@dataclass(frozen=True)
class ProviderConfig:
    """Everything one agent needs; `index` is 1-based (local-provider-<index>)."""

    index: int
    identity: ProviderIdentity
    api_url: str
    gsb_url: str
    work_root: Path
    faults: ProviderFaults = NO_FAULTS
    debit_note_interval: float = DEBIT_NOTE_INTERVAL
    unsafe_host_exec: bool = False  # --unsafe-host-exec: activities run unsealed on the host


class ProviderAgent:
    """One local provider, from offer to invoice."""

    def __init__(
        self,
        config: ProviderConfig,
        session: aiohttp.ClientSession,
        exeunit_factory: ExeUnitFactory = real_exeunit,
    ) -> None:
        self.config = config
        self.name = config.identity.name
        self._session = session
        self._exeunit_factory = exeunit_factory
        self._headers = {"Authorization": f"Bearer {config.identity.app_key}"}
        self._app_session = f"golem-deploy-{self.name}-{uuid.uuid4().hex[:12]}"
        self._offer_props = offer_properties(config.index, self.name, config.identity.node_id)
        self.subscription_id: str | None = None
        self.agreements: dict[str, Agreement] = {}
        self.activities: dict[str, Activity] = {}
        self._countered: set[str] = set()
        self._first_approval = anyio.Event()
        self._stopping = False
        self.dead = False
        self._tg: TaskGroup | None = None
        self.invoices_sent = 0

    # ---------------------------------------------------------------- REST plumbing

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int | float] | None = None,
        ok: tuple[int, ...] = (200,),
        timeout: float = 20.0,
    ) -> Any:
        url = self.config.api_url + path
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = body
        async with self._session.request(
            method,
            url,
            headers=self._headers,
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
            **kwargs,
        ) as response:
            text = await response.text()
            if response.status not in ok:
                raise ApiError(method, path, response.status, text)
            if not text:
                return None
            try:
                return json.loads(text)
            except ValueError:
                return text

    # ---------------------------------------------------------------- lifecycle

    def _spawn(self, handler: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run an event handler in the agent's task group.

        A bug in one handler is logged and ends only that handler: one malformed event must
        not take down every provider of the network (they share the host process).
        """

        async def guarded() -> None:
            try:
                await handler(*args)
            except Exception:
                log.exception("%s: %s failed", self.name, getattr(handler, "__name__", handler))

        assert self._tg is not None
        self._tg.start_soon(guarded)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Publish the offer (then report started) and serve until cancelled or dead."""
        await self._subscribe()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._negotiation_loop)
            tg.start_soon(self._agreement_events_loop)
            tg.start_soon(self._activity_events_loop)
            if self.config.faults.die_after is not None:
                tg.start_soon(self._die_later, self.config.faults.die_after)
            task_status.started()

    async def shutdown(self, timeout: float = 8.0) -> None:
        """Stop providing: end every activity cleanly, then withdraw the offer."""
        if self.dead:
            return
        self._stopping = True
        with anyio.move_on_after(timeout):
            for activity in list(self.activities.values()):
                activity.request_stop("provider stopped")
            for activity in list(self.activities.values()):
                await activity.done.wait()
            await self._unsubscribe()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _subscribe(self) -> None:
        sub = await self._call(
            "POST",
            "/market-api/v1/offers",
            body={"properties": self._offer_props, "constraints": OFFER_CONSTRAINTS},
            ok=(201,),
        )
        self.subscription_id = str(sub)
        log.info("%s: offer subscribed %s", self.name, self.subscription_id)

    async def _unsubscribe(self) -> None:
        if self.subscription_id is None:
            return
        sub, self.subscription_id = self.subscription_id, None
        try:
            await self._call("DELETE", f"/market-api/v1/offers/{sub}", ok=(204, 404, 410))
        except (aiohttp.ClientError, TimeoutError, ApiError) as error:
            log.warning("%s: unsubscribing the offer failed: %s", self.name, error)

    async def _die_later(self, delay: float) -> None:
        """The die_after fault: after the first approved agreement + delay, vanish."""
        await self._first_approval.wait()
        await anyio.sleep(delay)
        log.warning("%s: dying now (fault die_after=%ss)", self.name, delay)
        self.dead = True
        for activity in self.activities.values():
            if activity.exeunit is not None:
                activity.exeunit.vanish()
        with anyio.move_on_after(3):
            await self._unsubscribe()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()

    # ---------------------------------------------------------------- negotiation

    async def _negotiation_loop(self) -> None:
        while True:
            sub = self.subscription_id
            if sub is None:
                if self._stopping:
                    return
                await self._subscribe()
                continue
            try:
                events = await self._call(
                    "GET",
                    f"/market-api/v1/offers/{sub}/events",
                    params={"timeout": 3.0, "maxEvents": 100},
                    timeout=15.0,
                )
            except ApiError as error:
                if error.status in (404, 410):  # expired (1 h TTL) or gone: publish again
                    if self.subscription_id == sub and not self._stopping:
                        log.info("%s: offer %s expired, re-subscribing", self.name, sub)
                        self.subscription_id = None
                    continue
                log.warning("%s: offer events: %s", self.name, error)
                await anyio.sleep(0.5)
                continue
            except (aiohttp.ClientError, TimeoutError) as error:
                log.warning("%s: offer events: %r", self.name, error)
                await anyio.sleep(0.5)
                continue
            assert self._tg is not None
            for event in events or []:
                kind = event.get("eventType")
                if kind == "ProposalEvent":
                    self._spawn(self._on_proposal, sub, event["proposal"])
                elif kind == "AgreementEvent":
                    self._spawn(self._on_agreement, event["agreement"])

    def _reserved(self) -> Resources:
        total = Resources()
        for agreement in self.agreements.values():
            total = total + agreement.reserved
        return total

    def _why_not(self, properties: Mapping[str, Any], constraints: str) -> str | None:
        """Why this provider cannot serve a demand, or None when it can."""
        if self._stopping or self.dead:
            return SHUTTING_DOWN
        subnet = properties.get("golem.node.debug.subnet")
        if subnet != SUBNET:
            return f"subnet mismatch: this provider serves subnet {SUBNET!r}, not {subnet!r}"
        chosen = properties.get("golem.com.payment.chosen-platform")
        if chosen != PLATFORM:
            return (
                f"no common payment platform: this provider is paid on {PLATFORM} "
                f"(golem.com.payment.chosen-platform is {chosen!r})"
            )
        try:
            parse_mounts(properties)
        except ValueError as error:
            return str(error)
        need = demand_requirements(constraints)
        if not need.fits_in(CAPACITY):
            return (
                f"insufficient resources: demand needs {need.threads:g} threads, "
                f"{need.mem_gib:g} GiB memory, {need.storage_gib:g} GiB storage; this provider "
                f"has {CPU_THREADS} threads, {MEM_GIB:g} GiB, {STORAGE_GIB:g} GiB"
            )
        if not (self._reserved() + need).fits_in(CAPACITY):
            return f"{OVER_CAPACITY}: its threads or memory are taken by running agreements"
        return None

    async def _on_proposal(self, sub: str, proposal: dict[str, Any]) -> None:
        proposal_id = str(proposal["proposalId"])
        if (
            proposal_id in self._countered
            or proposal.get("issuerId") == self.config.identity.node_id
        ):
            return
        self._countered.add(proposal_id)
        reason = self._why_not(proposal.get("properties", {}), proposal.get("constraints", ""))
        try:
            if reason is not None:
                log.info("%s: rejecting proposal %s: %s", self.name, proposal_id, reason)
                await self._call(
                    "POST",
                    f"/market-api/v1/offers/{sub}/proposals/{proposal_id}/reject",
                    body={"message": reason, "golem.proposal.rejection.is-final": _final(reason)},
                    ok=(200, 204),
                )
                return
            await self._call(
                "POST",
                f"/market-api/v1/offers/{sub}/proposals/{proposal_id}",
                body={"properties": self._offer_props, "constraints": OFFER_CONSTRAINTS},
            )
        except (ApiError, aiohttp.ClientError, TimeoutError) as error:
            log.info("%s: answering proposal %s failed: %s", self.name, proposal_id, error)

    async def _on_agreement(self, raw: dict[str, Any]) -> None:
        agreement_id = str(raw["agreementId"])
        demand = raw.get("demand", {})
        offer = raw.get("offer", {})
        properties = demand.get("properties", {})
        reason: str | None
        if self.config.faults.reject_agreements:
            reason = "fault injected: this provider rejects every agreement"
        else:
            reason = self._why_not(properties, demand.get("constraints", ""))
        if reason is not None:
            log.info("%s: rejecting agreement %s: %s", self.name, agreement_id, reason)
            try:
                await self._call(
                    "POST",
                    f"/market-api/v1/agreements/{agreement_id}/reject",
                    body={"message": reason, "golem.proposal.rejection.is-final": _final(reason)},
                    ok=(200, 204),
                )
            except (ApiError, aiohttp.ClientError, TimeoutError) as error:
                log.info("%s: rejecting agreement failed: %s", self.name, error)
            return
        agreement = Agreement(
            agreement_id=agreement_id,
            requestor_id=str(demand.get("requestorId", "")),
            demand=properties,
            offer=offer.get("properties", self._offer_props),
            reserved=demand_requirements(demand.get("constraints", "")),
            mounts=parse_mounts(properties),
            valid_to=_parse_time(raw.get("validTo")),
        )
        self.agreements[agreement_id] = agreement  # reserve before the await
        try:
            await self._call(
                "POST",
                f"/market-api/v1/agreements/{agreement_id}/approve",
                params={"appSessionId": self._app_session, "timeout": 10.0},
                ok=(200, 204),
                timeout=20.0,
            )
        except (ApiError, aiohttp.ClientError, TimeoutError) as error:
            log.info("%s: approving %s failed: %s", self.name, agreement_id, error)
            del self.agreements[agreement_id]
            return
        log.info("%s: approved agreement %s", self.name, agreement_id)
        self._first_approval.set()
        assert self._tg is not None
        self._spawn(self._run_agreement, agreement)

    # ---------------------------------------------------------------- agreements

    async def _agreement_events_loop(self) -> None:
        cursor = _now_cursor()
        seen: set[tuple[str, str]] = set()
        while True:
            try:
                events = await self._call(
                    "GET",
                    "/market-api/v1/agreementEvents",
                    params={
                        "afterTimestamp": cursor,
                        "timeout": 3.0,
                        "appSessionId": self._app_session,
                    },
                    timeout=15.0,
                )
            except (ApiError, aiohttp.ClientError, TimeoutError) as error:
                log.warning("%s: agreement events: %s", self.name, error)
                await anyio.sleep(0.5)
                continue
            for event in events or []:
                cursor = max(cursor, str(event.get("eventDate", cursor)))
                key = (str(event.get("agreementId")), str(event.get("eventType")))
                if key in seen:
                    continue
                seen.add(key)
                agreement = self.agreements.get(key[0])
                if agreement is None or agreement.ended.is_set():
                    continue
                if key[1] == "AgreementTerminatedEvent" and not agreement.terminated_by_us:
                    message = (event.get("reason") or {}).get("message") or "terminated"
                    self._end_agreement(agreement, f"terminated by requestor: {message}")
                elif key[1] in ("AgreementCancelledEvent", "AgreementRejectedEvent"):
                    self._end_agreement(agreement, key[1])

    def _end_agreement(self, agreement: Agreement, reason: str) -> None:
        agreement.end_reason = reason
        agreement.ended.set()

    async def _terminate_agreement(self, agreement: Agreement, message: str) -> None:
        agreement.terminated_by_us = True
        try:
            await self._call(
                "POST",
                f"/market-api/v1/agreements/{agreement.agreement_id}/terminate",
                body={"message": message, "golem.provider.code": "Success"},
                ok=(200, 204, 410),
            )
        except (ApiError, aiohttp.ClientError, TimeoutError) as error:
            log.info("%s: terminating %s failed: %s", self.name, agreement.agreement_id, error)
        self._end_agreement(agreement, message)

    async def _run_agreement(self, agreement: Agreement) -> None:
        """Wait for the agreement's end (or expiry), its activities' end, then invoice once."""
        lifetime: float | None = None
        if agreement.valid_to is not None:
            lifetime = max((agreement.valid_to - datetime.now(UTC)).total_seconds(), 0.0)
        with anyio.move_on_after(lifetime):
            await agreement.ended.wait()
        if not agreement.ended.is_set():  # validTo passed: the agreement is over
            await self._terminate_agreement(agreement, "agreement expired")
        for activity in list(agreement.activities.values()):
            activity.request_stop(agreement.end_reason or "agreement ended")
        for activity in list(agreement.activities.values()):
            await activity.done.wait()
        try:
            if self.config.faults.never_invoice or self.dead:
                return
            await self._invoice(agreement)
        finally:
            self.agreements.pop(agreement.agreement_id, None)

    async def _invoice(self, agreement: Agreement) -> None:
        total = sum((a.final_cost for a in agreement.activities.values()), Decimal(0))
        body = {
            "agreementId": agreement.agreement_id,
            "activityIds": list(agreement.activities),
            "amount": amount_str(total),
            "paymentDueDate": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        }
        invoice_id: str | None = None
        for attempt in range(5):  # create once ...
            try:
                invoice = await self._call(
                    "POST", "/payment-api/v1/invoices", body=body, ok=(200, 201)
                )
                invoice_id = str(invoice["invoiceId"])
                break
            except (ApiError, aiohttp.ClientError, TimeoutError, KeyError) as error:
                log.warning("%s: invoice attempt %d failed: %s", self.name, attempt + 1, error)
                await anyio.sleep(1.0 + attempt)
        if invoice_id is None:
            return
        try:  # ... then deliver it (retried inside)
            await self._send("invoices", invoice_id)
        except (ApiError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("%s: sending invoice %s failed: %s", self.name, invoice_id, error)
            return
        self.invoices_sent += 1
        log.info(
            "%s: invoice %s for %s: %s",
            self.name,
            invoice_id,
            agreement.agreement_id,
            body["amount"],
        )

    async def _send(self, kind: str, document_id: str) -> None:
        """POST …/send, retried: the requestor node may be briefly busy (408)."""
        for attempt in range(4):
            try:
                await self._call(
                    "POST",
                    f"/payment-api/v1/{kind}/{document_id}/send",
                    params={"timeout": 5.0},
                    timeout=15.0,
                )
                return
            except (ApiError, aiohttp.ClientError, TimeoutError):
                if attempt == 3:
                    raise
                await anyio.sleep(0.5 * (attempt + 1))

    # ---------------------------------------------------------------- activities

    async def _activity_events_loop(self) -> None:
        cursor = _now_cursor()
        seen: set[tuple[str, str]] = set()
        while True:
            try:
                events = await self._call(
                    "GET",
                    "/activity-api/v1/events",
                    params={
                        "afterTimestamp": cursor,
                        "timeout": 3.0,
                        "appSessionId": self._app_session,
                        "maxEvents": 100,
                    },
                    timeout=15.0,
                )
            except ApiError as error:
                if error.status != 408:  # 408: the long poll timed out with no event
                    log.warning("%s: activity events: %s", self.name, error)
                    await anyio.sleep(0.5)
                continue
            except (aiohttp.ClientError, TimeoutError) as error:
                log.warning("%s: activity events: %r", self.name, error)
                await anyio.sleep(0.5)
                continue
            assert self._tg is not None
            for event in events or []:
                cursor = max(cursor, str(event.get("eventDate", cursor)))
                kind = next(iter(event.get("eventType") or {"?": None}))
                activity_id = str(event.get("activityId"))
                if (activity_id, kind) in seen:
                    continue
                seen.add((activity_id, kind))
                if kind == "CreateActivity":
                    self._on_create(activity_id, str(event.get("agreementId")))
                elif kind == "DestroyActivity":
                    activity = self.activities.get(activity_id)
                    if activity is not None:
                        activity.request_stop("destroyed by requestor")
                    else:  # never started (e.g. create timed out): make sure yagna knows
                        self._spawn(self._set_terminated, activity_id, "destroyed", None)

    def _on_create(self, activity_id: str, agreement_id: str) -> None:
        assert self._tg is not None
        agreement = self.agreements.get(agreement_id)
        if agreement is None or agreement.ended.is_set():
            self._spawn(self._set_terminated, activity_id, "creation failed", "unknown agreement")
            return
        if self.config.faults.fail_activity_create:
            self._spawn(
                self._set_terminated,
                activity_id,
                "creation failed",
                "fault injected: this provider fails every activity creation",
            )
            return
        activity = Activity(activity_id=activity_id, agreement=agreement)
        agreement.activities[activity_id] = activity
        self.activities[activity_id] = activity
        self._spawn(self._run_activity, activity)

    async def _set_terminated(self, activity_id: str, reason: str, error: str | None) -> None:
        try:
            await self._call(
                "PUT",
                f"/activity-api/v1/activity/{activity_id}/state",
                body={"state": ["Terminated", None], "reason": reason, "errorMessage": error},
            )
        except (ApiError, aiohttp.ClientError, TimeoutError) as failure:
            log.info("%s: setting %s Terminated failed: %s", self.name, activity_id, failure)

    async def _run_activity(self, activity: Activity) -> None:
        agreement = activity.agreement
        try:
            unit = self._exeunit_factory(
                activity_id=activity.activity_id,
                agreement_id=agreement.agreement_id,
                gsb_url=self.config.gsb_url,
                work_dir=self.config.work_root / activity.activity_id,
                mounts=dict(agreement.mounts),
                usage_vector=agreement.usage_vector,
                requestor_id=agreement.requestor_id,
                fail_commands_matching=self.config.faults.fail_commands_matching,
                slow_start=self.config.faults.slow_start,
                task_package=_str_or_none(agreement.demand.get(TASK_PACKAGE_PROPERTY)),
                local_image=parse_local_image(agreement.demand),
                storage_gib=agreement.reserved.storage_gib,
                cpu_threads=agreement.reserved.threads,
                mem_gib=agreement.reserved.mem_gib,
                unsafe_host_exec=self.config.unsafe_host_exec,
            )
            activity.exeunit = unit
            async with anyio.create_task_group() as tg:
                try:
                    await tg.start(self._serve_exeunit, activity, unit)
                except Exception as error:  # the ExeUnit could not come up
                    log.exception("%s: ExeUnit for %s failed", self.name, activity.activity_id)
                    await self._set_terminated(activity.activity_id, "creation failed", str(error))
                    activity.exeunit = None
                    return
                activity.running = True
                log.info("%s: activity %s up", self.name, activity.activity_id)
                tg.start_soon(self._debit_notes, activity)
                await activity.stop.wait()
                if activity.crashed is not None:  # as ya-provider reports a dead ExeUnit
                    await self._set_terminated(
                        activity.activity_id, "execution aborted", activity.crashed
                    )
                elif not self.dead:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                        try:
                            await unit.shutdown(activity.stop_reason)
                        except Exception:
                            log.exception("%s: ExeUnit shutdown failed", self.name)
                            await self._set_terminated(
                                activity.activity_id, activity.stop_reason, "shutdown failed"
                            )
                tg.cancel_scope.cancel()
            if self.dead:
                return
            activity.final_cost = activity.cost()
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self._debit_note(activity, final=True)
            if not agreement.multi_activity and not agreement.ended.is_set():
                await self._terminate_agreement(agreement, "activity finished")
        finally:
            self.activities.pop(activity.activity_id, None)
            activity.done.set()

    async def _serve_exeunit(
        self, activity: Activity, unit: ExeUnitLike, *, task_status: TaskStatus[None]
    ) -> None:
        """Run the ExeUnit; if it stops on its own, the activity is over."""
        try:
            await unit.serve(task_status=task_status)
        except Exception as error:
            if not activity.running:
                raise  # it never came up: _run_activity reports "creation failed"
            log.exception("%s: ExeUnit of %s crashed", self.name, activity.activity_id)
            activity.crashed = f"{type(error).__name__}: {error}"
        finally:
            activity.request_stop("execution aborted")

    async def _debit_notes(self, activity: Activity) -> None:
        while True:
            await anyio.sleep(
                activity.agreement.debit_note_interval(self.config.debit_note_interval)
            )
            await self._debit_note(activity)

    async def _debit_note(self, activity: Activity, *, final: bool = False) -> None:
        if self.dead:
            return
        amount = activity.final_cost if final else activity.cost()
        body = {
            "activityId": activity.activity_id,
            "totalAmountDue": amount_str(amount),
            "usageCounterVector": activity.usage_counters(),
        }
        try:
            note = await self._call("POST", "/payment-api/v1/debitNotes", body=body, ok=(200, 201))
            await self._send("debitNotes", str(note["debitNoteId"]))
            activity.debit_notes += 1
        except (ApiError, aiohttp.ClientError, TimeoutError, KeyError) as error:
            log.info("%s: debit note for %s failed: %s", self.name, activity.activity_id, error)
