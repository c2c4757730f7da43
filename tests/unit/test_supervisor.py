"""The supervisor's own logic, driven in-process: waves, journaling, snapshots, control API.

The engine is replaced by a small in-memory stand-in with the same surface the supervisor
uses (run_service -> cluster with instances that change state); no HTTP is mocked. What
crosses the process boundary (the real engine on a real local network) is in tests/e2e.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from golem_deploy.engine import events
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.manifest.model import Manifest, Payload, ServiceSpec
from golem_deploy.supervisor import api, client, journal, logs
from golem_deploy.supervisor.daemon import Supervisor
from golem_deploy.supervisor.deployments import DeploymentDir
from golem_deploy.supervisor.journal import Journal, Redactor

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiohttp needs asyncio


@dataclass
class FakeInstance:
    service: str
    index: int
    state: ServiceState = ServiceState.pending
    provider_id: str | None = None
    provider_name: str | None = None
    agreement_id: str | None = None
    activity_id: str | None = None
    started_at: Any = None
    restarts: int = 0
    cost: Decimal = Decimal(0)
    last_output: str = ""
    reason: str = ""


class FakeCluster:
    def __init__(self, service: str, n: int) -> None:
        self.instances = [FakeInstance(service, i) for i in range(n)]
        self.stopped = False

    @property
    def finished(self) -> bool:
        return all(inst.state == ServiceState.terminated for inst in self.instances)

    def stop(self) -> None:
        self.stopped = True
        for inst in self.instances:
            inst.state = ServiceState.terminated


class FakeGolem:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.clusters: dict[str, FakeCluster] = {}
        self.spent = Decimal("0.25")

    async def run_service(self, cls: Any, *, num_instances: int, **_: Any) -> FakeCluster:
        self.started.append(cls)
        cluster = FakeCluster(cls, num_instances)
        self.clusters[cls] = cluster
        return cluster


def _manifest(tmp_path: Path) -> Manifest:
    def spec(name: str, n: int, deps: tuple[str, ...] = (), env: dict[str, str] | None = None):
        return ServiceSpec(
            name=name, payload=Payload(), instances=n, depends_on=deps, env=env or {}
        )

    return Manifest(
        path=tmp_path / "m.yaml",
        name="multi",
        budget=Decimal("1"),
        services={
            "web": spec("web", 2, ("db", "cache")),
            "db": spec("db", 1, env={"PASSWORD": "s3cr3t-pass"}),
            "cache": spec("cache", 1),
        },
    )


def _supervisor(tmp_path: Path) -> Supervisor:
    folder = DeploymentDir("multi", tmp_path / "dep")
    folder.root.mkdir()
    manifest = _manifest(tmp_path)
    redactor = Redactor(["s3cr3t-pass"])
    return Supervisor(
        manifest,
        folder,
        providers=3,
        faults=None,
        journal=Journal(folder.journal, redactor=redactor),
        redactor=redactor,
    )


def _set_all(cluster: FakeCluster, state: ServiceState) -> None:
    for inst in cluster.instances:
        inst.state = state


async def test_a_wave_starts_only_when_every_earlier_instance_runs(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    golem = FakeGolem()
    classes = {"web": "web", "db": "db", "cache": "cache"}
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup._start_waves, golem, classes)
        with anyio.fail_after(5):
            while len(golem.started) < 2:
                await anyio.sleep(0.01)
        assert golem.started == ["db", "cache"]  # the first wave, in manifest order
        _set_all(golem.clusters["db"], ServiceState.running)
        await anyio.sleep(0.5)
        assert golem.started == ["db", "cache"]  # cache is not running yet: web waits
        _set_all(golem.clusters["cache"], ServiceState.running)
        with anyio.fail_after(5):
            while "web" not in golem.started:
                await anyio.sleep(0.01)
        assert sup.state == "starting"
        _set_all(golem.clusters["web"], ServiceState.running)
        with anyio.fail_after(5):
            while sup.state != "running":
                await anyio.sleep(0.01)
        kinds = [r["kind"] for r in journal.read(sup.journal.path)]
        assert kinds.count("WaveRunning") == 2 and kinds[-1] == "DeploymentRunning"
        # Every instance ends by itself (say the budget ran out): the supervisor goes down.
        assert not sup.down.event.is_set()
        for cluster in golem.clusters.values():
            for inst in cluster.instances:
                inst.state, inst.reason = ServiceState.terminated, "budget exhausted"
    assert sup.down.event.is_set()
    assert sup.reason == "every instance ended: budget exhausted"
    assert journal.load(sup.journal.path).ended == sup.reason


async def test_an_instance_that_ends_before_running_fails_the_deployment(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    golem = FakeGolem()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup._start_waves, golem, {"web": "web", "db": "db", "cache": "cache"})
        with anyio.fail_after(5):
            while len(golem.started) < 2:
                await anyio.sleep(0.01)
        golem.clusters["db"].instances[0].state = ServiceState.terminated
        golem.clusters["db"].instances[0].reason = "start step failed: exit code 3"
    assert sup.state == "failed"
    assert sup.reason == "db.0 did not start: start step failed: exit code 3"
    assert "web" not in golem.started  # later waves never start


async def test_a_terminated_instance_with_a_restart_scheduled_has_not_ended(
    tmp_path: Path,
) -> None:
    sup = _supervisor(tmp_path)
    golem = FakeGolem()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup._start_waves, golem, {"web": "web", "db": "db", "cache": "cache"})
        with anyio.fail_after(5):
            while len(golem.started) < 2:
                await anyio.sleep(0.01)
        db = golem.clusters["db"].instances[0]
        sup.on_event(
            events.InstanceRestartScheduled(
                service="db", index=0, attempt=1, delay=5.0, reason="run failed"
            )
        )
        db.state = ServiceState.terminated
        await anyio.sleep(0.5)
        assert sup.state == "starting"  # waiting for the replacement, not failed
        db.state = ServiceState.running
        _set_all(golem.clusters["cache"], ServiceState.running)
        with anyio.fail_after(5):
            while "web" not in golem.started:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


async def test_events_are_journaled_and_logged_without_secrets(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    sup.on_event(events.AllocationCreated(allocation_id="al", amount=Decimal(1), platform="p"))
    sup.on_event(
        events.AgreementCreated(
            service="db", index=0, agreement_id="ag", provider_id="0xp", provider_name="prov-1"
        )
    )
    sup.on_event(events.ActivityCreated(service="db", index=0, activity_id="ac", agreement_id="ag"))
    sup.on_event(
        events.InstanceStateChanged(
            service="db",
            index=0,
            old=ServiceState.starting,
            new=ServiceState.running,
            reason="started",
        )
    )
    sup.on_event(
        events.CommandStarted(
            service="db", index=0, command="run /usr/bin/env PASSWORD=s3cr3t-pass x"
        )
    )
    sup.on_event(events.CommandOutput(service="db", index=0, stream="stdout", text="hello\npass="))
    sup.on_event(events.CommandOutput(service="db", index=0, stream="stdout", text="s3cr3t-pass\n"))
    held = journal.load(sup.journal.path)
    assert set(held.allocations) == {"al"} and set(held.agreements) == {"ag"}
    assert held.activities == {"ac": "ag"}
    assert held.instance_states == {("db", 0): "running"}
    sup.logs.close()
    files = logs.log_files(sup.folder.logs)
    assert [(s, i) for s, i, _ in files] == [("db", 0)]
    lines = [line.format() for line in logs.read_merged(files)]
    assert "db.0 | [starting -> running (started)]" in lines
    assert "db.0 | hello" in lines
    assert "db.0 | pass=***" in lines  # a chunk split mid-line is joined, then redacted
    for path in [sup.journal.path, *(p for _, _, p in files)]:
        assert "s3cr3t-pass" not in path.read_text()


async def test_snapshot_has_every_instance_in_manifest_order(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    golem = FakeGolem()
    sup.golem = golem
    sup.clusters["db"] = await golem.run_service("db", num_instances=1)
    inst = sup.clusters["db"].instances[0]
    inst.state, inst.provider_name, inst.cost = ServiceState.running, "prov-1", Decimal("0.1")
    inst.last_output = "a\nb\n"
    snap = sup.snapshot()
    assert [s["name"] for s in snap["services"]] == ["web", "db", "cache"]
    web, db, _ = snap["services"]
    assert [i["state"] for i in web["instances"]] == ["pending", "pending"]
    assert db["instances"][0]["state"] == "running"
    assert db["instances"][0]["provider_name"] == "prov-1"
    assert db["instances"][0]["cost"] == "0.1"
    assert db["instances"][0]["last_output"] == "b"
    assert snap["budget"] == {"total": "1", "spent": "0.25", "remaining": "0.75"}


async def test_control_socket_is_private_and_serves_snapshot_logs_and_down(
    tmp_path: Path,
) -> None:
    sup = _supervisor(tmp_path)
    sock = Path(os.environ.get("TMPDIR", "/tmp")) / f"gd-test-{os.getpid()}.sock"
    runner = await api.serve(sup, sock)
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        snap = await anyio.to_thread.run_sync(lambda: client.request(sock, "GET", "/snapshot"))
        assert snap["name"] == "multi" and snap["state"] == "starting"
        sup.logs.write("db", 0, "stdout", "one\n")
        text = await anyio.to_thread.run_sync(lambda: client.request(sock, "GET", "/logs"))
        assert text == "db.0 | one\n"
        answer = await anyio.to_thread.run_sync(
            lambda: client.request(sock, "POST", "/down", {"timeout": 7})
        )
        assert answer["accepted"] is True
        assert sup.down.event.is_set() and sup.down.timeout == 7
        with pytest.raises(Exception, match="400"):
            await anyio.to_thread.run_sync(
                lambda: client.request(sock, "POST", "/down", {"timeout": -1})
            )
    finally:
        await runner.cleanup()
        sock.unlink(missing_ok=True)


async def test_event_stream_delivers_records_as_they_happen(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    sock = Path(os.environ.get("TMPDIR", "/tmp")) / f"gd-test-ev-{os.getpid()}.sock"
    runner = await api.serve(sup, sock)
    received: list[dict[str, Any]] = []

    def read_two() -> None:
        for record in client.EventStream(sock):
            if record["kind"] != "Heartbeat":
                received.append(record)
            if len(received) == 2:
                return

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, read_two)
            with anyio.fail_after(5):
                while not sup._subscribers:
                    await anyio.sleep(0.01)
            sup.on_event(
                events.AllocationCreated(allocation_id="al", amount=Decimal(1), platform="p")
            )
            sup.on_event(events.CommandOutput(service="db", index=0, stream="stdout", text="hi\n"))
    finally:
        sup.done.set()
        await runner.cleanup()
        sock.unlink(missing_ok=True)
    first, second = received
    assert first["kind"] == "AllocationCreated" and first["allocation_id"] == "al"
    assert second == {
        "kind": "CommandOutput",
        "service": "db",
        "index": 0,
        "stream": "stdout",
        "text": "hi\n",
    }
