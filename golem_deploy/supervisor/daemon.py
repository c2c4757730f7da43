"""The supervisor: one detached process per deployment that owns the engine.

Started by `golem-deploy up` as `python -m golem_deploy.supervisor.daemon --manifest FILE`
in its own session, so closing the terminal does not end the deployment. It

  1. takes the deployment's lock (one supervisor per deployment name, ever),
  2. serves the control API on a Unix socket (snapshot, events, down, logs),
  3. when no yagna is configured (YAGNA_APPKEY unset) starts a private local network in the
     deployment folder,
  4. runs the services in depends_on waves: a wave starts once every instance of the earlier
     waves is running,
  5. journals every engine event before the engine goes on (the journal is the truth after a
     crash) and writes per-instance log files,
  6. on `down` (or SIGTERM) stops the services in reverse wave order, lets the engine
     terminate agreements, accept invoices and release the allocation, stops the local
     network, and exits.

The app key is read from the environment and never written anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import inspect
import logging
import os
import signal
import sys
import time
import traceback
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from golem_deploy.supervisor import deployments, snapshot
from golem_deploy.supervisor.journal import Journal, Redactor, load, to_plain
from golem_deploy.supervisor.logs import InstanceLogs

DEFAULT_DOWN_TIMEOUT = 120.0
WAVE_POLL = 0.05  # a wave counts as running this soon after its last instance does
LOCAL_SUBNET = "local-dev"  # the subnet of every golem-deploy local network


class DownRequest:
    """Why and how to go down; set once, read by the lifecycle."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.timeout: float = DEFAULT_DOWN_TIMEOUT
        self.reason = ""

    def request(self, reason: str, timeout: float | None = None) -> None:
        if self.event.is_set():
            return
        self.reason = reason
        if timeout is not None:
            self.timeout = timeout
        self.event.set()


class Supervisor:
    """Owns one deployment: the engine, the local network, the journal, the logs."""

    def __init__(
        self,
        manifest: Any,
        folder: deployments.DeploymentDir,
        *,
        providers: int,
        faults: Path | None,
        journal: Journal,
        redactor: Redactor,
    ) -> None:
        self.manifest = manifest
        self.folder = folder
        self.providers = providers
        self.faults = faults
        self.journal = journal
        self.logs = InstanceLogs(folder.logs, redactor=redactor)
        self.redactor = redactor
        self.state = snapshot.STARTING
        self.reason: str | None = None
        self.down = DownRequest()
        self.network: dict[str, Any] = {"kind": None, "api_url": None}
        self.golem: Any = None
        self.clusters: dict[str, Any] = {}
        self.expires_at: dict[str, float] = {}  # agreement id -> when it expires
        self.last_output: dict[tuple[str, int], str] = {}
        self._subscribers: list[MemoryObjectSendStream[dict[str, Any]]] = []
        self._localnet_started = False
        # Instances terminated on one provider with a restart already scheduled elsewhere:
        # not ended, whatever their state says for the moment.
        self._restarting: set[tuple[str, int]] = set()
        self.done = anyio.Event()

    # ---- events -------------------------------------------------------------------------

    def publish(self, record: dict[str, Any]) -> None:
        """Hand a record to every /events subscriber without ever blocking the engine."""
        for stream in list(self._subscribers):
            try:
                stream.send_nowait(record)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                # A slow or gone reader loses its stream rather than slowing the engine.
                self._subscribers.remove(stream)
                stream.close()

    def subscribe(self, stream: MemoryObjectSendStream[dict[str, Any]]) -> None:
        self._subscribers.append(stream)

    def note(self, kind: str, **fields: Any) -> None:
        """Journal a supervisor record and publish it."""
        self.publish(self.journal.append(kind, **fields))

    def on_event(self, event: Any) -> None:
        """The engine's event consumer: called synchronously, before the engine proceeds.

        Output goes only to the log files (too much for the journal); everything else is
        journaled (fsync'd) first, then mirrored into the instance's log file.
        """
        kind = type(event).__name__
        service = getattr(event, "service", None)
        index = getattr(event, "index", None)
        at = getattr(event, "at", None)
        if kind == "CommandOutput":
            if isinstance(service, str) and isinstance(index, int):
                self._output(service, index, str(event.stream), str(event.text), at)
            return
        if _journal_worthy(kind, event):
            record = self.journal.append_event(event)
        else:
            # Routine command traffic stays out of the journal (it would grow with every
            # run step); the instance's log file has it.
            record = {"kind": kind, **to_plain(_fields(event), self.redactor)}
        self.publish(record)
        if not (isinstance(service, str) and isinstance(index, int)):
            return
        if kind == "InstanceRestartScheduled":
            self._restarting.add((service, index))
        elif kind == "InstanceStateChanged" and str(to_plain(event.new)) != "terminated":
            self._restarting.discard((service, index))
        if kind == "AgreementCreated":
            spec = self.manifest.services.get(service)
            if spec is not None:
                self.expires_at[str(event.agreement_id)] = time.time() + float(spec.expiration)
        line = _log_line(kind, event)
        if line is not None:
            stream, text = line
            self.logs.write(service, index, stream, self.redactor.text(text), at)

    def _output(self, service: str, index: int, stream: str, text: str, at: Any) -> None:
        self.logs.write(service, index, stream, text, at)
        lines = [line for line in text.splitlines() if line.strip()]
        if lines:
            self.last_output[(service, index)] = self.redactor.text(lines[-1])
        self.publish(
            {
                "kind": "CommandOutput",
                "service": service,
                "index": index,
                "stream": stream,
                "text": self.redactor.text(text[-2000:]),
            }
        )

    # ---- snapshot -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data in the status shape (plus expires_at, reason and held extras)."""
        golem = self.golem
        total = Decimal(str(self.manifest.budget))
        spent = Decimal(str(getattr(golem, "spent", 0) or 0)) if golem is not None else None
        if spent is None:
            spent = load(self.journal.path).spent
        services = []
        for name, spec in self.manifest.services.items():
            cluster = self.clusters.get(name)
            rows = []
            live = list(getattr(cluster, "instances", []) or []) if cluster is not None else []
            by_index = {int(getattr(inst, "index", i)): inst for i, inst in enumerate(live)}
            for index in sorted(set(range(spec.instances)) | set(by_index)):
                inst = by_index.get(index)
                rows.append(self._instance_row(name, index, inst))
            services.append({"name": name, "instances": rows})
        return {
            "name": self.manifest.name,
            "state": self.state,
            "reason": self.reason,
            "supervisor": {"pid": os.getpid(), "alive": True},
            "network": dict(self.network),
            "budget": {"total": str(total), "spent": str(spent), "remaining": str(total - spent)},
            "services": services,
        }

    def _instance_row(self, service: str, index: int, inst: Any) -> dict[str, Any]:
        if inst is None:
            return {
                "index": index,
                "state": "pending",
                "provider_id": None,
                "provider_name": None,
                "agreement_id": None,
                "activity_id": None,
                "started_at": None,
                "restarts": 0,
                "cost": "0",
                "last_output": None,
                "expires_at": None,
                "reason": None,
            }
        agreement_id = getattr(inst, "agreement_id", None)
        expires: Any = self.expires_at.get(agreement_id) if agreement_id else None
        cluster_expiration = getattr(self.clusters.get(service), "expiration", None)
        if agreement_id and isinstance(cluster_expiration, dt.datetime):
            expires = cluster_expiration  # the engine's own figure beats our estimate
        output = getattr(inst, "last_output", None) or self.last_output.get((service, index))
        return {
            "index": index,
            "state": str(to_plain(getattr(inst, "state", "pending"))),
            "provider_id": getattr(inst, "provider_id", None),
            "provider_name": getattr(inst, "provider_name", None),
            "agreement_id": agreement_id,
            "activity_id": getattr(inst, "activity_id", None),
            "started_at": snapshot.iso(getattr(inst, "started_at", None)),
            "restarts": int(getattr(inst, "restarts", 0) or 0),
            "cost": str(getattr(inst, "cost", Decimal(0))),
            "last_output": self.redactor.text(_last_line(output)) if output else None,
            "expires_at": snapshot.iso(expires),
            "reason": getattr(inst, "reason", None) or None,
        }

    # ---- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the API and drive the deployment until it is down."""
        from golem_deploy.supervisor import api

        async with anyio.create_task_group() as tg:
            runner = await api.serve(self, self.folder.socket)
            try:
                tg.start_soon(self._watch_signals, tg.cancel_scope)
                await self._lifecycle()
            finally:
                self.done.set()
                with anyio.CancelScope(shield=True):
                    # Let `down` clients see the final state before the socket goes away.
                    await anyio.sleep(0.3)
                    await runner.cleanup()
                with contextlib.suppress(FileNotFoundError):
                    self.folder.socket.unlink()
                tg.cancel_scope.cancel()

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    continue  # the terminal went away; a detached deployment keeps running
                self.down.request(f"signal {signal.Signals(signum).name}")

    async def _lifecycle(self) -> None:
        try:
            try:
                await self._deploy()
            except Exception as error:  # any failure: record it, then release everything
                self.state = snapshot.FAILED
                self.reason = _error_text(error, self.redactor)
                self.note("DeploymentFailed", reason=self.reason)
                print(self.redactor.text(traceback.format_exc()), file=sys.stderr, flush=True)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_localnet()
                self.logs.close()
                held = load(self.journal.path)
                self.note("DeploymentStopped", clean=held.empty, still_held=held.summary())
                if self.state != snapshot.FAILED:
                    self.state = snapshot.STOPPED

    async def _deploy(self) -> None:
        api_url, app_key, subnet, driver, network = await self._network()
        if self.down.event.is_set():
            return  # asked to go down while the network was starting
        from golem_deploy.compiler import compile_manifest, price_caps
        from golem_deploy.engine import Golem

        # Local mounts work on any golem-deploy local network: the private one, or one
        # started with `golem-deploy localnet start` and exported (its subnet is local-dev).
        local = self.network["kind"] == "local" or subnet == LOCAL_SUBNET
        classes = compile_manifest(self.manifest, local=local)
        golem: Any = Golem(
            self.manifest.budget,
            subnet,
            driver,
            network,
            api_url=api_url,
            app_key=app_key,
            event_consumer=self.on_event,
            max_price=price_caps(self.manifest.market.max_price),
            blacklist=self.manifest.market.blacklist,
        )
        # The down timeout bounds the graceful part (shutdown steps). Releasing comes after
        # it and is bounded by the engine itself (activity release, invoice wait,
        # allocation), so a cut graceful part still pays for the work done; should even that
        # hang, `golem-deploy down` kills us and releases what the journal lists.
        async with golem:
            self.golem = golem
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._start_waves, golem, classes)
                await self.down.event.wait()
                tg.cancel_scope.cancel()  # no further waves once down is asked
            self.state = snapshot.STOPPING
            self.note("DownRequested", reason=self.down.reason, timeout=self.down.timeout)
            with anyio.move_on_after(self.down.timeout) as graceful:
                await self._stop_services()
            if graceful.cancelled_caught:
                self.reason = f"down timed out after {self.down.timeout:g}s"
                self.note("DownTimedOut", timeout=self.down.timeout)
                golem.stop_timeout = 0.0  # the graceful part is over: cancel what still runs
            # Leaving `async with golem` terminates agreements, settles invoices and
            # releases the allocation (each journaled through on_event).
        # A provider that never invoices must not hold `down` forever: the engine waited
        # its invoice_timeout; say which agreements went unpaid (their debit notes were).
        for agreement_id in golem.unpaid_agreements:
            self.note("InvoiceMissing", agreement_id=agreement_id, waited=golem.invoice_timeout)

    async def _network(self) -> tuple[str | None, str | None, str, str, str]:
        """(api_url, app_key, subnet, driver, network): the user's yagna or a private one."""
        manifest = self.manifest
        app_key = os.environ.get("YAGNA_APPKEY")
        if app_key:
            api_url = os.environ.get("YAGNA_API_URL", "http://127.0.0.1:7465")
            self.network = {"kind": "yagna", "api_url": api_url}
            self.note("NetworkReady", network_kind="yagna", api_url=api_url)
            subnet = os.environ.get("YAGNA_SUBNET") or manifest.subnet
            return api_url, app_key, subnet, manifest.payment.driver, manifest.payment.network
        from golem_deploy import localnet

        state_dir = self.folder.localnet
        self.network = {"kind": "local", "api_url": None}
        # Journal the folder before starting: a crash mid-start must still be cleaned up.
        self.note("LocalnetStarting", state_dir=state_dir, providers=self.providers)
        self._localnet_started = True
        info = await anyio.to_thread.run_sync(
            lambda: localnet.start(
                state_dir, providers=self.providers, faults=self.faults, timeout=60.0
            )
        )
        self.redactor.add(info.app_key)
        self.network = {"kind": "local", "api_url": info.api_url}
        self.note("LocalnetStarted", state_dir=state_dir, api_url=info.api_url)
        return info.api_url, info.app_key, info.subnet, info.payment_driver, info.payment_network

    async def _stop_localnet(self) -> None:
        if not self._localnet_started:
            return
        from golem_deploy import localnet

        state_dir = self.folder.localnet
        try:
            await anyio.to_thread.run_sync(lambda: localnet.stop(state_dir))
        except Exception as error:
            self.note("LocalnetStopFailed", state_dir=state_dir, error=str(error))
            return
        self.note("LocalnetStopped", state_dir=state_dir)

    async def _start_waves(self, golem: Any, classes: dict[str, Any]) -> None:
        """Start services wave by wave; a wave waits for every earlier instance to run."""
        waves = self.manifest.start_order()
        for number, wave in enumerate(waves):
            self.note("WaveStarting", wave=number, services=wave)
            for name in wave:
                spec = self.manifest.services[name]
                expiration = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=spec.expiration)
                cluster = await golem.run_service(
                    classes[name],
                    num_instances=spec.instances,
                    expiration=expiration,
                    respawn_unstarted_instances=spec.respawn_unstarted_instances,
                )
                self.clusters[name] = cluster
            if not await self._wait_running(wave):
                return
            self.note("WaveRunning", wave=number, services=wave)
        self.state = snapshot.RUNNING
        self.note("DeploymentRunning")
        await self._watch_until_all_ended()

    async def _watch_until_all_ended(self) -> None:
        """When every instance ended by itself (budget spent, agreements expired, restarts
        exhausted), nothing is left to supervise: go down and say why."""
        clusters = list(self.clusters.values())
        while not all(getattr(cluster, "finished", False) for cluster in clusters):
            await anyio.sleep(0.5)
        reasons = sorted(
            {
                str(getattr(inst, "reason", "") or "ended")
                for cluster in clusters
                for inst in list(getattr(cluster, "instances", []))
            }
        )
        self.reason = "every instance ended: " + "; ".join(reasons)
        self.note("DeploymentEnded", reason=self.reason)
        self.down.request(self.reason)

    async def _wait_running(self, wave: list[str]) -> bool:
        """True once every instance of `wave` runs; False (deployment failed) if one ended."""
        while True:
            states = [
                (name, inst)
                for name in wave
                for inst in list(getattr(self.clusters[name], "instances", []))
            ]
            ended = [
                (name, inst)
                for name, inst in states
                if str(to_plain(getattr(inst, "state", ""))) == "terminated"
                and (name, getattr(inst, "index", -1)) not in self._restarting
            ]
            if ended:
                name, inst = ended[0]
                why = getattr(inst, "reason", "") or "it terminated before running"
                self.state = snapshot.FAILED
                self.reason = f"{name}.{getattr(inst, 'index', '?')} did not start: {why}"
                self.note("DeploymentFailed", reason=self.reason)
                return False
            expected = sum(self.manifest.services[name].instances for name in wave)
            running = [i for _, i in states if str(to_plain(i.state)) == "running"]
            if len(running) >= expected:
                return True
            await anyio.sleep(WAVE_POLL)

    async def _stop_services(self) -> None:
        """Stop clusters in reverse wave order, each waiting until its instances ended."""
        for wave in reversed(self.manifest.start_order()):
            clusters = [self.clusters[name] for name in wave if name in self.clusters]
            for cluster in clusters:
                result = cluster.stop()
                if inspect.isawaitable(result):
                    await result
            for cluster in clusters:
                if hasattr(cluster, "wait_finished"):
                    await cluster.wait_finished()
            while any(
                str(to_plain(getattr(inst, "state", ""))) not in ("terminated", "unresponsive")
                for cluster in clusters
                for inst in list(getattr(cluster, "instances", []))
            ):
                await anyio.sleep(WAVE_POLL)


def _fields(event: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(event) and not isinstance(event, type):
        return {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return {}


def _journal_worthy(kind: str, event: Any) -> bool:
    """Everything but routine command traffic: successful commands and health checks."""
    if kind in ("CommandStarted", "CommandOutput"):
        return False
    if kind == "CommandFinished":
        return getattr(event, "return_code", 0) != 0
    if kind == "HealthCheckResult":
        return not getattr(event, "ok", True)
    return True


def _short(ident: Any) -> str:
    text = str(ident)
    return text if len(text) <= 12 else text[:12] + "…"


def _log_line(kind: str, event: Any) -> tuple[str, str] | None:
    """What an instance's log file says about an event: (stream, text), or nothing."""
    e = event
    if kind == "InstanceStateChanged":
        reason = getattr(e, "reason", "") or ""
        text = f"{to_plain(e.old)} -> {to_plain(e.new)}"
        return "state", text + (f" ({reason})" if reason else "")
    if kind == "CommandStarted":
        return "cmd", str(e.command)
    if kind == "CommandFinished":
        if e.return_code == 0 and not e.message:
            return None
        return "state", f"{e.command}: exit code {e.return_code}" + (
            f": {e.message}" if e.message else ""
        )
    if kind == "AgreementCreated":
        return "state", f"agreement {_short(e.agreement_id)} with {e.provider_name}"
    if kind == "AgreementRejected":
        return "state", f"agreement {_short(e.agreement_id)} rejected: {e.reason}"
    if kind == "ActivityCreated":
        return "state", f"activity {_short(e.activity_id)} created"
    if kind == "ActivityCreateFailed":
        return "state", f"activity creation failed: {e.reason}"
    if kind == "ActivityDestroyed":
        return "state", f"activity {_short(e.activity_id)} destroyed"
    if kind == "InstanceRestartScheduled":
        return "state", f"restart #{e.attempt} in {e.delay:g}s: {e.reason}"
    if kind == "HealthCheckResult" and not e.ok:
        return "state", f"health check failed ({e.consecutive_failures} in a row): {e.message}"
    return None


def _last_line(text: str) -> str:
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _error_text(error: BaseException, redactor: Redactor) -> str:
    text = str(error) or type(error).__name__
    return redactor.text(text)


def _secrets(manifest: Any) -> list[str]:
    """Every env value of every service: never to appear in journal, logs or status."""
    values: list[str] = []
    for spec in manifest.services.values():
        values.extend(str(v) for v in (spec.env or {}).values())
    return values


# ---- process entry --------------------------------------------------------------------------


class _RedactingFormatter(logging.Formatter):
    """Log lines may quote commands or errors that carry env values: redact them too."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.text(super().format(record))


def _log_to_stderr(redactor: Redactor) -> None:
    """The engine's warnings (late invoices, slow clusters) go to supervisor.log."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter(redactor))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _take_lock(folder: deployments.DeploymentDir) -> int | None:
    fd = os.open(folder.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _fresh_start(folder: deployments.DeploymentDir) -> None:
    """Keep the previous run's journal and logs as *.prev; start new ones."""
    if folder.journal.exists():
        folder.journal.replace(folder.root / "journal.prev.jsonl")
    if folder.logs.exists():
        previous = folder.root / "logs.prev"
        if previous.exists():
            for child in previous.iterdir():
                child.unlink()
            previous.rmdir()
        folder.logs.replace(previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="golem_deploy.supervisor.daemon")
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--env-file", type=Path, default=None)
    parser.add_argument("--providers", type=int, default=3)
    parser.add_argument("--faults", type=Path, default=None)
    args = parser.parse_args(argv)
    os.umask(0o077)  # the socket, journal and logs are private to the user

    from golem_deploy.manifest import load_manifest

    manifest = load_manifest(args.manifest, env_file=args.env_file)
    folder = deployments.of(manifest.name)
    lock_fd = _take_lock(folder)
    if lock_fd is None:
        print(f"deployment {manifest.name!r} already has a supervisor", file=sys.stderr)
        return deployments.EXIT_ALREADY_RUNNING
    previous = load(folder.journal)
    if not previous.empty:
        print(
            f"the previous run of {manifest.name!r} still holds: "
            + "; ".join(previous.summary())
            + " -- run `golem-deploy down` first",
            file=sys.stderr,
        )
        return deployments.EXIT_PREVIOUS_RUN_HOLDS
    _fresh_start(folder)
    folder.pid_file.write_text(f"{os.getpid()}\n")
    redactor = Redactor(_secrets(manifest))
    if os.environ.get("YAGNA_APPKEY"):
        redactor.add(os.environ["YAGNA_APPKEY"])
    _log_to_stderr(redactor)
    journal = Journal(folder.journal, redactor=redactor)
    journal.append(
        "DeploymentStarted",
        name=manifest.name,
        manifest=str(manifest.path),
        network_kind="yagna" if os.environ.get("YAGNA_APPKEY") else "local",
        budget=str(manifest.budget),
        pid=os.getpid(),
        services=[{"name": n, "instances": s.instances} for n, s in manifest.services.items()],
    )
    supervisor = Supervisor(
        manifest,
        folder,
        providers=args.providers,
        faults=args.faults,
        journal=journal,
        redactor=redactor,
    )
    try:
        anyio.run(supervisor.run, backend="asyncio")
    finally:
        journal.close()
    return 0 if supervisor.state != snapshot.FAILED else 1


if __name__ == "__main__":
    sys.exit(main())
