"""The supervisor's record fan-out: every reader gets what it asked for, nobody blocks it."""

from __future__ import annotations

import anyio
import pytest

from golem_deploy.supervisor.broadcast import Broadcast, Record

pytestmark = pytest.mark.anyio


def _drain(receive: anyio.abc.ObjectReceiveStream[Record]) -> list[str]:
    kinds = []
    while True:
        try:
            kinds.append(receive.receive_nowait()["kind"])
        except (anyio.WouldBlock, anyio.EndOfStream):
            return kinds


async def test_a_reader_that_names_kinds_gets_only_those_and_the_others_get_all() -> None:
    records = Broadcast()
    every_send, every = anyio.create_memory_object_stream[Record](10)
    watched_send, watched = anyio.create_memory_object_stream[Record](10)
    records.subscribe(every_send)
    records.subscribe(watched_send, ("Deployment", "InstanceStateChanged"))
    for kind in ("AgreementCreated", "InstanceStateChanged", "CommandStarted", "DeploymentRunning"):
        records.publish({"kind": kind})
    records.end()
    assert _drain(every) == [
        "AgreementCreated",
        "InstanceStateChanged",
        "CommandStarted",
        "DeploymentRunning",
    ]
    assert _drain(watched) == ["InstanceStateChanged", "DeploymentRunning"]


async def test_wants_says_whether_a_record_of_that_kind_would_reach_anyone() -> None:
    """The supervisor builds the records it does not journal (every command of every
    batch) only when some reader takes them."""
    records = Broadcast()
    assert not records.wants("CommandStarted")
    send, _receive = anyio.create_memory_object_stream[Record](10)
    records.subscribe(send, ("Deployment",))
    assert records.wants("DeploymentRunning")
    assert not records.wants("CommandStarted")
    everything, _all = anyio.create_memory_object_stream[Record](10)
    records.subscribe(everything)
    assert records.wants("CommandStarted")


async def test_a_reader_that_falls_behind_loses_its_stream_not_the_others() -> None:
    records = Broadcast()
    slow_send, slow = anyio.create_memory_object_stream[Record](1)
    fast_send, fast = anyio.create_memory_object_stream[Record](10)
    records.subscribe(slow_send)
    records.subscribe(fast_send)
    for n in range(3):
        records.publish({"kind": f"K{n}"})
    assert records.readers == 1
    assert _drain(slow) == ["K0"]  # what it held, then the end
    records.end()
    assert _drain(fast) == ["K0", "K1", "K2"]
