"""The engine's typed configuration of a service: restart policy, health check, price caps.

The engine never reads a manifest: the compiler translates the manifest's objects into
these, and library users build them directly."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["HealthCheck", "HealthcheckConfig", "HttpProbe", "PriceCaps", "RestartPolicy"]

RESTART_POLICIES = ("never", "on-failure", "always")


@dataclass(frozen=True)
class RestartPolicy:
    """Whether an instance that failed after reaching running is replaced on another
    provider: `never`, `on-failure`, or `always` (also when its run returned); at most
    `max_restarts` times, `backoff` seconds before the first, doubling each time."""

    policy: str = "never"
    max_restarts: int = 3
    backoff: float = 5.0

    def __post_init__(self) -> None:
        if self.policy not in RESTART_POLICIES:
            raise ValueError(f"unknown restart policy {self.policy!r}")


@dataclass(frozen=True)
class HttpProbe:
    """An HTTP GET of `path` on `port` of the instance, over the VPN; a 2xx/3xx status is
    healthy."""

    port: int
    path: str = "/"


@dataclass(frozen=True)
class HealthCheck:
    """How an instance's health is checked while it runs.

    At most one probe: `argv`, a command run on the provider (non-zero exit = failure);
    `http`, a GET sent from the requestor over the VPN; `tcp`, a port of the instance that
    must accept a connection over the VPN (the last two need the instance on a network).
    Without any, only the activity's state is queried, as yapapi does. `retries`
    consecutive failures make the instance unhealthy (replaced when its restart policy
    allows)."""

    argv: tuple[str, ...] | None = None
    interval: float = 10.0
    timeout: float = 10.0
    retries: int = 3
    start_period: float = 0.0
    http: HttpProbe | None = None
    tcp: int | None = None

    def __post_init__(self) -> None:
        if sum(p is not None for p in (self.argv, self.http, self.tcp)) > 1:
            raise ValueError("a health check has one probe: argv, http or tcp")

    @property
    def probes(self) -> bool:
        """Whether anything beyond the activity's state is checked."""
        return self.argv is not None or self.http is not None or self.tcp is not None


#: The name this class had before the engine owned its configuration.
HealthcheckConfig = HealthCheck


@dataclass(frozen=True)
class PriceCaps:
    """The most an offer may charge (GLM; None = no cap): its start price, and its CPU and
    environment prices per hour."""

    start: Decimal | None = None
    cpu_per_hour: Decimal | None = None
    env_per_hour: Decimal | None = None
