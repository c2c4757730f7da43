"""How `Golem.run_service` reads what it is given: the expiration (yapapi's rules), the
configuration a Service class carries, and the yapapi hooks it must refuse rather than
ignore."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

from golem_deploy.engine.config import HealthCheck
from golem_deploy.engine.service import Service
from golem_deploy.errors import GolemDeployError

__all__ = ["DEFAULT_EXPIRATION", "EngineError", "check_hooks", "expiration_time"]

_T = TypeVar("_T")
DEFAULT_EXPIRATION = timedelta(minutes=180)  # yapapi's Cluster.DEFAULT_SERVICE_EXPIRATION


class EngineError(GolemDeployError):
    """Misuse of the engine API (bad arguments, used outside `async with`)."""


def expiration_time(expiration: datetime | timedelta | None, now: datetime) -> datetime:
    """When a cluster expires (UTC): `now` plus a timedelta (default 180 min), or a datetime;
    a naive datetime is local time, as yapapi reads it (`datetime.now() + timedelta(...)`
    means the same moment wherever the program runs)."""
    if expiration is None:
        return now + DEFAULT_EXPIRATION
    if isinstance(expiration, timedelta):
        return now + expiration
    return expiration.astimezone(UTC)  # naive: astimezone takes it as local time


def _class_default(service_class: type[Service], name: str, kind: type[_T]) -> _T | None:
    """A class attribute that configures `run_service`, when it has the engine's type; an
    attribute of another type under that name (a user's own `healthcheck()` method, say)
    is the subclass's business, not configuration."""
    value = getattr(service_class, name, None)
    return value if isinstance(value, kind) else None


def check_hooks(service_class: type[Service], healthcheck: HealthCheck | None) -> None:
    """Refuse yapapi hook overrides the engine would otherwise silently ignore."""
    name = service_class.__name__
    if service_class.restart_condition is not Service.restart_condition:
        raise EngineError(
            f"{name} overrides yapapi's restart_condition, which golem-deploy does not "
            "consult: its restarts follow run_service(restart=RestartPolicy(...)) and "
            "respawn_unstarted_instances",
            hint="remove the override and pass e.g. restart=RestartPolicy('on-failure', "
            "max_restarts=3) (respawn_unstarted_instances=True respawns failed starts)",
        )
    own_probe = service_class.is_activity_responsive is not Service.is_activity_responsive
    if own_probe and healthcheck is not None and healthcheck.probes:
        raise EngineError(
            f"{name} overrides is_activity_responsive() and has a health check probe: "
            "the engine runs one check per instance",
            hint="drop the HealthCheck's argv/http/tcp (keep interval, timeout, retries) "
            "or the is_activity_responsive() override",
        )
