"""A service's clusters across changes: which instances the supervisor shows and routes to.

A change that replaces a service's instances (reconcile.py) starts a new cluster for the
new spec while the old one still serves; until the old instances ended, a service has more
than one cluster. These helpers answer, for the supervisor's snapshot, its forwarded ports
and its `down`, "every cluster of this service", oldest first, so the newest instance of an
index is the one shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from golem_deploy.engine.lifecycle import ServiceState

if TYPE_CHECKING:
    from golem_deploy.engine import Cluster
    from golem_deploy.engine.service import InstanceSnapshot

__all__ = ["every_cluster", "hidden", "service_clusters"]


def service_clusters(
    current: Mapping[str, Cluster], retired: Mapping[str, Sequence[Cluster]], name: str
) -> list[Cluster]:
    """The clusters of service `name`: those a change replaced first, the current last."""
    now = current.get(name)
    return [*retired.get(name, ()), *([now] if now is not None else [])]


def every_cluster(
    current: Mapping[str, Cluster], retired: Mapping[str, Sequence[Cluster]]
) -> list[tuple[str, Cluster]]:
    """(service, cluster) for every cluster of every service, services in the order known."""
    return [
        (name, cluster)
        for name in dict.fromkeys([*retired, *current])
        for cluster in service_clusters(current, retired, name)
    ]


def hidden(view: InstanceSnapshot, count: int, *, shown: bool) -> bool:
    """Whether the snapshot leaves out this instance, which has ended for good: a change
    stopped it (its index is beyond the service's count now), or its index is already
    `shown` by another instance (a replacement, or the old instance a failed one left)."""
    if view.state not in (ServiceState.terminated, ServiceState.unresponsive):
        return False
    if view.restart_scheduled:
        return False
    return view.index >= count or shown
