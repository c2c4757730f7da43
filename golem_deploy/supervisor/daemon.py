"""The supervisor: one detached process per deployment that owns the engine.

Started by `golem-deploy up` as `python -m golem_deploy.supervisor --manifest FILE`
in its own session, so closing the terminal does not end the deployment. It

  1. takes the deployment's lock (one supervisor per deployment name, ever),
  2. serves the control API on a Unix socket (snapshot, events, down, logs),
  3. when no yagna is configured (YAGNA_APPKEY unset) starts a private local network in the
     deployment folder; on the user's yagna it resolves registry images (image_tag, or
     image_hash without image_url) before any demand is published,
  4. runs the services in depends_on waves: a wave starts once every instance of the earlier
     waves is running,
  5. journals every engine event before the engine goes on (the journal is the truth after a
     crash) and writes per-instance log files,
  6. on `down` (or SIGTERM) stops the services in reverse wave order, lets the engine
     terminate agreements, accept invoices and release the allocation, stops the local
     network, and exits.

  7. on a change (`up` again, `scale`, `restart`: POST /reconcile) lets reconcile.py apply
     it to the running engine.

The app key is read from the environment and never written anywhere. The process entry is
__main__.py; the decisions are machine.py's; this module performs them.

Size: the one class that performs the deployment machine's decisions, consumes the engine's
events and builds the snapshot; what a change does lives in reconcile.py.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.engine.lifecycle import RenewalPolicy, ServiceState
from golem_deploy.protocol import LOCAL_SUBNET
from golem_deploy.supervisor import deployments, localnet_watch, snapshot
from golem_deploy.supervisor import machine as dm
from golem_deploy.supervisor.backend import Backend
from golem_deploy.supervisor.broadcast import Broadcast
from golem_deploy.supervisor.generations import every_cluster, hidden, service_clusters
from golem_deploy.supervisor.journal import Journal, Redactor, load, to_plain
from golem_deploy.supervisor.logs import InstanceLogs
from golem_deploy.supervisor.narrate import journal_worthy, log_line
from golem_deploy.supervisor.outage import OutageWatch

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from golem_deploy.engine import Cluster, Golem, Service
    from golem_deploy.manifest.model import Manifest
    from golem_deploy.supervisor.reconcile import Reconciler
    from golem_deploy.supervisor.vpn import DeploymentVpn

DEFAULT_DOWN_TIMEOUT = 120.0


class DownRequest:
    """Why and how to go down; set once, read by the lifecycle."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.timeout: float = DEFAULT_DOWN_TIMEOUT
        self.reason = ""

    def request(self, reason: str, timeout: float | None = None) -> None:
        if self.event.is_set():
            return  # the first request is being served
        self.reason = reason
        if timeout is not None:
            self.timeout = timeout
        self.event.set()


class Supervisor:
    """Owns one deployment: the engine, the local network, the journal, the logs.

    Its decisions live in `machine` (a pure DeploymentMachine fed with the engine's events
    and the supervisor's own milestones); this class performs them."""

    def __init__(
        self,
        manifest: Manifest,
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
        self.logs = InstanceLogs(
            folder.logs,
            redactor=redactor,
            rotation={name: spec.logs for name, spec in manifest.services.items()},
        )
        self.redactor = redactor
        self.waves = [
            [(name, manifest.services[name].instances) for name in wave]
            for wave in manifest.start_order()
        ]
        self.machine = dm.DeploymentMachine(self.waves)
        self.down = DownRequest()
        self.backend = Backend(manifest, folder, providers, faults, self.note, redactor)
        self.golem: Golem | None = None
        self.clusters: dict[str, Cluster] = {}  # the current cluster of each service
        # Clusters a change replaced (reconcile.py), while their instances still end.
        self.retired: dict[str, list[Cluster]] = {}
        self.reconciler: Reconciler | None = None  # once the deployment's engine runs
        self._watched: set[int] = set()  # id() of the clusters whose end is waited for
        self.vpn: DeploymentVpn | None = None  # the VPN and forwarded ports, when it has one
        self.last_output: dict[tuple[str, int], str] = {}
        self.outage = OutageWatch()  # yagna not answering the instances, while it lasts
        self.records = Broadcast()  # to every /events reader
        # Waves the machine asked to start, launched by _run_waves (run_service awaits).
        self._wave_send, self._wave_receive = anyio.create_memory_object_stream[dm.StartWave](100)
        self.done = anyio.Event()
        self._tg: TaskGroup | None = None  # the running deployment's (changes run in it)

    @property
    def state(self) -> str:
        return self.machine.state.value

    @property
    def reason(self) -> str | None:
        return self.machine.reason

    # ---- events -------------------------------------------------------------------------

    def publish(self, record: dict[str, Any]) -> None:
        self.records.publish(record)

    def note(self, kind: str, **fields: object) -> None:
        """Journal a supervisor record and publish it."""
        self.publish(self.journal.append(kind, **fields))

    def on_event(self, event: ev.EngineEvent) -> None:
        """The engine's event consumer: called synchronously, before the engine proceeds.

        Output goes only to the log files (too much for the journal); everything else is
        journaled (fsync'd) first, then mirrored into the instance's log file.
        """
        if isinstance(event, ev.CommandOutput):
            self._output(event)
            return
        if journal_worthy(event):
            self.publish(self.journal.append_event(event))
        elif self.records.wants(type(event).__name__):
            # built only when an `/events` reader takes it: at 100 instances, 20 batches a
            # second each start and finish a command
            self.publish({"kind": type(event).__name__, **to_plain(event, self.redactor)})
        if self.reconciler is not None:
            self.reconciler.on_event(event)
        self.outage.on_event(event)
        match event:
            case ev.InstanceStateChanged(
                service=service, index=index, new=new, reason=why, final=final, renewal=""
            ):  # a renewal's successor or retiring instance does not move the deployment
                self.feed(dm.InstanceChanged(service, index, new, why, final))
            case ev.InstanceRenewed(service=service, index=index):
                self.feed(dm.InstanceChanged(service, index, ServiceState.running, "renewed"))
        line = log_line(event)
        if line is not None:
            service, index, stream, text = line
            self.logs.write(service, index, stream, self.redactor.text(text), event.at)

    def _output(self, event: ev.CommandOutput) -> None:
        service, index, text = event.service, event.index, event.text
        self.logs.write(service, index, event.stream, text, event.at)
        lines = [line for line in text.splitlines() if line.strip()]
        if lines:
            self.last_output[(service, index)] = self.redactor.text(lines[-1])
        if not self.records.wants("CommandOutput"):
            return
        self.publish(
            {
                "kind": "CommandOutput",
                "service": service,
                "index": index,
                "stream": event.stream,
                "text": self.redactor.text(text[-2000:]),
            }
        )

    def feed(self, event: dm.Event) -> list[dm.Action]:
        """Tell the deployment machine what happened and perform what it decides.

        Returns the actions, for the caller that performs the asynchronous ones itself
        (StopServices, in _deploy)."""
        actions = self.machine.handle(event)
        for action in actions:
            match action:
                case dm.StartWave(number=number, services=services):
                    self.note("WaveStarting", wave=number, services=list(services))
                    self._wave_send.send_nowait(action)
                case dm.WaveRunning(number=number, services=services):
                    self.note("WaveRunning", wave=number, services=list(services))
                case dm.DeploymentRunning():
                    self.note("DeploymentRunning")
                case dm.DeploymentFailed(reason=reason):
                    self.note("DeploymentFailed", reason=reason)
                case dm.AllEnded(reason=reason):
                    self.note("DeploymentEnded", reason=reason)
                    self.down.request(reason)
                case dm.StopServices():
                    pass  # _deploy stops the services: it awaits them under the timeout
                case dm.DeploymentDegraded() | dm.RestartLocalnet() | dm.DeploymentRecovered():
                    localnet_watch.perform(self, action)
        return actions

    # ---- snapshot -----------------------------------------------------------------------

    def snapshot(self) -> snapshot.DeploymentSnapshot:
        """The deployment now (the control API serves its plain form)."""
        spent = self.golem.spent if self.golem is not None else load(self.journal.path).spent
        rows: dict[tuple[str, int], snapshot.InstanceView] = {}
        for name, cluster in self.every_cluster():
            spec = self.manifest.services.get(name)
            for instance in cluster.instances:
                engine_view = instance.snapshot()
                count, key = spec.instances if spec else 0, (name, engine_view.index)
                if hidden(engine_view, count, shown=key in rows):
                    continue
                rows[(name, engine_view.index)] = snapshot.live_instance(
                    engine_view,
                    expires_at=engine_view.expires_at or cluster.expiration,
                    last_output=self.last_output.get((name, engine_view.index)),
                    redact=self.redactor.text,
                )
        return snapshot.build(
            name=self.manifest.name,
            state=self.state,
            reason=self.reason,
            supervisor_pid=os.getpid(),
            supervisor_alive=True,
            network_kind=self.backend.kind,
            api_url=self.backend.api_url,
            budget=str(self.manifest.budget),
            spent=spent,
            services=[(name, spec.instances) for name, spec in self.manifest.services.items()],
            rows=rows,
            ports=self.vpn.ports() if self.vpn else (),
            vpn=self.vpn.view() if self.vpn else None,
            burn_per_hour=self.golem.burn_rate() if self.golem is not None else None,
            outage=self.outage.view(dt.datetime.now(dt.UTC).timestamp()),
        )

    def service_clusters(self, name: str) -> list[Cluster]:
        return service_clusters(self.clusters, self.retired, name)

    def every_cluster(self) -> list[tuple[str, Cluster]]:
        return every_cluster(self.clusters, self.retired)

    def watch(self, name: str, cluster: Cluster, tg: TaskGroup | None = None) -> None:
        """Tell the machine when `cluster` finished (once per time it has instances)."""
        tg = tg or self._tg
        if id(cluster) not in self._watched and tg is not None:
            self._watched.add(id(cluster))
            tg.start_soon(self._watch_finished, name, cluster)

    # ---- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the API and drive the deployment until it is down."""
        from golem_deploy.supervisor import api

        async with anyio.create_task_group() as tg:
            runner = await api.serve(self, self.folder.socket)
            try:
                tg.start_soon(self._watch_signals)
                await self._lifecycle()
            finally:
                self.done.set()
                self.records.end()
                with anyio.CancelScope(shield=True):
                    # Each /events reader gets the records still queued, then the end of
                    # its stream; cleanup waits (bounded) for those handlers to finish.
                    await runner.cleanup()
                self.folder.socket.unlink(missing_ok=True)
                tg.cancel_scope.cancel()

    async def _watch_signals(self) -> None:
        """SIGTERM or SIGINT: a graceful down; a later one changes nothing (the first is
        being served; `down --force` forces). SIGHUP: nothing. The supervisor runs in its
        own session, with no terminal, so that a deployment outlives the terminal that
        started it (README "Signals"; fault-matrix row 10d)."""
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
                why = self.redactor.text(str(error) or type(error).__name__)
                self.feed(dm.Crashed(why))
                print(self.redactor.text(traceback.format_exc()), file=sys.stderr, flush=True)
        finally:
            with anyio.CancelScope(shield=True):
                await self.backend.close()
                self.logs.close()
                held = load(self.journal.path)
                self.note("DeploymentStopped", clean=held.empty, still_held=held.summary())
                self.feed(dm.Finished())

    async def _deploy(self) -> None:
        api_url, app_key, subnet, driver, network = await self.backend.open()
        if self.down.event.is_set():  # asked to go down while the network was starting
            self.feed(dm.DownRequested(self.down.reason))
            return
        from golem_deploy.compiler import (
            compile_manifest,
            market_strategy,
            payment_terms,
            price_caps,
        )
        from golem_deploy.engine import Golem
        from golem_deploy.supervisor.reconcile import Reconciler

        # Local mounts work on any golem-deploy local network: the private one, or one
        # started with `golem-deploy localnet start` and exported (its subnet is local-dev).
        local = self.backend.kind == "local" or subnet == LOCAL_SUBNET
        images = await self._resolve_images(subnet) if self.backend.kind == "yagna" else {}
        classes = compile_manifest(self.manifest, local=local, images=images)
        golem = Golem(
            self.manifest.budget,
            subnet,
            driver,
            network,
            api_url=api_url,
            app_key=app_key,
            event_consumer=self.on_event,
            max_price=price_caps(self.manifest.market.max_price),
            blacklist=self.manifest.market.blacklist,
            resolve_images=False,  # done above for your yagna; the embedded network never asks
            payment_terms=payment_terms(self.manifest.payment),
            strategy=market_strategy(),
        )
        # The down timeout bounds the graceful part (shutdown steps). Releasing comes after
        # it and is bounded by the engine itself (activity release, invoice wait,
        # allocation), so a cut graceful part still pays for the work done; should even that
        # hang, `golem-deploy down` kills us and releases what the journal lists.
        async with golem:
            self.golem = golem
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._open_vpn(golem, tg)  # listeners close first on down
                self.reconciler = Reconciler(self, golem, tg, local=local, images=images)
                tg.start_soon(self._run_waves, golem, classes)
                await self.down.event.wait()
                tg.cancel_scope.cancel()  # no further waves once down is asked
            actions = self.feed(dm.DownRequested(self.down.reason))
            self.note("DownRequested", reason=self.down.reason, timeout=self.down.timeout)
            if any(isinstance(action, dm.StopServices) for action in actions):
                with anyio.move_on_after(self.down.timeout) as graceful:
                    await self._stop_services()
                if graceful.cancelled_caught:
                    self.feed(dm.DownTimedOut(self.down.timeout))
                    self.note("DownTimedOut", timeout=self.down.timeout)
                    golem.stop_timeout = 0.0  # the graceful part is over: cancel what runs
            # Leaving `async with golem` terminates agreements, settles invoices and
            # releases the allocation (each journaled through on_event).
        # A provider that never invoices must not hold `down` forever: the engine waited
        # its invoice_timeout; say which agreements went unpaid (their debit notes were).
        for agreement_id in golem.unpaid_agreements:
            self.note("InvoiceMissing", agreement_id=agreement_id, waited=golem.invoice_timeout)

    async def _resolve_images(self, subnet: str) -> dict[str, tuple[str, str]]:
        """On the user's yagna: image tags and bare hashes through the registry, before any
        demand is published (a failure fails the deployment with the registry's reason)."""
        from golem_deploy.preflight.images import needs_registry, resolve_images

        if not needs_registry(self.manifest):
            return {}
        resolved = await resolve_images(
            self.manifest,
            subnet=subnet,
            warn=lambda text: self.note("ImageUnresolved", warning=text),
        )
        for name, image in resolved.items():
            self.note("ImageResolved", service=name, sha3=image.sha3, url=image.url)
        return {name: (image.sha3, image.url) for name, image in resolved.items()}

    async def _open_vpn(self, golem: Golem, tg: TaskGroup) -> None:
        """The deployment's VPN and forwarded ports, before anything is negotiated."""
        from golem_deploy.compiler import network_plan
        from golem_deploy.supervisor.vpn import DeploymentVpn

        plan = network_plan(self.manifest)
        if plan is not None:
            self.vpn = await DeploymentVpn.open(
                golem, plan, self.manifest, tg, self.service_clusters
            )
            ports = [port.describe() for port in self.vpn.ports()]
            self.note("NetworkPlanned", addresses=self.vpn.addresses(), ports=ports)

    async def _run_waves(self, golem: Golem, classes: dict[str, type[Service]]) -> None:
        """Launch the waves the machine asks for, and tell it when a service finished.

        Runs until cancelled (by `down`); the machine starts the first wave once told the
        network is ready, and each next one once the previous wave runs."""
        async with anyio.create_task_group() as tg:
            self.feed(dm.NetworkReady())
            if self.backend.kind == "local":  # ours: notice a death of it, and heal it
                tg.start_soon(localnet_watch.watch, self)
            async for wave in self._wave_receive:
                for name in wave.services:
                    spec = self.manifest.services[name]
                    expiration = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=spec.expiration)
                    cluster = await golem.run_service(
                        classes[name],
                        num_instances=spec.instances,
                        expiration=expiration,
                        respawn_unstarted_instances=spec.respawn_unstarted_instances,
                        network=self.vpn.network if self.vpn else None,
                        network_addresses=self.vpn.plan.addresses[name] if self.vpn else None,
                        renewal=RenewalPolicy(spec.expiration, spec.lifetime),
                    )
                    self.clusters[name] = cluster
                    self.watch(name, cluster, tg)

    async def _watch_finished(self, name: str, cluster: Cluster) -> None:
        try:
            await cluster.wait_finished()
        finally:
            self._watched.discard(id(cluster))
        if self.clusters.get(name) is not cluster:
            return  # a change replaced it, or removed its service: not the service's end
        reasons = tuple(instance.snapshot().reason for instance in cluster.instances)
        self.feed(dm.ServiceFinished(name, reasons))

    async def _stop_services(self) -> None:
        """Stop services in reverse wave order, each wave once all its instances ended."""
        waves = [[name for name, _ in wave] for wave in self.waves]
        listed = {name for wave in waves for name in wave}
        others = [name for name, _ in self.every_cluster() if name not in listed]
        for wave in [*reversed(waves), others]:  # others: removed by a change cut short
            clusters = [c for name in dict.fromkeys(wave) for c in self.service_clusters(name)]
            for cluster in clusters:
                cluster.stop()
            for cluster in clusters:
                await cluster.wait_finished()
