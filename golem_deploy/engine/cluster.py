"""Cluster: the instances of one service class, each driven by its own runner task."""

from __future__ import annotations

from golem_deploy.engine.service import Service

__all__ = ["Cluster"]


class Cluster:
    """The instances started by one `Golem.run_service` call (interface; body lands next)."""

    def __init__(self, service_class: type[Service]) -> None:
        self.service_class = service_class
        self._instances: list[Service] = []

    @property
    def instances(self) -> list[Service]:
        return list(self._instances)

    def stop(self) -> None:
        raise NotImplementedError

    def stop_instance(self, instance: Service) -> None:
        raise NotImplementedError
