"""What a provider agent is given (its config) and keeps per agreement and activity."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import anyio

from golem_deploy.localnet.faults import NO_FAULTS, ProviderFaults
from golem_deploy.localnet.node import ProviderIdentity
from golem_deploy.localnet.provider.exeunits import ExeUnitLike
from golem_deploy.localnet.provider.terms import DEBIT_NOTE_INTERVAL, Resources, Tariff, Usage
from golem_deploy.localnet.vpn_host import VpnHost


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
    vpn: VpnHost | None = None  # the host process's VPN side, shared by every agent


@dataclass
class Agreement:
    """An approved agreement: its terms, what it reserves, and its activities."""

    agreement_id: str
    requestor_id: str
    tariff: Tariff
    debit_note_interval: float  # as negotiated (terms.debit_note_interval)
    multi_activity: bool
    reserved: Resources
    mounts: dict[str, Path]
    valid_to: datetime | None = None
    task_package: str | None = None  # the image to run, as the demand names it
    local_image: Path | None = None  # local.image: a .gvmi file or image tree on this host
    activities: dict[str, Activity] = field(default_factory=dict)
    ended: anyio.Event = field(default_factory=anyio.Event)
    end_reason: str = ""
    terminated_by_us: bool = False
    payment_timeout: float | None = None  # mid-agreement payments agreed (terms.payment_timeout)
    last_payable: float = 0.0  # when the last payable note was sent (anyio clock), or approval
    # For the invoice's log line: when it ended (time.monotonic) and how long after yagna
    # recorded the requestor's termination the agent saw it (None: not that way, unknown).
    ended_at: float = 0.0
    end_seen_after: float | None = None

    def end(self, reason: str, seen_after: float | None = None) -> None:
        self.end_reason = reason
        self.ended_at = time.monotonic()
        self.end_seen_after = seen_after
        self.ended.set()


@dataclass
class Activity:
    """One activity of an agreement and the ExeUnit that serves it."""

    activity_id: str
    agreement: Agreement
    stop: anyio.Event = field(default_factory=anyio.Event)
    stop_reason: str = ""
    # Set once the ExeUnit is gone and `final_cost` is known: what the agreement's invoice
    # waits for. `done` comes after the final debit note is delivered too; the invoice does
    # not wait for that round trip (with 10 agreements ending at once, the provider node
    # took 0.1-0.4 s per note), and once the invoice is in, the requestor has no final note
    # left to accept before it (an invoice covers the whole agreement).
    finished: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    exeunit: ExeUnitLike | None = None
    final_cost: Decimal = Decimal(0)
    debit_notes: int = 0
    running: bool = False  # the ExeUnit is up (registered, Initialized)
    crashed: str | None = None  # why the ExeUnit died on its own, if it did
    # Timings for the log (bench/activity_create.py reads them): how long after yagna
    # recorded CreateActivity / DestroyActivity the agent saw it (None: unknown), and when
    # the agent started it and asked it to stop (time.monotonic).
    create_seen_after: float | None = None
    destroy_seen_after: float | None = None
    started_at: float = 0.0
    stop_requested_at: float = 0.0

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop_requested_at = time.monotonic()
            self.stop.set()

    def usage(self) -> Usage:
        if self.exeunit is None:
            return Usage()
        cpu, duration = self.exeunit.usage
        return Usage(cpu_sec=cpu, duration_sec=duration)

    def cost(self) -> Decimal:
        return self.agreement.tariff.cost(self.usage())
