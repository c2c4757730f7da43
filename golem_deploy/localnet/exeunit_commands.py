"""The command side of the local ExeUnit: run an Exec's batch, one ExeScript command at a
time, in the activity's sandbox.

:class:`ExeUnitCommands` is half of :class:`~golem_deploy.localnet.exeunit.ExeUnit` (which
inherits it): the bus side there receives an Exec and starts :meth:`_run_batch`; this side
checks each command against the activity's state (deploy, then start, then run/transfer),
reports the state changes the command causes through the bus side's ``_report_state``, and
records results and runtime events in the :class:`~exeunit_batch.Batch`. Commands:
``deploy`` (resolve the image, create the sandbox -- or adopt the one
:mod:`exeunit_prestart` started -- join the VPN), ``start``, ``run`` (exec argv in the
sandbox, capturing output), ``transfer`` (:mod:`exeunit_transfer`) and ``terminate`` (stop
everything, back to Initialized).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from golem_deploy.localnet import exeunit_image
from golem_deploy.localnet.exeunit_batch import Batch, CommandError, Outcome
from golem_deploy.localnet.exeunit_capture import Capture
from golem_deploy.localnet.exeunit_prestart import Prepared, Prestart, SandboxPlan
from golem_deploy.localnet.exeunit_transfer import transfer
from golem_deploy.localnet.gsb import GsbClient, GsbError
from golem_deploy.localnet.image import ImageError
from golem_deploy.localnet.rootfs import RootFs
from golem_deploy.localnet.sandbox import Sandbox, SandboxError, unsafe_host_exec_requested
from golem_deploy.localnet.vpn_host import VpnError

if TYPE_CHECKING:
    from golem_deploy.localnet.exeunit import ExeUnitConfig
    from golem_deploy.localnet.exeunit_vpn import ActivityVpn

# The ExeUnit's one logger, as before the split (log filters and tests name it).
log = logging.getLogger("golem_deploy.localnet.exeunit")

STATEFUL = ("deploy", "start", "run", "transfer")
_LOGGED: set[str] = set()  # notes already logged by this process
KEEP_BATCHES = 200
"""Finished batches older than the newest 200 are forgotten (their results were read)."""


def _now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now_naive() -> str:
    # RuntimeEvent.timestamp is a chrono NaiveDateTime: no zone suffix.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


class ExeUnitCommands:
    """The batches and commands of one activity; the ExeUnit's bus side sets every
    attribute below in its constructor and provides ``_report_state``."""

    config: ExeUnitConfig
    state: tuple[str, str | None]
    notices: list[str]
    _batches: dict[str, Batch]
    _sandbox: Sandbox | None
    _prestart: Prestart
    _image_digest: str | None
    _rootfs: RootFs | None
    _vpn: ActivityVpn
    _env: dict[str, str]
    _ready_ops: int
    _epoch: int
    _bus: GsbClient | None
    _tg: anyio.abc.TaskGroup | None
    _closing: anyio.Event

    async def _report_state(
        self, current: str, pending: str | None, *, reason: str | None = None
    ) -> None:
        raise NotImplementedError  # the bus side (ExeUnit) reports states

    # ------------------------------------------------------------------ batches

    def _forget_old_batches(self) -> None:
        """A service runs a batch every few seconds for days: keep only recent results."""
        finished = [b for b in self._batches.values() if b.finished]
        for batch in finished[: max(0, len(self._batches) - KEEP_BATCHES)]:
            del self._batches[batch.batch_id]

    def _emit(self, batch: Batch, index: int, kind: dict[str, Any]) -> None:
        batch.events.append(
            {"batch_id": batch.batch_id, "index": index, "timestamp": _now_naive(), "kind": kind}
        )
        batch.notify()

    async def _run_batch(self, batch: Batch) -> None:
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
                self._finish_command(batch, index, Outcome(-1, "command stopped: terminated"))
        finally:
            batch.running = None
            batch.finished = True
            batch.notify()

    def _finish_command(self, batch: Batch, index: int, outcome: Outcome) -> None:
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

    async def _execute(self, batch: Batch, index: int, command: dict[str, Any]) -> Outcome:
        ((name, body),) = command.items()
        body = body if isinstance(body, dict) else {}
        if name == "sign":
            return Outcome(-1, "signing not supported: binary built without the 'sgx' feature")
        if name == "terminate":
            await self._terminate(batch)
            return Outcome(0)
        if name not in STATEFUL:
            return Outcome(-1, f"unknown command {name}")
        target = {"deploy": "Deployed", "start": "Ready"}.get(name, "Ready")
        try:
            self._check_state(name)
        except CommandError as exc:
            return Outcome(-1, f"Local service error: State error: {exc}")
        ready_op = name in ("run", "transfer")
        epoch = self._epoch
        if ready_op:
            self._ready_ops += 1
            if self._ready_ops == 1:
                await self._report_state(self.state[0], "Ready")
        else:
            await self._report_state(self.state[0], target)
        began = time.monotonic()
        try:
            if name == "deploy":
                return await self._deploy(batch, index, body)
            if name == "start":
                return await self._start(body)
            if name == "run":
                return await self._run(batch, index, body)
            return await self._transfer(body)
        except CommandError as exc:
            return Outcome(-1, str(exc))
        except Exception as exc:  # a bug must fail the command, not the whole activity
            log.exception("activity %s: %s failed", self.config.activity_id, name)
            return Outcome(-1, f"internal error: {exc}")
        finally:
            if not ready_op:  # how long deploy / start took (bench/activity_create.py)
                log.info(
                    "activity %s: %s took %.3f s",
                    self.config.activity_id,
                    name,
                    time.monotonic() - began,
                )
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

    async def _terminate(self, batch: Batch) -> None:
        """The `terminate` command: stop other batches and the sandbox; back to Initialized."""
        for other in self._batches.values():
            if other is not batch and not other.finished:
                other.scope.cancel()
        await self._close_sandbox()
        self._epoch += 1
        self._ready_ops = 0
        await self._report_state("Initialized", None)

    # ------------------------------------------------------------------ commands

    async def _deploy(self, batch: Batch, index: int, body: dict[str, Any]) -> Outcome:
        if self.config.slow_start:
            await anyio.sleep(self.config.slow_start)
        env = body.get("env") or {}
        self._env = {str(k): str(v) for k, v in env.items()}
        prepared = await self._prestart.take()  # the sandbox started before deploy, if any
        try:
            return await self._deploy_with(batch, index, body, prepared)
        finally:
            if prepared is not None and prepared.sandbox is not self._sandbox:
                await prepared.close()  # deploy failed before it could use it

    async def _deploy_with(
        self, batch: Batch, index: int, body: dict[str, Any], prepared: Prepared | None
    ) -> Outcome:
        await self._close_sandbox()
        shown: list[str] = []  # said in this deploy's output only
        unsafe = self.config.unsafe_host_exec or unsafe_host_exec_requested()
        if unsafe:
            root = exeunit_image.ResolvedRoot(exeunit_image.HOST_ROOT)
        elif prepared is not None and prepared.plan.root.notice is None:
            root = prepared.plan.root  # what resolve_root would say, already at hand
            exeunit_image.acquire(root.digest)
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
                    # Once per image and process, as output of deploy (stream and result:
                    # a requestor may not open the stream of a deploy done in
                    # milliseconds): its logs show it (golem-deploy's as `<service>.0 | ...`).
                    shown.append(root.notice)
        try:
            hosts = self._vpn.hosts_file(body)
        except VpnError as exc:
            exeunit_image.release(root.digest)
            raise CommandError(f"deploy failed: {exc}") from exc
        # names of the deploy's `hosts`, as in the VM: root inside may rewrite them
        files = {} if hosts is None else {"/etc/hosts": hosts}
        plan = SandboxPlan.of(self.config, root, files, sealed=not unsafe)
        sandbox = None if prepared is None else prepared.adopt(plan)
        if sandbox is not None:
            log.info("activity %s: deploy adopted the pre-started sandbox", self.config.activity_id)
        else:
            if prepared is not None:  # gone first: the new one reuses its cgroup's name
                await prepared.close()
            sandbox = plan.build(self.config.work_dir)
            assert self._tg is not None
            try:
                await self._tg.start(sandbox.serve)
            except SandboxError as exc:
                exeunit_image.release(root.digest)
                raise CommandError(f"deploy failed: {exc}") from exc
        self._sandbox = sandbox
        self._image_digest = root.digest
        self._rootfs = root.rootfs
        try:
            await self._vpn.join(body, sandbox.netns)
        except VpnError as exc:
            raise CommandError(f"deploy failed: {exc}") from exc
        if sandbox.limits_note:  # logged once per process; the result stays as in the VM
            self.notices.append(sandbox.limits_note)
            if sandbox.limits_note not in _LOGGED:
                _LOGGED.add(sandbox.limits_note)
                log.warning("local ExeUnit: %s", sandbox.limits_note)
        # what this machine cannot emulate: said in every deploy's output
        lasting = [sandbox.limitations] if sandbox.limitations else []
        self.notices.extend(lasting)
        said = "".join(f"golem-deploy local ExeUnit: {n}\n" for n in shown + lasting)
        if said:
            self._emit(batch, index, {"stdout": said})
            return Outcome(0, stdout=said)
        return Outcome(0)

    async def _close_sandbox(self) -> None:
        await self._prestart.discard()
        await self._vpn.leave()
        if self._sandbox is not None:
            await self._sandbox.close()
            self._sandbox = None
        exeunit_image.release(self._image_digest)
        self._image_digest = None
        self._rootfs = None

    async def _start(self, body: dict[str, Any]) -> Outcome:
        if self.config.slow_start:
            await anyio.sleep(self.config.slow_start)
        if "start-entrypoint" not in (body.get("args") or []):
            return Outcome(0)
        # As ya-runtime-vm: the image's Entrypoint followed by its Cmd, started in the
        # background (it runs until the activity ends); an image without one is an error.
        root = self._rootfs
        argv = [*root.entrypoint, *root.cmd] if root is not None else []
        if not argv:
            why = "'start_entrypoint' flag is set but the container does not define an entrypoint!"
            return Outcome(-1, why)
        assert self._tg is not None and self._sandbox is not None
        self._tg.start_soon(self._entrypoint, self._sandbox, argv)
        return Outcome(0)

    async def _entrypoint(self, sandbox: Sandbox, argv: list[str]) -> None:
        """The image's entrypoint, until it exits or the sandbox closes (its output goes to
        the provider's log, as nothing of the requestor's asked for it)."""

        async def to_log(chunk: bytes) -> None:
            text = chunk.decode(errors="replace").rstrip()
            log.info("activity %s entrypoint: %s", self.config.activity_id, text)

        try:
            code = await sandbox.run(argv, env=self._env, on_stdout=to_log, on_stderr=to_log)
        except SandboxError as exc:
            log.info("activity %s entrypoint %s: %s", self.config.activity_id, argv, exc)
            return
        log.info("activity %s entrypoint %s exited with %s", self.config.activity_id, argv, code)

    async def _run(self, batch: Batch, index: int, body: dict[str, Any]) -> Outcome:
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
        return Outcome(code, message, captures["stdout"].result(), captures["stderr"].result())

    async def _transfer(self, body: dict[str, Any]) -> Outcome:
        await transfer(body, self._sandbox, self._bus, self.config.work_dir / "transfers")
        return Outcome(0)

    async def _stop_everything(self) -> None:
        for batch in self._batches.values():
            if not batch.finished:
                batch.scope.cancel()
        await self._prestart.discard()
        if self._sandbox is not None:
            await self._sandbox.close()
        exeunit_image.release(self._image_digest)
        self._image_digest = None

    def _kill_sandboxes(self) -> None:
        """SIGKILL every process of the activity now (it vanished or lost its bus)."""
        self._prestart.kill_now()
        if self._sandbox is not None:
            self._sandbox.kill_now()
