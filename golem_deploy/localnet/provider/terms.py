"""What a local provider offers and charges: offer, negotiation rules, prices, bills.

Pure functions and values, no I/O: the agent (agent.py) asks these what to publish, whether
to take a demand, and how much a debit note or an invoice is for. Unit tested on their own
(tests/unit/test_localnet_logic.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from golem_deploy import protocol as p

SUBNET = p.LOCAL_SUBNET
PLATFORM = p.LOCAL_PLATFORM
USAGE_VECTOR = (p.CPU_SEC, p.DURATION_SEC)

#: What every local provider declares. Agreements reserve the demand's minimum threads,
#: memory and storage; the sum over live agreements never exceeds these.
CPU_CORES = 16
CPU_THREADS = 32
MEM_GIB = 64.0
STORAGE_GIB = 256.0

#: Offered, and used when the requestor negotiates none: ya-provider's default (2 min). A
#: requestor asks for its own (golem-deploy: the manifest's `payment.debit_note_interval`,
#: tests use a few seconds), and the notes follow what it asked.
DEBIT_NOTE_INTERVAL = 120.0
#: Offered payment timeout (ya-provider's default): what mid-agreement payments start from.
PAYMENT_TIMEOUT = 120

#: A JSON object as yagna passes properties through: values are JSON values.
Properties = Mapping[str, object]

OVER_CAPACITY = "over capacity"
SHUTTING_DOWN = "provider is shutting down"

OFFER_CONSTRAINTS = f"(&({p.EXPIRATION}>0)({p.SUBNET}={SUBNET}))"


# ---------------------------------------------------------------- the offer


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


def offer_properties(index: int, name: str, node_id: str) -> dict[str, object]:
    """The flat offer property set, as a real VM provider publishes it."""
    return {
        p.MEM_GIB: MEM_GIB,
        p.STORAGE_GIB: STORAGE_GIB,
        p.CPU_CORES: CPU_CORES,
        p.CPU_THREADS: CPU_THREADS,
        p.CPU_ARCHITECTURE: "x86_64",
        p.CPU_VENDOR: "GenuineIntel",
        p.CPU_BRAND: "golem-deploy local provider",
        p.CPU_CAPABILITIES: ["sse3", "sse4_1", "sse4_2", "avx", "avx2"],
        p.RUNTIME_NAME: "vm",
        p.RUNTIME_VERSION: "0.3.0",
        p.RUNTIME_CAPABILITIES: ["inet", "vpn", "manifest-support", "start-entrypoint"],
        p.TRANSFER_PROTOCOLS: ["http", "https", "gftp"],
        p.TRANSFER_REPORTS_PROGRESS: True,
        p.DEPLOY_REPORTS_PROGRESS: True,
        p.PRICING_MODEL: "linear",
        p.LINEAR_COEFFS: [float(c) for c in price_coeffs(index)],
        p.USAGE_VECTOR: list(USAGE_VECTOR),
        p.SCHEME: "payu",
        p.DEBIT_NOTE_INTERVAL: int(DEBIT_NOTE_INTERVAL),
        p.PAYMENT_TIMEOUT: PAYMENT_TIMEOUT,
        p.DEBIT_NOTE_ACCEPT_TIMEOUT: 240,
        p.platform_address(PLATFORM): node_id.lower(),
        p.PAYMENT_PROTOCOL_VERSION: 3,
        p.NODE_NAME: name,
        p.SUBNET: SUBNET,
        p.IS_PUBLIC: False,
        p.MULTI_ACTIVITY: True,
        p.PAYLOAD_MANIFEST: True,
    }


# ---------------------------------------------------------------- what a demand needs

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


def parse_local_image(properties: Properties) -> Path | None:
    """The demand's `golem_deploy.local.image`: a .gvmi file or image tree on this host."""
    raw = properties.get(p.LOCAL_IMAGE)
    return Path(raw) if isinstance(raw, str) and Path(raw).is_absolute() else None


def task_package(properties: Properties) -> str | None:
    """The demand's `golem.srv.comp.task_package` ("hash:sha3:<hash>:<url>"), if any."""
    raw = properties.get(p.TASK_PACKAGE)
    return raw if isinstance(raw, str) else None


def parse_mounts(properties: Properties) -> dict[str, Path]:
    """The demand's local read-only mounts {container path: absolute host path}.

    Raises ValueError with a message a requestor can act on.
    """
    raw = properties.get(p.LOCAL_MOUNTS)
    if raw is None:
        return {}
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, dict):
        raise ValueError(f"{p.LOCAL_MOUNTS} must be a JSON object of container -> host paths")
    mounts: dict[str, Path] = {}
    for container, host in data.items():
        if not isinstance(container, str) or not container.startswith("/"):
            raise ValueError(f"{p.LOCAL_MOUNTS}: container path {container!r} is not absolute")
        if not isinstance(host, str) or not Path(host).is_absolute():
            raise ValueError(f"{p.LOCAL_MOUNTS}: host path {host!r} is not absolute")
        mounts[container] = Path(host)
    return mounts


def rejection(
    properties: Properties, constraints: str, *, reserved: Resources, shutting_down: bool
) -> str | None:
    """Why a provider with `reserved` resources taken cannot serve a demand, or None."""
    if shutting_down:
        return SHUTTING_DOWN
    subnet = properties.get(p.SUBNET)
    if subnet != SUBNET:
        return f"subnet mismatch: this provider serves subnet {SUBNET!r}, not {subnet!r}"
    chosen = properties.get(p.CHOSEN_PLATFORM)
    if chosen != PLATFORM:
        return (
            f"no common payment platform: this provider is paid on {PLATFORM} "
            f"({p.CHOSEN_PLATFORM} is {chosen!r})"
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
    if not (reserved + need).fits_in(CAPACITY):
        return f"{OVER_CAPACITY}: its threads or memory are taken by running agreements"
    return None


def expiration_too_late(properties: Properties, max_seconds: float, now: float) -> str | None:
    """Why a demand whose agreement would last longer than `max_seconds` from `now` (epoch
    seconds) is refused, or None: a real provider's "max agreement expiration" check."""
    expiration = properties.get(p.EXPIRATION)
    if not isinstance(expiration, int | float) or isinstance(expiration, bool):
        return None
    seconds = expiration / 1000 - now
    if seconds <= max_seconds + 1.0:  # a second of slack for the clocks and the trip
        return None
    return (
        f"expiration too late: the demand expires in {seconds:.0f}s; this provider signs "
        f"agreements of at most {max_seconds:g}s"
    )


def is_final(reason: str) -> bool:
    """Whether a rejection stays true if the requestor asks again later (not for capacity)."""
    return not reason.startswith((OVER_CAPACITY, SHUTTING_DOWN))


def multi_activity(demand: Properties) -> bool:
    """Whether the requestor asked for several activities in one agreement."""
    return demand.get(p.MULTI_ACTIVITY) is True


def _seconds(properties: Properties, key: str) -> float | None:
    value = properties.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return max(1.0, float(value))
    return None


def debit_note_interval(demand: Properties, offer: Properties, default: float) -> float:
    """The agreed interval: the demand's value when the requestor negotiated one (as
    ya-provider accepts any from 1 s on), else the offer's, else `default`.

    Requestors that negotiate it (golem-deploy always, yapapi with mid-agreement payments)
    count notes against it and end agreements that get notes too often.
    """
    for properties in (demand, offer):
        value = _seconds(properties, p.DEBIT_NOTE_INTERVAL)
        if value is not None:
            return value
    return default


def payment_timeout(demand: Properties) -> float | None:
    """Mid-agreement payments: the payment timeout the requestor's demand agreed, or None
    (then no note is payable and only the invoice is paid)."""
    return _seconds(demand, p.PAYMENT_TIMEOUT)


def payable_now(*, final: bool, now: float, last_payable: float, timeout: float | None) -> bool:
    """Whether this debit note is payable (carries a due date), as ya-provider decides: at
    most one per payment timeout since the last payable one (or the agreement's start),
    and always the final note of an activity."""
    if timeout is None:
        return False
    return final or last_payable + timeout <= now


#: Debit-note states in which the requestor has accepted it (SETTLED: also paid).
ACCEPTED_STATES = ("ACCEPTED", "SETTLED")


# ---------------------------------------------------------------- prices and bills


def linear_cost(
    coeffs: Iterable[float], usage_vector: Iterable[str], usage: Mapping[str, float]
) -> Decimal:
    """Σ coeff[i]·usage[i] + start price, in exact decimals."""
    coeffs = list(coeffs)
    total = Decimal(repr(float(coeffs[-1])))
    for coeff, counter in zip(coeffs[:-1], usage_vector, strict=False):
        total += Decimal(repr(float(coeff))) * Decimal(repr(float(usage.get(counter, 0.0))))
    return total


def amount_str(value: Decimal) -> str:
    """A plain decimal string (no exponent), at most 18 fractional digits (GLM's precision)."""
    quantized = value.quantize(Decimal(1).scaleb(-18))
    text = format(quantized.normalize(), "f")
    return text if text != "-0" else "0"


@dataclass(frozen=True)
class Usage:
    """What an activity used so far: the counters our ExeUnits measure."""

    cpu_sec: float = 0.0
    duration_sec: float = 0.0

    def counters(self) -> dict[str, float]:
        return {p.CPU_SEC: self.cpu_sec, p.DURATION_SEC: self.duration_sec}


@dataclass(frozen=True)
class Tariff:
    """The agreed linear price: one coefficient per usage counter, then the start price."""

    coeffs: tuple[float, ...]
    usage_vector: tuple[str, ...]

    @classmethod
    def from_offer(cls, offer: Properties) -> Tariff:
        """The tariff an offer states; ValueError when it states none."""
        coeffs = offer.get(p.LINEAR_COEFFS)
        vector = offer.get(p.USAGE_VECTOR)
        if (
            not isinstance(coeffs, list)
            or not coeffs
            or not all(isinstance(c, int | float) for c in coeffs)
            or not isinstance(vector, list)
        ):
            raise ValueError(f"the offer has no valid {p.LINEAR_COEFFS} and {p.USAGE_VECTOR}")
        return cls(tuple(float(c) for c in coeffs), tuple(str(c) for c in vector))

    def cost(self, usage: Usage) -> Decimal:
        """The total due for `usage` (debit notes are cumulative: this, not a delta)."""
        return linear_cost(self.coeffs, self.usage_vector, usage.counters())

    def counters(self, usage: Usage) -> list[float]:
        """`usage` in the order of the agreement's usage vector (a debit note's vector)."""
        values = usage.counters()
        return [round(values.get(c, 0.0), 6) for c in self.usage_vector]


def invoice_amount(final_costs: Iterable[Decimal]) -> str:
    """What an agreement's one invoice is for: the sum of its activities' final costs."""
    return amount_str(sum(final_costs, Decimal(0)))
