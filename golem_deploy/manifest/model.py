"""The validated, normalized manifest: frozen dataclasses with every default applied.

This is the contract between the manifest layer and everything after it (compiler, engine,
supervisor). Nothing downstream ever sees raw YAML: durations are float seconds, money is
Decimal, host paths are absolute, every optional field has its default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path


@dataclass(frozen=True)
class RunStep:
    """Run a command on the provider.

    `argv` is exec'd as is; a shell string from the manifest becomes
    argv ("/bin/sh", "-c", <string>) with `shell=True`, so nothing passes through a shell
    unless the user wrote a shell string.
    """

    argv: tuple[str, ...]
    shell: bool = False


@dataclass(frozen=True)
class UploadStep:
    """Copy a local file (absolute, inside the manifest's folder) to a path on the provider."""

    src: Path
    dst: str


@dataclass(frozen=True)
class DownloadStep:
    """Copy a file from the provider to a local path (absolute, inside the manifest's folder)."""

    src: str
    dst: Path


Step = RunStep | UploadStep | DownloadStep


@dataclass(frozen=True)
class Payload:
    """What the provider must run: a VM image plus minimum resources."""

    runtime: str = "vm"
    image_hash: str | None = None
    image_tag: str | None = None
    image_url: str | None = None
    min_mem_gib: float = 0.5
    min_storage_gib: float = 2.0
    min_cpu_threads: int = 1
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class RestartPolicy:
    """When an instance that has reached `running` fails, whether and how to replace it."""

    policy: str = "never"  # never | on-failure | always
    max_restarts: int = 3
    backoff: float = 5.0  # seconds before the first restart; doubles each time


@dataclass(frozen=True)
class UpdatePolicy:
    """How a running service whose spec changed is replaced (`up` on a deployment that is
    up): `parallelism` instances at a time, each new one running before its old one stops."""

    parallelism: int = 1


@dataclass(frozen=True)
class LogRotation:
    """How big an instance's log file may grow before it is rotated, and how many files
    (the current one included) are kept -- compose's json-file `max-size` / `max-file`."""

    max_size: int = 10 * 1024 * 1024  # bytes
    max_files: int = 3


@dataclass(frozen=True)
class RunSpec:
    """The steps run while an instance is running; repeated every `every` seconds if set."""

    steps: tuple[Step, ...] = ()
    every: float | None = None


@dataclass(frozen=True)
class HttpProbe:
    """An HTTP GET of `path` on `port` of the instance, over the VPN; 2xx/3xx = healthy."""

    port: int
    path: str = "/"


@dataclass(frozen=True)
class Healthcheck:
    """How an instance's health is probed; `retries` failures in a row mark it unhealthy.

    Exactly one probe is set (validation guarantees it): `run`, a command on the provider
    (exit 0 = healthy); `http`, a GET over the VPN (2xx/3xx = healthy); or `tcp`, a port
    of the instance that must accept a TCP connection over the VPN. The last two exist only
    when the manifest has a network.
    """

    run: RunStep | None = None
    interval: float = 30.0
    timeout: float = 10.0
    retries: int = 3
    start_period: float = 0.0
    http: HttpProbe | None = None
    tcp: int | None = None


@dataclass(frozen=True)
class PortSpec:
    """A forwarded port: `host:host_port` on this machine -> `port` of the service's
    instances over the VPN. `host_port` None means a free local port is chosen at `up`."""

    host: str
    host_port: int | None
    port: int


@dataclass(frozen=True)
class NetworkSpec:
    """The deployment's VPN: an IPv4 range in CIDR form, e.g. "192.168.0.0/24".

    The requestor takes the first host address; instances follow (see manifest/network.py
    for the address of each (service, index) and the host names).
    """

    cidr: str


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the manifest: a payload and its start / run / shutdown steps."""

    name: str
    payload: Payload
    instances: int = 1
    expiration: float = 3600.0  # seconds each agreement lives
    lifetime: float | None = None  # seconds the service runs across agreements; None: until down
    respawn_unstarted_instances: bool = True
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    update: UpdatePolicy = field(default_factory=UpdatePolicy)
    logs: LogRotation = field(default_factory=LogRotation)
    env: dict[str, str] = field(default_factory=dict)
    start: tuple[Step, ...] = ()
    run: RunSpec = field(default_factory=RunSpec)
    shutdown: tuple[Step, ...] = ()
    healthcheck: Healthcheck | None = None
    depends_on: tuple[str, ...] = ()
    # container path -> absolute host path; read only by the embedded local network
    mounts: dict[str, Path] = field(default_factory=dict)
    ports: tuple[PortSpec, ...] = ()
    # local.image: a .gvmi file or unpacked image folder on this host (local network only)
    local_image: Path | None = None


@dataclass(frozen=True)
class MaxPrice:
    """Price caps in GLM; None means no cap on that coefficient."""

    start: Decimal | None = None
    cpu_per_hour: Decimal | None = None
    env_per_hour: Decimal | None = None


@dataclass(frozen=True)
class Market:
    max_price: MaxPrice = field(default_factory=MaxPrice)
    blacklist: tuple[str, ...] = ()  # provider node ids or names never to sign with


@dataclass(frozen=True)
class Payment:
    driver: str = "erc20"
    network: str = "holesky"
    debit_note_interval: float | None = None  # seconds; None: the provider's, at least 60 s
    payment_timeout: float | None = None  # seconds; None: mid-agreement payments from 5 h on


@dataclass(frozen=True)
class Manifest:
    """A whole deployment. `services` keeps the manifest's order."""

    path: Path  # absolute path of the manifest file
    name: str
    budget: Decimal
    services: dict[str, ServiceSpec]
    version: str = "1"
    payment: Payment = field(default_factory=Payment)
    subnet: str = "public"
    market: Market = field(default_factory=Market)
    # The resolved VPN: None when the deployment has none (`network: false`, or one service
    # without ports). When set, every service's payload capabilities include "vpn".
    network: NetworkSpec | None = None

    @property
    def folder(self) -> Path:
        """Relative paths in the manifest (uploads, downloads, mounts) resolve from here."""
        return self.path.parent

    def start_order(self) -> list[list[str]]:
        """Services grouped in waves: each wave depends only on earlier waves."""
        remaining = dict(self.services)
        done: set[str] = set()
        waves: list[list[str]] = []
        while remaining:
            wave = [n for n, s in remaining.items() if set(s.depends_on) <= done]
            if not wave:  # a cycle; validation rejects these, so this is a programming error
                raise ValueError(f"cyclic depends_on among {sorted(remaining)}")
            waves.append(wave)
            done.update(wave)
            for name in wave:
                del remaining[name]
        return waves
