"""Applying a change to a running deployment: the supervisor's reconciler.

`golem-deploy up` on a deployment that is up, `scale` and `restart` all end here, through
the control API (POST /reconcile). changes.py decides what to do (a Plan); this module does
it on the live engine, one service at a time in the plan's (depends_on) order:

- more instances: spawned into the service's cluster under the next indices, each with
  its planned VPN address when free (else the next free one); waited for until running;
- fewer instances: the highest indices are stopped (their shutdown steps run), their
  addresses given back;
- a changed spec: a new cluster of the new Service class; each index gets its replacement
  there, `update.parallelism` at a time; only once the replacement runs (and passed a
  health check, when the service has one) is the old instance stopped, after the
  connections forwarded ports give it finished (engine/replace.py). A replacement that
  fails or never becomes healthy is stopped, the old instance is kept and the change is
  reported failed (what was done before stays done);
- added / removed services: a cluster started / every instance stopped;
- a new budget: the allocation amended first (engine `Golem.set_budget`).

Every engine effect of a change (agreements, activities) is journaled by the supervisor's
event consumer as for the first `up`, so `down` after a killed supervisor releases the new
agreements too. The change itself is journaled: ReconcileStarted (the plan),
ReplacementRunning, ReconcileFinished (ok or the reason it failed).

Size: a little over 400 lines; the steps of applying a change read best in one place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import anyio

from golem_deploy.engine import events as ev
from golem_deploy.engine.lifecycle import ServiceState
from golem_deploy.engine.names import announce, index_names
from golem_deploy.engine.replace import drained
from golem_deploy.engine.service import Service, record_of
from golem_deploy.errors import GolemDeployError
from golem_deploy.manifest.model import Manifest, ServiceSpec
from golem_deploy.supervisor import changes
from golem_deploy.supervisor import machine as dm
from golem_deploy.supervisor.reconcile_request import parse
from golem_deploy.supervisor.redact import secret_name

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from golem_deploy.engine import Cluster, Golem, InstanceSnapshot
    from golem_deploy.supervisor.daemon import Supervisor

__all__ = ["Reconciler"]

POLL = 0.2  # how often a starting or stopping instance is looked at (a user waits on it)
STOP_WAIT = 120.0  # an instance stopped by a change: its shutdown steps' bound, as `down`'s
_FINAL = (ServiceState.terminated, ServiceState.unresponsive)
# States whose machine takes new services (ServicesChanged): not stopping, not failed.
_SUPERVISING = (dm.DeploymentState.running.value, dm.DeploymentState.degraded.value)


class ChangeFailed(Exception):
    """A step of a change failed; the message says which instance and why."""


class Reconciler:
    """Applies changes to one supervisor's running deployment, one change at a time."""

    def __init__(
        self,
        supervisor: Supervisor,
        golem: Golem,
        tg: TaskGroup,
        *,
        local: bool,
        images: Mapping[str, tuple[str, str]],
    ) -> None:
        self.sup = supervisor
        self.golem = golem
        self.tg = tg
        self.local = local
        self.images = dict(images)
        self.status: changes.ChangeStatus | None = None
        self._ids = itertools.count(1)
        self._healthy: set[str] = set()  # instance ids that passed a health check

    # ---- requests (the control API) -------------------------------------------------------

    async def handle(self, body: Mapping[str, object]) -> dict[str, object]:
        """POST /reconcile: the plan, and with `dry_run` false its start. User errors
        (an invalid manifest, an unknown service) are answered as {"error", "hint"}."""
        try:
            current = self.sup.manifest
            wanted, restart = await anyio.to_thread.run_sync(parse, body, current)
        except GolemDeployError as error:
            return {"error": error.message, "hint": error.hint or ""}
        p = self.plan(wanted, restart)
        answer: dict[str, object] = {"plan": p.plain(), "lines": p.lines(), "change": None}
        if body.get("dry_run") or p.refused or p.empty:
            return answer
        timeout = body.get("timeout")
        wait = float(timeout) if isinstance(timeout, int | float) and timeout > 0 else 600.0
        answer["change"] = self.start(wanted, p, timeout=wait).id
        return answer

    def plan(self, wanted: Manifest, restart: Mapping[str, Sequence[int]]) -> changes.Plan:
        """The plan for `wanted`; refused also while another change is being applied, or
        while the deployment neither runs nor is degraded with its local network up again
        (a lasting degradation must not keep a user from scaling)."""
        p = changes.plan(self.sup.manifest, wanted, spent=self.golem.spent, restart=restart)
        busy: list[str] = []
        if self.status is not None and not self.status.done:
            busy.append(f"change {self.status.id} is being applied; wait until it finished")
        why = self.sup.machine.change_refusal()  # running, or degraded with its network up
        if why is not None:
            busy.append(why)
        if busy:
            p = dataclasses.replace(p, refused=(*busy, *p.refused))
        return p

    def start(self, wanted: Manifest, p: changes.Plan, *, timeout: float) -> changes.ChangeStatus:
        """Apply `p` in the background (the caller checked it is not refused)."""
        status = changes.ChangeStatus(next(self._ids), p)
        self.status = status
        self.sup.note("ReconcileStarted", change=status.id, plan=p.plain())
        self.tg.start_soon(self._run, status, wanted, timeout)
        return status

    def on_event(self, event: ev.EngineEvent) -> None:
        """The supervisor's consumer hands health results here (a replacement must pass)."""
        if isinstance(event, ev.HealthCheckResult) and event.ok and event.instance_id:
            self._healthy.add(event.instance_id)

    # ---- applying -------------------------------------------------------------------------

    async def _run(self, status: changes.ChangeStatus, wanted: Manifest, timeout: float) -> None:
        try:
            with anyio.fail_after(timeout):
                await self._apply(status.plan, wanted)
            status.ok = True
        except ChangeFailed as failure:
            status.reason = str(failure)
        except TimeoutError:
            status.reason = f"the change did not finish within {timeout:g}s"
        except GolemDeployError as error:
            status.reason = str(error)
        finally:
            if not status.ok:
                status.reason = status.reason or "cut short: the deployment is going down"
                # What runs now is the running manifest's services (a failed change added
                # only some): the machine supervises those.
                if self.sup.state in _SUPERVISING:
                    self._set_waves(self.sup.manifest, ())
            status.done = True
            services = [
                {"name": name, "instances": spec.instances}
                for name, spec in self.sup.manifest.services.items()
            ]
            self.sup.note(
                "ReconcileFinished",
                change=status.id,
                ok=status.ok,
                reason=status.reason,
                services=services,
            )

    async def _apply(self, p: changes.Plan, wanted: Manifest) -> None:
        from golem_deploy.compiler import compile_manifest

        if self.sup.backend.kind == "yagna":
            await self._resolve_images(wanted)
        if p.budget is not None:
            try:
                await self.golem.set_budget(p.budget[1])
            except ValueError as e:  # spending went on meanwhile
                raise ChangeFailed(str(e)) from None
        classes = compile_manifest(wanted, local=self.local, images=self.images)
        for spec in wanted.services.values():  # new env values are secrets too
            for key, value in spec.env.items():
                self.sup.redactor.add(str(value), named_secret=secret_name(key))
        started = tuple(c.service for c in p.changes if c.start or c.replace)
        self._set_waves(wanted, started)
        for change in p.changes:
            await self._apply_service(change, wanted, classes)
            self._settle(change, wanted)
        self.sup.manifest = wanted

    async def _resolve_images(self, wanted: Manifest) -> None:
        """On the user's yagna, a changed image resolves through the registry as at `up`
        (cached; an unknown tag fails the change before anything starts)."""
        from golem_deploy.preflight.images import needs_registry, resolve_images

        if not needs_registry(wanted):
            return
        resolved = await resolve_images(
            wanted,
            subnet=self.golem.subnet_tag,
            warn=lambda text: self.sup.note("ImageUnresolved", warning=text),
        )
        for name, image in resolved.items():
            self.sup.note("ImageResolved", service=name, sha3=image.sha3, url=image.url)
            self.images[name] = (image.sha3, image.url)

    def _set_waves(self, wanted: Manifest, started: tuple[str, ...]) -> None:
        """The supervisor (and its machine) supervise the wanted services from now on."""
        waves = [[(n, wanted.services[n].instances) for n in wave] for wave in wanted.start_order()]
        self.sup.waves = waves
        self.sup.feed(dm.ServicesChanged(tuple(tuple(w) for w in waves), started))

    def _settle(self, change: changes.ServiceChange, wanted: Manifest) -> None:
        """Once a service's change is applied, the running manifest says so (a later
        failure leaves what was done recorded, the rest as it was)."""
        services = dict(self.sup.manifest.services)
        if change.kind is changes.Kind.removed:
            services.pop(change.service, None)
        else:
            services[change.service] = wanted.services[change.service]
        order = [n for n in wanted.services if n in services]
        order += [n for n in services if n not in order]
        self.sup.manifest = dataclasses.replace(
            self.sup.manifest, services={n: services[n] for n in order}
        )

    async def _apply_service(
        self,
        change: changes.ServiceChange,
        wanted: Manifest,
        classes: Mapping[str, type[Service]],
    ) -> None:
        name = change.service
        if change.kind is changes.Kind.unchanged:
            return
        if change.stop:
            await self._stop([self._live(name, i) for i in change.stop])
        if change.kind is changes.Kind.removed:
            self.sup.clusters.pop(name, None)
            self.sup.retired.pop(name, None)
            return
        spec = wanted.services[name]
        old = cluster = self.sup.clusters.get(name)
        fresh = None
        if cluster is None or change.changed or change.kind is changes.Kind.added:
            fresh = await self._new_cluster(classes[name], spec)
            if old is not None:
                self.sup.retired.setdefault(name, []).append(old)
            self.sup.clusters[name] = cluster = fresh
        try:
            for batch in changes.batches(change.replace, change.parallelism):
                await self._replace(cluster, name, batch, wanted)
            if change.start:
                fresh_ones = [self._spawn(cluster, name, i, wanted) for i in change.start]
                await self._wait_ready(fresh_ones, spec, replacing=False)
                await self._name(fresh_ones)
        except BaseException:  # failed, timed out or cut short by `down`
            if fresh is not None and old is not None and not _has_running(fresh):
                # Nothing was replaced: the old cluster is the service's again, so the
                # failed new one ending is not mistaken for the service's end.
                self.sup.retired[name].remove(old)
                self.sup.clusters[name] = old
                raise
            self.sup.watch(name, cluster)
            raise
        # Watched only now: a cluster whose first instance failed has not "finished" the
        # service (its old instances still run).
        self.sup.watch(name, cluster)

    async def _new_cluster(self, service_class: type[Service], spec: ServiceSpec) -> Cluster:
        vpn = self.sup.vpn
        return await self.golem.run_service(
            service_class,
            num_instances=0,
            expiration=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=spec.expiration),
            respawn_unstarted_instances=spec.respawn_unstarted_instances,
            network=vpn.network if vpn else None,
        )

    def _spawn(self, cluster: Cluster, name: str, index: int, wanted: Manifest) -> Service:
        address = self._address(name, index, wanted)
        addresses = [address] if address else None
        (instance,) = cluster.spawn_instances(1, network_addresses=addresses, indices=[index])
        return instance

    def _address(self, name: str, index: int, wanted: Manifest) -> str | None:
        """The planned address of `name.index` when no live instance holds it, else the
        next free one (a replacement runs beside the instance it replaces)."""
        from golem_deploy.compiler import network_plan

        vpn = self.sup.vpn
        planned = network_plan(wanted)
        if vpn is None or planned is None:
            return None
        network = vpn.network
        address = planned.addresses[name][index]
        taken = {
            i.snapshot().ip for c in (c for _, c in self.sup.every_cluster()) for i in c.instances
        }
        if address in taken or address in network.nodes:
            address = network.next_free_ip()
        return address

    async def _name(self, instances: Sequence[Service]) -> None:
        """Once new instances run: `<service>-<index>` (and `<service>` for index 0) name
        their addresses in every instance deployed from now on, and in every running one
        (its /etc/hosts rewritten: engine/names.py), so a replaced instance's names follow
        its replacement before the old one stops."""
        if (vpn := self.sup.vpn) is None:
            return
        for instance in instances:
            view = instance.snapshot()
            if view.ip:
                vpn.network.hosts.update(
                    {n: view.ip for n in index_names(view.service, view.index)}
                )
        runners = [r for _, cluster in self.sup.every_cluster() for r in cluster.runners]
        await announce(vpn.network, runners)

    async def _replace(
        self, cluster: Cluster, name: str, batch: Sequence[int], wanted: Manifest
    ) -> None:
        """Replace `batch` of `name`: new ones running (and healthy) before the old stop."""
        olds = [self._live(name, i) for i in batch]
        news = [self._spawn(cluster, name, i, wanted) for i in batch]
        try:
            await self._wait_ready(news, wanted.services[name], replacing=True)
        except BaseException:  # failed, timed out or cut short: the old ones keep serving
            for new in news:
                _stop_instance(new)
            raise
        await self._name(news)
        for index in batch:
            self.sup.note("ReplacementRunning", service=name, index=index)
        await _drain(olds)
        await self._stop(olds)

    def _live(self, name: str, index: int) -> Service | None:
        """The instance of `name.index` that has not ended for good (the newest one)."""
        for cluster in reversed(self.sup.service_clusters(name)):
            for instance in reversed(cluster.instances):
                view = instance.snapshot()
                if view.index == index and _alive(view):
                    return instance
        return None

    async def _wait_ready(
        self, instances: Sequence[Service], spec: ServiceSpec, *, replacing: bool
    ) -> None:
        """Until every instance runs (and passed a health check, when the service has
        one); ChangeFailed as soon as one ended or is to be restarted instead."""
        pending = list(instances)
        while pending:
            for instance in list(pending):
                view = instance.snapshot()
                what = f"{view.service}.{view.index}"
                if view.state in _FINAL or view.restart_scheduled:
                    why = view.reason or str(view.state)
                    role = "the replacement of " if replacing else ""
                    kept = "; the old instance is kept" if replacing else ""
                    raise ChangeFailed(f"{role}{what} did not start: {why}{kept}")
                ready = view.state is ServiceState.running
                if ready and spec.healthcheck is not None:
                    ready = _record_id(instance) in self._healthy
                if ready:
                    pending.remove(instance)
            if pending:
                await anyio.sleep(POLL)

    async def _stop(self, instances: Sequence[Service | None]) -> None:
        """Stop these instances (shutdown steps run), wait until they ended, and give their
        addresses back when no live instance took them over."""
        live = [i for i in instances if i is not None]
        for instance in live:
            _stop_instance(instance)
        with anyio.move_on_after(STOP_WAIT):
            while any(_alive(i.snapshot()) for i in live):
                await anyio.sleep(POLL)
        vpn = self.sup.vpn
        if vpn is None:
            return
        in_use = {
            i.snapshot().ip
            for c in (c for _, c in self.sup.every_cluster())
            for i in c.instances
            if _alive(i.snapshot())
        }
        for instance in live:
            ip = instance.snapshot().ip
            if ip and ip not in in_use:
                vpn.network.unreserve(ip)


def _alive(view: InstanceSnapshot) -> bool:
    """Not ended for good: an unresponsive instance waiting for its restart (a degraded
    deployment's, say) is alive, so a scale-down stops it (the stop cancels the restart)."""
    return view.state not in _FINAL or view.restart_scheduled


async def _drain(olds: Sequence[Service | None]) -> None:
    """The replaced instances get no new connection; each is stopped once the ones it
    serves finished (engine/replace.py's rule: stopping it sooner resets them)."""
    async with anyio.create_task_group() as tg:
        for old in filter(None, olds):
            cluster = record_of(old).cluster
            runner = cluster.retire(old) if cluster is not None else None
            if runner is not None and runner.record.state is ServiceState.running:
                tg.start_soon(drained, runner)


def _has_running(cluster: Cluster) -> bool:
    return any(i.snapshot().state is ServiceState.running for i in cluster.instances)


def _stop_instance(instance: Service) -> None:
    cluster = record_of(instance).cluster
    if cluster is not None:
        cluster.stop_instance(instance)


def _record_id(instance: Service) -> str:
    return record_of(instance).id
