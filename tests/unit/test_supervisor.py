"""The supervisor's own logic, driven in-process: waves, journaling, snapshots, control API.

The engine is replaced by a small in-memory stand-in with the same surface the supervisor
uses (run_service -> a cluster whose instances change state and report it as the engine's
own InstanceStateChanged events; wait_finished; Service.snapshot); no HTTP is mocked. What
crosses the process boundary (the real engine on a real local network) is in tests/e2e.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from golem_deploy.engine import events
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.service import InstanceSnapshot
from golem_deploy.manifest.model import Manifest, Payload, ServiceSpec
from golem_deploy.supervisor import api, client, journal, logs
from golem_deploy.supervisor.daemon import Supervisor
from golem_deploy.supervisor.deployments import DeploymentDir
from golem_deploy.supervisor.journal import Journal, Redactor

pytestmark = pytest.mark.anyio


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
    restart_scheduled: bool = False
    ip: str | None = None
    download: None = None
    renewals: int = 0
    expires_at: Any = None

    def snapshot(self) -> InstanceSnapshot:
        return InstanceSnapshot(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(InstanceSnapshot)}
        )


class FakeCluster:
    """Instances that change state the way the engine reports it: with an event each."""

    def __init__(self, service: str, n: int, emit: Callable[[events.EngineEvent], None]) -> None:
        self.instances = [FakeInstance(service, i) for i in range(n)]
        self.expiration = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        self.stopped = False
        self._emit = emit
        self._finished = anyio.Event()

    def set_state(
        self, index: int, state: ServiceState, reason: str = "", final: bool | None = None
    ) -> None:
        """`final`: whether the engine would call the instance ended (default: terminated,
        as without a restart policy)."""
        inst = self.instances[index]
        old, inst.state, inst.reason = inst.state, state, reason
        self._emit(
            events.InstanceStateChanged(
                service=inst.service,
                index=index,
                old=old,
                new=state,
                reason=reason,
                final=state is ServiceState.terminated if final is None else final,
            )
        )
        if all(i.state is ServiceState.terminated for i in self.instances):
            self._finished.set()

    def set_all(self, state: ServiceState, reason: str = "") -> None:
        for inst in self.instances:
            self.set_state(inst.index, state, reason)

    async def wait_finished(self) -> None:
        await self._finished.wait()

    def stop(self) -> None:
        self.stopped = True
        self.set_all(ServiceState.terminated)


class FakeGolem:
    def __init__(self, emit: Callable[[events.EngineEvent], None]) -> None:
        self.started: list[str] = []
        self.clusters: dict[str, FakeCluster] = {}
        self.spent = Decimal("0.25")
        self._emit = emit

    def burn_rate(self) -> Decimal | None:
        return None

    async def run_service(self, cls: Any, *, num_instances: int, **_: Any) -> FakeCluster:
        self.started.append(cls)
        cluster = FakeCluster(cls, num_instances, self._emit)
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


CLASSES = {"web": "web", "db": "db", "cache": "cache"}


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.01)


async def test_a_wave_starts_only_when_every_earlier_instance_runs(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    golem = FakeGolem(sup.on_event)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup._run_waves, golem, CLASSES)
        await _until(lambda: len(golem.started) == 2)
        assert golem.started == ["db", "cache"]  # the first wave, in manifest order
        golem.clusters["db"].set_all(ServiceState.running)
        await anyio.sleep(0.2)
        assert golem.started == ["db", "cache"]  # cache is not running yet: web waits
        golem.clusters["cache"].set_all(ServiceState.running)
        await _until(lambda: "web" in golem.started)
        assert sup.state == "starting"
        golem.clusters["web"].set_all(ServiceState.running)
        assert sup.state == "running"
        kinds = [r["kind"] for r in journal.read(sup.journal.path)]
        assert kinds.count("WaveRunning") == 2 and kinds[-1] == "DeploymentRunning"
        # Every instance ends by itself (say the budget ran out): the supervisor goes down.
        assert not sup.down.event.is_set()
        for cluster in golem.clusters.values():
            cluster.set_all(ServiceState.terminated, "budget exhausted")
        await _until(sup.down.event.is_set)
        tg.cancel_scope.cancel()
    assert sup.reason == "every instance ended: budget exhausted"
    assert journal.load(sup.journal.path).ended == sup.reason


async def test_an_instance_that_ends_before_running_fails_the_deployment(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    golem = FakeGolem(sup.on_event)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup._run_waves, golem, CLASSES)
        await _until(lambda: len(golem.started) == 2)
        golem.clusters["db"].set_state(0, ServiceState.terminated, "start step failed: exit code 3")
        golem.clusters["cache"].set_all(ServiceState.running)
        await anyio.sleep(0.2)
        tg.cancel_scope.cancel()
    assert sup.state == "failed"
    assert sup.reason == "db.0 did not start: start step failed: exit code 3"
    assert "web" not in golem.started  # later waves never start


async def test_a_terminated_instance_with_a_restart_scheduled_has_not_ended(
    tmp_path: Path,
) -> None:
    sup = _supervisor(tmp_path)
    golem = FakeGolem(sup.on_event)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup._run_waves, golem, CLASSES)
        await _until(lambda: len(golem.started) == 2)
        sup.on_event(
            events.InstanceRestartScheduled(
                service="db", index=0, attempt=1, delay=5.0, reason="run failed"
            )
        )
        golem.clusters["db"].set_state(0, ServiceState.terminated, "run failed", final=False)
        assert sup.state == "starting"  # waiting for the replacement, not failed
        golem.clusters["db"].set_state(0, ServiceState.running)
        golem.clusters["cache"].set_all(ServiceState.running)
        await _until(lambda: "web" in golem.started)
        tg.cancel_scope.cancel()


async def test_down_stops_services_in_reverse_wave_order(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    golem = FakeGolem(sup.on_event)
    stopped: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup._run_waves, golem, CLASSES)
        await _until(lambda: len(golem.started) == 2)
        for name in ("db", "cache"):
            golem.clusters[name].set_all(ServiceState.running)
        await _until(lambda: "web" in golem.started)
        tg.cancel_scope.cancel()
    for name, cluster in golem.clusters.items():
        cluster.stop = (lambda n, c: lambda: (stopped.append(n), FakeCluster.stop(c)))(
            name, cluster
        )
    await sup._stop_services()
    assert stopped == ["web", "db", "cache"]


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
    golem = FakeGolem(sup.on_event)
    sup.golem = golem  # type: ignore[assignment]
    sup.clusters["db"] = await golem.run_service("db", num_instances=1)  # type: ignore[assignment]
    inst = sup.clusters["db"].instances[0]
    inst.state, inst.provider_name, inst.cost = ServiceState.running, "prov-1", Decimal("0.1")
    inst.last_output = "a\nb\n"
    snap = sup.snapshot().plain()
    assert [s["name"] for s in snap["services"]] == ["web", "db", "cache"]
    web, db, _ = snap["services"]
    assert [i["state"] for i in web["instances"]] == ["pending", "pending"]
    assert db["instances"][0]["state"] == "running"
    assert db["instances"][0]["provider_name"] == "prov-1"
    assert db["instances"][0]["cost"] == "0.1"
    assert db["instances"][0]["last_output"] == "b"
    assert snap["budget"] == {
        "total": "1",
        "spent": "0.25",
        "remaining": "0.75",
        "burn_rate_per_hour": None,
        "runs_out_at": None,
    }


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
                while not sup.records.readers:
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
