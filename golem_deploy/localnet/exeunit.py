"""The local ExeUnit: executes one activity's ExeScript, speaking yagna's bus protocol.

A real provider starts one ExeUnit process per activity; ours runs in-process in the
provider agent (one bus connection and a few tasks per activity) but is indistinguishable
on the wire: it binds ``/public/exeunit/<activityId>`` on the provider node's GSB router,
reports state and usage to ``/local/activity`` and answers the requests yagna forwards from
the requestor (Exec, GetExecBatchResults, StreamExecBatchResults, GetActivityState,
GetActivityUsage, GetRunningCommand) with the reply shapes of localnet-protocol.md §4.5.
Commands run in a per-activity :class:`~golem_deploy.localnet.sandbox.Sandbox`.

The provider agent owns it::

    unit = ExeUnit(ExeUnitConfig(...))
    await task_group.start(unit.serve)   # registered and Initialized when this returns
    ...
    await unit.shutdown("destroyed by requestor")   # or unit.vanish() to simulate a crash

This module is the bus side: the connection, state and usage reports, and the requests.
What the commands do is :mod:`exeunit_commands` (a base class of :class:`ExeUnit`), a
batch's bookkeeping :mod:`exeunit_batch`, the ``transfer`` command :mod:`exeunit_transfer`,
the sandbox started before deploy asks for it :mod:`exeunit_prestart`.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from golem_deploy.localnet.exeunit_batch import Batch
from golem_deploy.localnet.exeunit_commands import ExeUnitCommands
from golem_deploy.localnet.exeunit_prestart import Prestart
from golem_deploy.localnet.exeunit_vpn import ActivityVpn
from golem_deploy.localnet.gsb import CALL_BAD_REQUEST, GsbClient, GsbError, IncomingCall
from golem_deploy.localnet.rootfs import RootFs
from golem_deploy.localnet.sandbox import Sandbox
from golem_deploy.localnet.vpn_host import VpnHost

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 2.0
"""Seconds between usage reports (real ExeUnits: 1 s). Each costs the provider's yagna a
bus call and a database write; it says Unresponsive once the last is 5 s old."""

CPU_SEC = "golem.usage.cpu_sec"
DURATION_SEC = "golem.usage.duration_sec"


@dataclass(frozen=True)
class ExeUnitConfig:
    """Everything an ExeUnit needs to know about its activity (set by the provider agent)."""

    activity_id: str
    agreement_id: str
    gsb_url: str  # the provider node's router, "tcp://127.0.0.1:PORT"
    work_dir: Path  # private root of this activity; /golem/* live below it
    mounts: dict[str, Path]  # container path -> host path, mounted read-only
    usage_vector: list[str]  # the agreement's golem.com.usage.vector
    requestor_id: str
    fail_commands_matching: re.Pattern[str] | None = None  # fault: matching runs exit 1
    slow_start: float = 0.0  # fault: seconds added to deploy and start
    lose_terminated_report: bool = False  # fault: the Terminated report never leaves
    task_package: str | None = None  # the demand's golem.srv.comp.task_package
    local_image: Path | None = None  # local.image: a .gvmi file or extracted tree on disk
    storage_gib: float | None = None  # the agreement's storage: size of the writable layer
    cpu_threads: float | None = None  # the agreement's threads: CPU quota (cgroups)
    mem_gib: float | None = None  # the agreement's memory: memory limit (cgroups)
    unsafe_host_exec: bool = False  # --unsafe-host-exec: run commands unsealed on the host
    vpn: VpnHost | None = None  # the host process's VPN side (None: deploy with `net` fails)
    provider_id: str = ""  # the provider identity this activity runs under (VPN frames)


def _err(kind: str, message: str) -> dict[str, Any]:
    return {"Err": {kind: message}}


class ExeUnit(ExeUnitCommands):
    """One activity's ExeUnit. See the module docstring for the lifecycle."""

    def __init__(self, config: ExeUnitConfig) -> None:
        self.config = config
        self.service_id = f"/public/exeunit/{config.activity_id}"
        self.state: tuple[str, str | None] = ("New", None)
        self._reason: str | None = None
        self._error: str | None = None
        self._batches: dict[str, Batch] = {}
        self._sandbox: Sandbox | None = None
        self._prestart = Prestart(config)  # its sandbox, started before deploy asks
        self._image_digest: str | None = None  # the cached image the sandbox uses
        self._rootfs: RootFs | None = None  # the deployed root (its entrypoint)
        self._vpn = ActivityVpn(config.vpn, config.provider_id, config.work_dir)
        self._env: dict[str, str] = {}
        self._ready_ops = 0  # run/transfer commands in flight in state Ready
        self._epoch = 0  # bumped by `terminate`: commands of an older epoch change no state
        self._bus: GsbClient | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._cpu = 0.0
        self._closing = anyio.Event()
        self._stopped = anyio.Event()
        self._shutdown_started = False
        self._vanished = False
        self.notices: list[str] = []  # what this machine cannot emulate (shown in deploy)

    # ------------------------------------------------------------------ public API

    @property
    def usage(self) -> tuple[float, float]:
        """(cpu seconds, duration seconds) of the activity so far."""
        if self._started_at is None:
            return (self._cpu, 0.0)
        end = self._ended_at if self._ended_at is not None else time.monotonic()
        return (self._cpu, end - self._started_at)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, register, report Initialized, heartbeat and serve until shut down."""
        self._started_at = time.monotonic()
        try:
            async with GsbClient.connect(
                self.config.gsb_url, name=f"exeunit-{self.config.activity_id[:8]}"
            ) as bus:
                self._bus = bus
                await bus.register(self.service_id, self._handle)
                await self._report_state("Initialized", None)
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    tg.start_soon(self._heartbeat)
                    tg.start_soon(self._watch_connection, bus)
                    self._prestart.start(tg)
                    task_status.started()
                    await self._closing.wait()
                    tg.cancel_scope.cancel()
        finally:
            if self._ended_at is None:
                self._ended_at = time.monotonic()
            self._kill_sandboxes()
            # A vanished activity never runs shutdown: its interfaces (and with them its
            # network namespace, which their descriptors keep alive) would stay in the host.
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._vpn.leave()
            self._bus = None
            self._stopped.set()

    async def shutdown(self, reason: str) -> bool:
        """End the activity: stop commands and processes, report Terminated, unregister.
        Whether yagna was told (else the agent tells it over REST: provider/activities.py)."""
        if self._shutdown_started:
            with anyio.move_on_after(10):
                await self._stopped.wait()
            return True
        self._shutdown_started = True
        reported = self._bus is None
        self._epoch += 1  # commands still finishing (cancelled below) change no state now
        try:
            self._update_cpu()  # before the kill: processes still running are counted
            await self._stop_everything()
            self._update_cpu()
            self._ended_at = time.monotonic()
            self._reason = reason
            if self._bus is not None and not self.config.lose_terminated_report:
                with anyio.move_on_after(5):
                    try:
                        await self._report_state(self.state[0], "Terminated")
                        await self._report_state("Terminated", None, reason=reason)
                        reported = True
                        await self._bus.unregister(self.service_id)
                    except GsbError as error:
                        log.warning("%s: reporting Terminated: %s", self.service_id, error)
        finally:
            self._closing.set()
            if self._tg is not None:
                with anyio.move_on_after(10):
                    await self._stopped.wait()
            shutil.rmtree(self.config.work_dir, ignore_errors=True)
        return reported

    def vanish(self) -> None:
        """Die like a crashed provider: kill processes, drop the connection, say nothing."""
        self._vanished = True
        self._ended_at = time.monotonic()
        self._vpn.cut()  # before the kill: a crashed machine sends no last frames
        self._kill_sandboxes()
        if self._bus is not None:
            self._bus.drop()
        self._closing.set()

    # ------------------------------------------------------------------ bus plumbing

    async def _report_state(
        self, current: str, pending: str | None, *, reason: str | None = None
    ) -> None:
        if (current, pending) == self.state and reason is None:
            return
        self.state = (current, pending)
        if self._bus is None or self._vanished:
            return
        reply = await self._bus.call(
            "/local/activity/SetActivityState",
            {
                "activityId": self.config.activity_id,
                "state": {"state": [current, pending], "reason": reason, "errorMessage": None},
                "timeout": None,
                "credentials": None,
            },
        )
        if isinstance(reply, dict) and "Err" in reply:
            log.warning("SetActivityState %s/%s refused: %s", current, pending, reply["Err"])

    def _usage_vector(self) -> list[float]:
        cpu, duration = self.usage
        known = {CPU_SEC: cpu, DURATION_SEC: duration}
        return [float(known.get(name, 0.0)) for name in self.config.usage_vector]

    def _update_cpu(self) -> None:
        if self._sandbox is not None:
            self._cpu = max(self._cpu, self._sandbox.cpu_seconds())

    async def _heartbeat(self) -> None:
        while True:
            self._update_cpu()
            assert self._bus is not None
            try:
                with anyio.fail_after(5):
                    await self._bus.call(
                        "/local/activity/SetActivityUsage",
                        {
                            "activityId": self.config.activity_id,
                            "usage": {
                                "currentUsage": self._usage_vector(),
                                "timestamp": int(time.time()),
                            },
                            "timeout": None,
                        },
                    )
            except TimeoutError:
                log.warning("activity %s: usage report timed out", self.config.activity_id)
            except GsbError as exc:
                log.warning("activity %s: usage report failed: %s", self.config.activity_id, exc)
            await anyio.sleep(HEARTBEAT_INTERVAL)

    async def _watch_connection(self, bus: GsbClient) -> None:
        """A lost router connection is fatal: the activity cannot be reached any more."""
        await bus.closed.wait()
        if not self._closing.is_set():
            log.warning("activity %s: GSB connection lost", self.config.activity_id)
            self._kill_sandboxes()
            self._closing.set()

    async def _handle(self, call: IncomingCall) -> None:
        if self._vanished:  # a dead provider answers nothing (the dropped connection ends us)
            await anyio.sleep_forever()
        handlers: dict[str, Callable[[IncomingCall, Any], Awaitable[None]]] = {
            "Exec": self._on_exec,
            "GetExecBatchResults": self._on_get_results,
            "StreamExecBatchResults": self._on_stream_results,
            "GetActivityState": self._on_get_state,
            "GetActivityUsage": self._on_get_usage,
            "GetRunningCommand": self._on_running_command,
        }
        handler = handlers.get(call.method)
        try:
            payload = call.payload()
        except Exception as exc:
            await call.reply(_err("badRequest", f"cannot decode request: {exc}"))
            return
        if handler is None:  # VpnControl, VpnPacket, anything else
            await call.reply(_err("service", f"{call.method} is not supported by this ExeUnit"))
            return
        await handler(call, payload)

    def _check_activity(self, payload: Any, key: str = "activityId") -> dict[str, Any] | None:
        activity_id = payload.get(key) if isinstance(payload, dict) else None
        if activity_id != self.config.activity_id:
            return _err("forbidden", f"Forbidden! Invalid activity id: {activity_id}")
        return None

    # ------------------------------------------------------------------ requests

    async def _on_exec(self, call: IncomingCall, payload: Any) -> None:
        if (refusal := self._check_activity(payload)) is not None:
            await call.reply(refusal)
            return
        batch_id = str(payload.get("batchId"))
        script = payload.get("exeScript")
        if not isinstance(script, list) or not all(
            isinstance(c, dict) and len(c) == 1 for c in script
        ):
            await call.reply(_err("badRequest", "exeScript must be a list of commands"))
            return
        if batch_id in self._batches:
            await call.reply(_err("badRequest", f"Batch {batch_id} already exists"))
            return
        if self._closing.is_set() or self._tg is None:
            state = "terminating" if self._closing.is_set() else "not serving yet"
            await call.reply(_err("activity", f"activity is {state}"))
            return
        batch = Batch(batch_id, script)
        self._batches[batch_id] = batch
        self._forget_old_batches()
        self._tg.start_soon(self._run_batch, batch)
        await call.reply({"Ok": batch_id})

    async def _on_get_results(self, call: IncomingCall, payload: Any) -> None:
        if (refusal := self._check_activity(payload)) is not None:
            await call.reply(refusal)
            return
        batch_id = str(payload.get("batchId"))
        batch = self._batches.get(batch_id)
        if batch is None:
            await call.reply(_err("notFound", f"batch_id = {batch_id}"))
            return
        if not batch.commands:
            await call.reply({"Ok": []})
            return
        command_index = payload.get("commandIndex")
        awaited = len(batch.commands) - 1 if command_index is None else int(command_index)
        if not 0 <= awaited < len(batch.commands):
            await call.reply(_err("badRequest", f"commandIndex {awaited} is out of range"))
            return
        timeout = float(payload.get("timeout") or 0.0)
        with anyio.move_on_after(timeout):
            while len(batch.results) <= awaited and not batch.finished:
                await batch.changed.wait()
        reached = len(batch.results) > awaited
        if not reached and not batch.finished and command_index is not None:
            await call.reply({"Err": "timeout"})
            return
        items = []
        for result in batch.results[: awaited + 1]:
            item = dict(result)
            item["isBatchFinished"] = item["index"] == awaited or item["result"] == "Error"
            if command_index is not None and item["index"] != awaited:
                item["stdout"] = item["stderr"] = None
            items.append(item)
        await call.reply({"Ok": items})

    async def _on_stream_results(self, call: IncomingCall, payload: Any) -> None:
        batch_id = str(payload.get("batch_id")) if isinstance(payload, dict) else ""
        batch = self._batches.get(batch_id)
        if batch is None or self._check_activity(payload, "activity_id") is not None:
            await call.reply(f"Unknown batch: {batch_id}".encode(), code=CALL_BAD_REQUEST)
            return
        # Replay what happened so far, then follow live events until the batch ends.
        sent = 0
        while True:
            while sent < len(batch.events):
                await call.partial({"Ok": batch.events[sent]})
                sent += 1
            if batch.finished:
                break
            await batch.changed.wait()
        await call.end_stream()

    async def _on_get_state(self, call: IncomingCall, payload: Any) -> None:
        current, pending = self.state
        await call.reply(
            {
                "Ok": {
                    "state": [current, pending],
                    "reason": self._reason,
                    "errorMessage": self._error,
                }
            }
        )

    async def _on_get_usage(self, call: IncomingCall, payload: Any) -> None:
        self._update_cpu()
        await call.reply(
            {"Ok": {"currentUsage": self._usage_vector(), "timestamp": int(time.time())}}
        )

    async def _on_running_command(self, call: IncomingCall, payload: Any) -> None:
        running = []
        for batch in self._batches.values():
            if batch.running is not None:
                ((name, body),) = batch.running.items()
                if name == "run":
                    params = [str(body.get("entry_point")), *map(str, body.get("args") or [])]
                elif name == "transfer":
                    params = [str(body.get("from")), str(body.get("to"))]
                else:
                    params = []
                running.append({"command": name.capitalize(), "progress": None, "params": params})
        if not running:
            await call.reply(
                _err("notFound", f"No running command within activity: {self.config.activity_id}")
            )
            return
        await call.reply({"Ok": running})
