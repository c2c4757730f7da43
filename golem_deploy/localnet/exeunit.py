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
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import anyio.abc

from golem_deploy.localnet import exeunit_image, gftp
from golem_deploy.localnet.exeunit_capture import Capture, Output
from golem_deploy.localnet.exeunit_vpn import ActivityVpn
from golem_deploy.localnet.gsb import CALL_BAD_REQUEST, GsbClient, GsbError, IncomingCall
from golem_deploy.localnet.image import ImageError
from golem_deploy.localnet.limits import Limits
from golem_deploy.localnet.sandbox import (
    DEFAULT_LAYER_BYTES,
    Sandbox,
    SandboxError,
    unsafe_host_exec_requested,
)
from golem_deploy.localnet.vpn_host import VpnError, VpnHost

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 1.0
"""yagna marks an activity Unresponsive after 5 s without a usage report; real ExeUnits
report every second."""

CPU_SEC = "golem.usage.cpu_sec"
DURATION_SEC = "golem.usage.duration_sec"
STATEFUL = ("deploy", "start", "run", "transfer")
_LOGGED: set[str] = set()  # notes already logged by this process
KEEP_BATCHES = 200
"""Finished batches older than the newest 200 are forgotten (their results were read)."""


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
    task_package: str | None = None  # the demand's golem.srv.comp.task_package
    local_image: Path | None = None  # local.image: a .gvmi file or extracted tree on disk
    storage_gib: float | None = None  # the agreement's storage: size of the writable layer
    cpu_threads: float | None = None  # the agreement's threads: CPU quota (cgroups)
    mem_gib: float | None = None  # the agreement's memory: memory limit (cgroups)
    unsafe_host_exec: bool = False  # --unsafe-host-exec: run commands unsealed on the host
    vpn: VpnHost | None = None  # the host process's VPN side (None: deploy with `net` fails)
    provider_id: str = ""  # the provider identity this activity runs under (VPN frames)


class CommandError(Exception):
    """A command failed before or instead of running: return code -1 and this message."""


@dataclass
class _Outcome:
    code: int
    message: str | None = None
    stdout: Output = None
    stderr: Output = None


@dataclass
class _Batch:
    """One Exec: its commands, finished results (a prefix) and every runtime event."""

    batch_id: str
    commands: list[dict[str, Any]]
    results: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    running: dict[str, Any] | None = None  # the command being executed
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        """Wake everyone waiting for news of this batch."""
        self.changed.set()
        self.changed = anyio.Event()


def _now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now_naive() -> str:
    # RuntimeEvent.timestamp is a chrono NaiveDateTime: no zone suffix.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _err(kind: str, message: str) -> dict[str, Any]:
    return {"Err": {kind: message}}


class ExeUnit:
    """One activity's ExeUnit. See the module docstring for the lifecycle."""

    def __init__(self, config: ExeUnitConfig) -> None:
        self.config = config
        self.service_id = f"/public/exeunit/{config.activity_id}"
        self.state: tuple[str, str | None] = ("New", None)
        self._reason: str | None = None
        self._error: str | None = None
        self._batches: dict[str, _Batch] = {}
        self._sandbox: Sandbox | None = None
        self._image_digest: str | None = None  # the cached image the sandbox uses
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
                    task_status.started()
                    await self._closing.wait()
                    tg.cancel_scope.cancel()
        finally:
            if self._ended_at is None:
                self._ended_at = time.monotonic()
            if self._sandbox is not None:
                self._sandbox.kill_now()
            self._bus = None
            self._stopped.set()

    async def shutdown(self, reason: str) -> None:
        """End the activity: stop commands and processes, report Terminated, unregister."""
        if self._shutdown_started:
            with anyio.move_on_after(10):
                await self._stopped.wait()
            return
        self._shutdown_started = True
        try:
            self._update_cpu()  # before the kill: processes still running are counted
            await self._stop_everything()
            self._update_cpu()
            self._ended_at = time.monotonic()
            self._reason = reason
            if self._bus is not None:
                with anyio.move_on_after(5), contextlib.suppress(GsbError):
                    await self._report_state(self.state[0], "Terminated")
                    await self._report_state("Terminated", None, reason=reason)
                    await self._bus.unregister(self.service_id)
        finally:
            self._closing.set()
            if self._tg is not None:
                with anyio.move_on_after(10):
                    await self._stopped.wait()
            shutil.rmtree(self.config.work_dir, ignore_errors=True)

    def vanish(self) -> None:
        """Die like a crashed provider: kill processes, drop the connection, say nothing."""
        self._vanished = True
        self._ended_at = time.monotonic()
        if self._sandbox is not None:
            self._sandbox.kill_now()
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
            if self._sandbox is not None:
                self._sandbox.kill_now()
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
        batch = _Batch(batch_id, script)
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

    # ------------------------------------------------------------------ batches

    def _forget_old_batches(self) -> None:
        """A service runs a batch every few seconds for days: keep only recent results."""
        finished = [b for b in self._batches.values() if b.finished]
        for batch in finished[: max(0, len(self._batches) - KEEP_BATCHES)]:
            del self._batches[batch.batch_id]

    def _emit(self, batch: _Batch, index: int, kind: dict[str, Any]) -> None:
        batch.events.append(
            {"batch_id": batch.batch_id, "index": index, "timestamp": _now_naive(), "kind": kind}
        )
        batch.notify()

    async def _run_batch(self, batch: _Batch) -> None:
        index = 0
        try:
            with batch.scope:
                for index, command in enumerate(batch.commands):
                    batch.running = command
                    self._emit(batch, index, {"started": {"command": command}})
                    outcome = await self._execute(batch, index, command)
                    batch.running = None
                    self._finish_command(batch, index, outcome)
                    if outcome.code != 0:
                        break
            if batch.scope.cancelled_caught and batch.running is not None:
                # Stopped by `terminate` or by the end of the activity: the interrupted
                # command fails, so requestors waiting for the batch see it end.
                self._finish_command(batch, index, _Outcome(-1, "command stopped: terminated"))
        finally:
            batch.running = None
            batch.finished = True
            batch.notify()

    def _finish_command(self, batch: _Batch, index: int, outcome: _Outcome) -> None:
        self._emit(
            batch, index, {"finished": {"return_code": outcome.code, "message": outcome.message}}
        )
        batch.results.append(
            {
                "index": index,
                "result": "Ok" if outcome.code == 0 else "Error",
                "stdout": outcome.stdout,
                "stderr": outcome.stderr,
                "message": outcome.message,
                "isBatchFinished": False,  # computed per query
                "eventDate": _now_utc(),
            }
        )
        batch.notify()

    async def _execute(self, batch: _Batch, index: int, command: dict[str, Any]) -> _Outcome:
        ((name, body),) = command.items()
        body = body if isinstance(body, dict) else {}
        if name == "sign":
            return _Outcome(-1, "signing not supported: binary built without the 'sgx' feature")
        if name == "terminate":
            await self._terminate(batch)
            return _Outcome(0)
        if name not in STATEFUL:
            return _Outcome(-1, f"unknown command {name}")
        target = {"deploy": "Deployed", "start": "Ready"}.get(name, "Ready")
        try:
            self._check_state(name)
        except CommandError as exc:
            return _Outcome(-1, f"Local service error: State error: {exc}")
        ready_op = name in ("run", "transfer")
        epoch = self._epoch
        if ready_op:
            self._ready_ops += 1
            if self._ready_ops == 1:
                await self._report_state(self.state[0], "Ready")
        else:
            await self._report_state(self.state[0], target)
        try:
            if name == "deploy":
                return await self._deploy(batch, index, body)
            if name == "start":
                return await self._start(body)
            if name == "run":
                return await self._run(batch, index, body)
            return await self._transfer(body)
        except CommandError as exc:
            return _Outcome(-1, str(exc))
        except Exception as exc:  # a bug must fail the command, not the whole activity
            log.exception("activity %s: %s failed", self.config.activity_id, name)
            return _Outcome(-1, f"internal error: {exc}")
        finally:
            # Like the real ExeUnit, the state advances even when the command failed --
            # unless a `terminate` (new epoch) or the end of the activity came in between.
            if epoch == self._epoch and not self._closing.is_set():
                with anyio.CancelScope(shield=True), contextlib.suppress(GsbError):
                    if ready_op:
                        self._ready_ops -= 1
                        if self._ready_ops == 0:
                            await self._report_state("Ready", None)
                    else:
                        await self._report_state(target, None)

    def _check_state(self, name: str) -> None:
        current, pending = self.state
        if current in ("New", "Terminated", "Unresponsive"):
            raise CommandError(f"Activity is {current.lower()}")
        if name in ("deploy", "start") and pending is not None:
            raise CommandError(f"Busy: {current} -> {pending}")
        if current == "Initialized" and name != "deploy":
            raise CommandError("Activity is initialized - deploy() command is expected now")
        if current == "Deployed" and name != "start":
            raise CommandError("Activity is deployed - start() command is expected now")
        if current == "Ready" and name in ("deploy", "start"):
            raise CommandError("Cannot send command after a successful start()")

    async def _terminate(self, batch: _Batch) -> None:
        """The `terminate` command: stop other batches and the sandbox; back to Initialized."""
        for other in self._batches.values():
            if other is not batch and not other.finished:
                other.scope.cancel()
        await self._close_sandbox()
        self._epoch += 1
        self._ready_ops = 0
        await self._report_state("Initialized", None)

    # ------------------------------------------------------------------ commands

    async def _deploy(self, batch: _Batch, index: int, body: dict[str, Any]) -> _Outcome:
        if self.config.slow_start:
            await anyio.sleep(self.config.slow_start)
        env = body.get("env") or {}
        self._env = {str(k): str(v) for k, v in env.items()}
        await self._close_sandbox()
        notices = []
        unsafe = self.config.unsafe_host_exec or unsafe_host_exec_requested()
        if unsafe:
            root = exeunit_image.ResolvedRoot(exeunit_image.HOST_ROOT)
        else:
            progress = None
            if body.get("progress") is not None:
                progress = exeunit_image.ProgressThrottle(
                    body["progress"], lambda kind: self._emit(batch, index, kind)
                )
            try:
                root = await exeunit_image.resolve_root(
                    self.config.task_package, self.config.local_image, progress
                )
            except ImageError as exc:
                raise CommandError(f"deploy failed: {exc}") from exc
            if root.notice:
                self.notices.append(root.notice)
            if root.first_notice:
                # Once per image and process, as an output event of deploy: a requestor's
                # logs show it (golem-deploy's as `<service>.0 | ...`). Not in the result,
                # which stays as the VM's.
                notice = f"golem-deploy local ExeUnit: {root.notice}\n"
                self._emit(batch, index, {"stdout": notice})
        try:
            hosts = self._vpn.hosts_file(body)
        except VpnError as exc:
            raise CommandError(f"deploy failed: {exc}") from exc
        mounts = dict(self.config.mounts)
        if hosts is not None:
            mounts["/etc/hosts"] = hosts  # names of the deploy's `hosts`, as in the VM
        storage = self.config.storage_gib
        limits = None
        if self.config.cpu_threads and self.config.mem_gib:
            limits = Limits(self.config.cpu_threads, int(self.config.mem_gib * 1024**3))
        sandbox = Sandbox(
            self.config.work_dir,
            mounts,
            isolate=False if unsafe else None,
            rootfs=root.rootfs,
            layer_bytes=int(storage * 1024**3) if storage else DEFAULT_LAYER_BYTES,
            limits=limits,
        )
        assert self._tg is not None
        try:
            await self._tg.start(sandbox.serve)
        except SandboxError as exc:
            exeunit_image.release(root.digest)
            raise CommandError(f"deploy failed: {exc}") from exc
        self._sandbox = sandbox
        self._image_digest = root.digest
        try:
            await self._vpn.join(body, sandbox.netns)
        except VpnError as exc:
            raise CommandError(f"deploy failed: {exc}") from exc
        if sandbox.limits_note:  # logged once per process; the result stays as in the VM
            self.notices.append(sandbox.limits_note)
            if sandbox.limits_note not in _LOGGED:
                _LOGGED.add(sandbox.limits_note)
                log.warning("local ExeUnit: %s", sandbox.limits_note)
        if sandbox.limitations:
            notices.append(sandbox.limitations)
        if notices:
            notice = "".join(f"golem-deploy local ExeUnit: {n}\n" for n in notices)
            self.notices.extend(line.strip() for line in notice.splitlines())
            self._emit(batch, index, {"stdout": notice})
            return _Outcome(0, stdout=notice)
        return _Outcome(0)

    async def _close_sandbox(self) -> None:
        await self._vpn.leave()
        if self._sandbox is not None:
            await self._sandbox.close()
            self._sandbox = None
        exeunit_image.release(self._image_digest)
        self._image_digest = None

    async def _start(self, body: dict[str, Any]) -> _Outcome:
        if self.config.slow_start:
            await anyio.sleep(self.config.slow_start)
        return _Outcome(0)

    async def _run(self, batch: _Batch, index: int, body: dict[str, Any]) -> _Outcome:
        entry_point = body.get("entry_point")
        if not isinstance(entry_point, str) or not entry_point:
            raise CommandError("run: entry_point is missing")
        argv = [entry_point, *(str(a) for a in body.get("args") or [])]
        capture = body.get("capture") or {}
        captures = {
            "stdout": Capture(capture.get("stdout")),
            "stderr": Capture(capture.get("stderr")),
        }

        def collector(stream: str) -> Callable[[bytes], Awaitable[None]]:
            async def on_output(chunk: bytes) -> None:
                event = captures[stream].feed(chunk)
                if event is not None and captures[stream].streaming:
                    self._emit(batch, index, {stream: event})

            return on_output

        pattern = self.config.fail_commands_matching
        if pattern is not None and pattern.search(" ".join(argv)):
            await collector("stderr")(b"golem-deploy fault injection: this command fails\n")
            code = 1
        else:
            assert self._sandbox is not None
            try:
                code = await self._sandbox.run(
                    argv,
                    env=self._env,
                    on_stdout=collector("stdout"),
                    on_stderr=collector("stderr"),
                )
            except SandboxError as exc:
                raise CommandError(str(exc)) from exc
        message = None if code == 0 else f"ExeScript command exited with code {code}"
        return _Outcome(code, message, captures["stdout"].result(), captures["stderr"].result())

    async def _transfer(self, body: dict[str, Any]) -> _Outcome:
        source, dest = str(body.get("from") or ""), str(body.get("to") or "")
        if body.get("format") or body.get("fileset") or body.get("depth"):
            raise CommandError("transfer: archives and filesets are not supported locally")
        assert self._sandbox is not None
        staging = self.config.work_dir / "transfers"
        staging.mkdir(parents=True, exist_ok=True)
        tmp = staging / f"{time.monotonic_ns()}.part"
        try:
            await self._fetch(source, tmp)
            await self._deliver(tmp, dest)
        except (gftp.GftpError, SandboxError, OSError, aiohttp.ClientError) as exc:
            raise CommandError(f"transfer {source} -> {dest} failed: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return _Outcome(0)

    async def _fetch(self, url: str, into: Path) -> None:
        scheme = _scheme(url)
        if scheme == "container":
            assert self._sandbox is not None
            await anyio.to_thread.run_sync(self._sandbox.copy_out, _container_part(url), into)
        elif scheme == "gftp":
            assert self._bus is not None
            await gftp.download(self._bus, url, into)
        elif scheme in ("http", "https"):
            _require_loopback(url)
            async with (
                aiohttp.ClientSession(trust_env=False) as session,
                session.get(url) as response,
            ):
                response.raise_for_status()
                with open(into, "wb") as out:
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        out.write(chunk)
        else:
            raise CommandError(f"Unsupported scheme: {scheme}")

    async def _deliver(self, data: Path, url: str) -> None:
        scheme = _scheme(url)
        if scheme == "container":
            assert self._sandbox is not None
            self._sandbox.deliver(data, _container_part(url))
        elif scheme == "gftp":
            assert self._bus is not None
            await gftp.upload(self._bus, data, url)
        elif scheme in ("http", "https"):
            _require_loopback(url)
            async with aiohttp.ClientSession(trust_env=False) as session:
                with open(data, "rb") as body:
                    async with session.put(url, data=body) as response:
                        response.raise_for_status()
        else:
            raise CommandError(f"Unsupported scheme: {scheme}")

    async def _stop_everything(self) -> None:
        for batch in self._batches.values():
            if not batch.finished:
                batch.scope.cancel()
        if self._sandbox is not None:
            await self._sandbox.close()
        exeunit_image.release(self._image_digest)
        self._image_digest = None


def _scheme(url: str) -> str:
    """The scheme of a transfer URL; a bare path means ``container:``."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url)
    return match.group(1).lower() if match else "container"


def _container_part(url: str) -> str:
    return url[len("container:") :] if url.lower().startswith("container:") else url


def _require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise CommandError(f"only loopback http(s) URLs can be reached from the local network: {url}")
