"""Golem: the engine's entry point (interface; body lands next)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from golem_deploy.engine.events import EngineEvent

__all__ = ["Golem"]


class Golem:
    def __init__(
        self,
        budget: Decimal | float | str,
        subnet_tag: str | None = None,
        payment_driver: str | None = None,
        payment_network: str | None = None,
        *,
        api_url: str | None = None,
        app_key: str | None = None,
        event_consumer: Callable[[EngineEvent], None] | None = None,
    ) -> None:
        self.budget = Decimal(str(budget))
        self.spent = Decimal(0)
