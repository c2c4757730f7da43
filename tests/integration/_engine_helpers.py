"""Helpers shared by the engine's integration tests (tests/integration/test_engine*.py)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anyio

from golem_deploy.engine import Golem, vm
from golem_deploy.engine import events as ev
from golem_deploy.engine.payload import VmPayload
from golem_deploy.localnet import LocalNetInfo

IMAGE_HASH = "0" * 56
IMAGE_URL = "http://127.0.0.1:1/local-image.gvmi"  # never fetched on the local network


async def _payload() -> VmPayload:
    return await vm.repo(image_hash=IMAGE_HASH, image_url=IMAGE_URL)


class Recorder:
    """An event consumer that keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[ev.EngineEvent] = []

    def __call__(self, event: ev.EngineEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def output(self, index: int | None = None) -> str:
        return "".join(
            e.text
            for e in self.of(ev.CommandOutput)
            if e.stream == "stdout" and (index is None or e.index == index)
        )


async def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    with anyio.move_on_after(timeout):
        while not cond():
            await anyio.sleep(0.1)
    assert cond(), f"timed out waiting for {what}"


def golem_for(info: LocalNetInfo, rec: Recorder, budget: str = "5", **kw: Any) -> Golem:
    return Golem(
        budget=Decimal(budget),
        subnet_tag=info.subnet,
        payment_driver=info.payment_driver,
        payment_network=info.payment_network,
        api_url=info.api_url,
        app_key=info.app_key,
        event_consumer=rec,
        **kw,
    )


def assert_settled(rec: Recorder, budget: Decimal, golem: Golem) -> None:
    """Every agreement created was terminated and its invoice accepted, within budget."""
    created = {e.agreement_id for e in rec.of(ev.AgreementCreated)}
    rejected = {e.agreement_id for e in rec.of(ev.AgreementRejected)}
    terminated = {e.agreement_id for e in rec.of(ev.AgreementTerminated)}
    invoiced = {e.agreement_id for e in rec.of(ev.InvoiceAccepted)}
    used = created - rejected
    assert used <= terminated, f"not terminated: {used - terminated}"
    assert used <= invoiced, f"no invoice accepted for: {used - invoiced}"
    assert golem.spent <= budget
    accepted = sum((e.new_spend for e in rec.of(ev.InvoiceAccepted)), Decimal(0)) + sum(
        (e.amount for e in rec.of(ev.DebitNoteAccepted)), Decimal(0)
    )
    assert accepted == golem.spent
    assert len(rec.of(ev.AllocationReleased)) == 1
