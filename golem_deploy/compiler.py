"""Manifest -> Service classes: the bridge from the declarative file to the Services API.

`compile_manifest(manifest)` returns one generated `Service` subclass per service, named
after it (`simple-service` -> `SimpleService`), exactly as a yapapi user would have written
it by hand: `get_payload()` builds the VM payload with `vm.repo(...)`, `start()` deploys and
starts the VM and then runs the manifest's start steps, `run()` repeats its steps every
`run.every`, `shutdown()` runs the shutdown steps. The manifest's restart policy, health
check and price caps are translated into the engine's own typed configuration
(`engine.RestartPolicy`, `engine.HealthCheck`, `engine.PriceCaps`): the engine never sees a
manifest object. The class keeps its `spec` for the handlers and the supervisor.

Why generate classes instead of interpreting the manifest inside the engine: the engine then
has a single way to run services (the yapapi-shaped API, which is also its public library
API), and `golem-deploy export` can print the very same classes as Python source.

The manifest's `env` is applied by wrapping every command as
`/usr/bin/env K=V ... argv` -- portable to real VMs, where an ExeScript `run` has no env.

Size: one translation with two outputs, the classes and the same classes as yapapi source
(`export`), kept side by side so they cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import anyio

from golem_deploy.engine import HealthCheck, PaymentTerms, PriceCaps, RestartPolicy, Service, vm
from golem_deploy.engine.config import HttpProbe
from golem_deploy.engine.network import NetworkPlan
from golem_deploy.engine.service import Script
from golem_deploy.engine.strategy import LeastExpensiveLinearPayuMS
from golem_deploy.errors import GolemDeployError
from golem_deploy.manifest.model import (
    DownloadStep,
    Healthcheck,
    Manifest,
    MaxPrice,
    Payment,
    RunStep,
    ServiceSpec,
    Step,
    UploadStep,
)
from golem_deploy.manifest.network import hosts, instance_addresses
from golem_deploy.protocol import LOCAL_IMAGE

LOCAL_IMAGE_PROPERTY = LOCAL_IMAGE
"""Demand property with local.image's absolute path (read by the local network's provider)."""
START_ENTRYPOINT = "start-entrypoint"
"""The capability, and the `start` argument that asks the VM to run the image's entrypoint."""

__all__ = [
    "CompileError",
    "ManifestService",
    "class_name",
    "compile_manifest",
    "export_source",
    "health_check",
    "network_plan",
    "price_caps",
    "restart_policy",
    "with_env",
]


class CompileError(GolemDeployError):
    """A manifest that validates but cannot be turned into services (e.g. a local path
    outside the manifest's folder in a Manifest built by code)."""


def with_env(argv: tuple[str, ...], env: Mapping[str, str]) -> tuple[str, ...]:
    """`argv` run with `env` set: ("/usr/bin/env", "K=V", ..., *argv), or argv unchanged."""
    if not env:
        return argv
    return ("/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), *argv)


def class_name(service: str) -> str:
    """A Python class name for a service: `simple-service` -> `SimpleService`."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", service) if w]
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Service"
    return name if name[0].isalpha() else f"Service{name}"


class ManifestService(Service):
    """The base of every generated class: handlers driven by the class's `spec`."""

    spec: ClassVar[ServiceSpec]
    local_mounts: ClassVar[Mapping[str, Path]] = {}
    local_image: ClassVar[Path | None] = None
    # (sha3, url) the registry gave for image_tag / a bare image_hash (real network only).
    resolved_image: ClassVar[tuple[str, str] | None] = None

    @classmethod
    def service_name(cls) -> str:
        return cls.spec.name

    @classmethod
    async def _payload(cls) -> Any:
        p = cls.spec.payload
        image_hash, image_url, image_tag = p.image_hash, p.image_url, p.image_tag
        if cls.resolved_image is not None:
            (image_hash, image_url), image_tag = cls.resolved_image, None
        payload = await vm.repo(
            image_hash=image_hash,
            image_url=image_url,
            image_tag=image_tag,
            min_mem_gib=p.min_mem_gib,
            min_storage_gib=p.min_storage_gib,
            min_cpu_threads=p.min_cpu_threads,
            capabilities=list(p.capabilities),
        )
        if cls.local_mounts:
            payload = payload.with_local_mounts(cls.local_mounts)
        if cls.local_image is not None:
            payload = payload.with_properties(**{LOCAL_IMAGE_PROPERTY: str(cls.local_image)})
        return payload

    def _script(self, steps: tuple[Step, ...], script: Script | None = None) -> Script:
        """One script running `steps` in order (env applied to every command), or `script`
        with them added."""
        if script is None:
            script = self._ctx.new_script()
        for step in steps:
            if isinstance(step, RunStep):
                script.run(*with_env(step.argv, self.spec.env))
            elif isinstance(step, UploadStep):
                script.upload_file(step.src, step.dst)
            else:
                script.download_file(step.src, step.dst)
        return script

    async def start(self) -> AsyncGenerator[Script, Any]:
        """Deploy and start the VM (with the `start-entrypoint` capability: and the image's
        entrypoint, as the VM runs it), then the manifest's start steps -- in ONE batch:
        an exec round trip to the provider less per instance than yapapi's usual two
        scripts. The batch stops at the first command that fails, as two scripts would."""
        script = self._ctx.new_script()
        script.deploy(**self.get_deploy_args())
        if START_ENTRYPOINT in self.spec.payload.capabilities:
            script.start(START_ENTRYPOINT)
        else:
            script.start()
        yield self._script(self.spec.start, script)

    async def run(self) -> AsyncGenerator[Script, Any]:
        """The run steps, repeated every `run.every`; without `every` they run once and the
        instance stays running until it is stopped (a service, not a batch job)."""
        run = self.spec.run
        if not run.steps:
            async for script in super().run():
                yield script
            return
        every = run.every
        while True:
            yield self._script(run.steps)
            if every is None:
                await anyio.sleep_forever()
            else:
                await anyio.sleep(every)

    async def shutdown(self) -> AsyncGenerator[Script, Any]:
        """The manifest's shutdown steps (or, without any, terminate the VM)."""
        if not self.spec.shutdown:
            async for script in super().shutdown():
                yield script
            return
        yield self._script(self.spec.shutdown)


def restart_policy(spec: ServiceSpec) -> RestartPolicy:
    """The engine's restart policy for a service of the manifest."""
    r = spec.restart
    return RestartPolicy(policy=r.policy, max_restarts=r.max_restarts, backoff=r.backoff)


def health_check(spec: ServiceSpec) -> HealthCheck | None:
    """The engine's health check for a service: its command (run with the service's env),
    or an http/tcp probe over the VPN."""
    hc: Healthcheck | None = spec.healthcheck
    if hc is None:
        return None
    return HealthCheck(
        argv=with_env(hc.run.argv, spec.env) if hc.run is not None else None,
        http=HttpProbe(port=hc.http.port, path=hc.http.path) if hc.http is not None else None,
        tcp=hc.tcp,
        interval=hc.interval,
        timeout=hc.timeout,
        retries=hc.retries,
        start_period=hc.start_period,
    )


def network_plan(manifest: Manifest) -> NetworkPlan | None:
    """The deployment's VPN for the engine, None without one: its range, every service's
    instance addresses in index order, and the hosts map. Used as::

        net = await golem.create_network(plan.cidr)
        net.hosts.update(plan.hosts)
        await golem.run_service(cls, ..., network=net, network_addresses=plan.addresses[name])
    """
    if manifest.network is None:
        return None
    planned = instance_addresses(manifest)
    addresses = {
        name: tuple(planned[(name, index)] for index in range(spec.instances))
        for name, spec in manifest.services.items()
    }
    return NetworkPlan(cidr=manifest.network.cidr, addresses=addresses, hosts=hosts(manifest))


def payment_terms(payment: Payment) -> PaymentTerms:
    """The engine's payment terms for the manifest's `payment.debit_note_interval` and
    `payment.payment_timeout` (None: yapapi's rules, engine/payment_terms.py)."""
    return PaymentTerms(
        debit_note_interval=payment.debit_note_interval, payment_timeout=payment.payment_timeout
    )


def price_caps(max_price: MaxPrice) -> PriceCaps:
    """The engine's price caps for the manifest's `market.max_price`."""
    return PriceCaps(
        start=max_price.start,
        cpu_per_hour=max_price.cpu_per_hour,
        env_per_hour=max_price.env_per_hour,
    )


def market_strategy() -> LeastExpensiveLinearPayuMS:
    """A manifest deployment's market strategy: the cheapest offer first, capped only by
    `market.max_price` (`price_caps`, checked by the engine before the strategy) and not by
    yapapi's default caps, so a manifest without `max_price` accepts any price, as the
    manifest reference says (and as `export` writes it)."""
    return LeastExpensiveLinearPayuMS()


def compile_manifest(
    manifest: Manifest,
    *,
    local: bool = False,
    images: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, type[Service]]:
    """One generated Service subclass per service, in manifest order.

    With `local=True` the payload also carries the `golem_deploy.local.mounts` demand
    property (read only by the embedded local network's provider). `images` maps a service
    to the (sha3, url) the registry resolved its image to (golem_deploy.preflight.images):
    its payload is then `vm.repo(image_hash=sha3, image_url=url)`.
    """
    classes: dict[str, type[Service]] = {}
    taken: set[str] = set()
    for name, spec in manifest.services.items():
        cls_name = class_name(name)
        suffix = 2
        while cls_name in taken:
            cls_name, suffix = f"{class_name(name)}{suffix}", suffix + 1
        taken.add(cls_name)
        resolved = (images or {}).get(name)
        classes[name] = _compile_service(
            cls_name, spec, manifest.folder, local=local, resolved=resolved
        )
    return classes


def _compile_service(
    cls_name: str,
    spec: ServiceSpec,
    folder: Path,
    *,
    local: bool,
    resolved: tuple[str, str] | None = None,
) -> type:
    _check_local_paths(spec, folder)

    async def get_payload() -> Any:
        return await cls._payload()

    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": cls_name,
        "__doc__": f"Service {spec.name!r} generated from the manifest.",
        "spec": spec,
        "restart": restart_policy(spec),
        "healthcheck": health_check(spec),
        "respawn_unstarted_instances": spec.respawn_unstarted_instances,
        "local_mounts": dict(spec.mounts) if local else {},
        "local_image": spec.local_image if local else None,
        "resolved_image": resolved,
        "get_payload": staticmethod(get_payload),
    }
    cls: type[ManifestService] = type(cls_name, (ManifestService,), attrs)
    return cls


def _check_local_paths(spec: ServiceSpec, folder: Path) -> None:
    """Refuse uploads/downloads whose local file is outside the manifest's folder."""
    base = folder.resolve()
    for steps in (spec.start, spec.run.steps, spec.shutdown):
        for step in steps:
            local: Path | None = None
            if isinstance(step, UploadStep):
                local, what = step.src, "upload source"
            elif isinstance(step, DownloadStep):
                local, what = step.dst, "download destination"
            if local is None:
                continue
            resolved = (base / local).resolve()
            if not resolved.is_relative_to(base):
                raise CompileError(
                    f"service {spec.name!r}: {what} {str(local)!r} is outside the manifest's "
                    f"folder {base}",
                    hint="keep the files a manifest transfers inside its folder",
                )


# --------------------------------------------------------------------------- export

_EXPORT_HEADER = '''\
#!/usr/bin/env python3
"""{name}: the services of {manifest}, as a yapapi 0.13 program.

Generated by `golem-deploy export`; edit freely. Run it against your own yagna:

    pip install yapapi==0.13.1
    export YAGNA_APPKEY=...      # `yagna app-key list`
    python {script}

Ctrl-C stops the services (their shutdown steps run) and pays for what was used.
Not carried over (yapapi 0.13 has no equivalent):
{missing}
"""

import asyncio
import pathlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from yapapi import Golem
from yapapi.contrib.strategy import ProviderFilter
from yapapi.payload import vm
from yapapi.props import com
from yapapi.services import Service, ServiceState
from yapapi.strategy import LeastExpensiveLinearPayuMS

# Local files of uploads and downloads are relative to the manifest's folder.
MANIFEST_DIR = pathlib.Path(__file__).resolve().parent / {manifest_dir}

BUDGET = Decimal({budget})
SUBNET = {subnet}
PAYMENT_DRIVER = {driver}
PAYMENT_NETWORK = {network}
BLACKLIST = {blacklist}  # provider ids never to sign agreements with
{vpn}'''

_EXPORT_MAIN = '''

def make_strategy():
    """Cheapest offers first, rejecting any over the manifest's price caps."""
    strategy = LeastExpensiveLinearPayuMS(
        max_fixed_price={max_fixed},
        max_price_for={{
            # caps are per hour in the manifest, per second in the offers
{max_price_for}        }},
    )
    return ProviderFilter(strategy, lambda provider_id: provider_id not in BLACKLIST)


async def wait_until_running(clusters, timeout=600):
    """Until every instance of `clusters` runs (services that depend on them start next)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        instances = [i for c in clusters for i in c.instances]
        if instances and all(i.state == ServiceState.running for i in instances):
            return
        if loop.time() > deadline:
            raise TimeoutError("instances did not reach running in time")
        await asyncio.sleep(1)


def print_states(clusters):
    for cluster in clusters:
        for number, instance in enumerate(cluster.instances):
            name = cluster.service_class.__name__
            print(f"  {{name}}[{{number}}]: {{instance.state.value}} on {{instance.provider_name}}")


async def main():
    async with Golem(
        budget=BUDGET,
        subnet_tag=SUBNET,
        payment_driver=PAYMENT_DRIVER,
        payment_network=PAYMENT_NETWORK,
        strategy=make_strategy(),
    ) as golem:
        clusters = []
        # One VPN for the deployment (removed when the Golem exits), or none.
        network = await golem.create_network(NETWORK_CIDR) if NETWORK_CIDR else None
        try:
            # Start in waves: a service starts once everything it depends on is running.
            for wave in START_ORDER:
                started = []
                for service_class, instances, expiration_seconds, addresses in wave:
                    cluster = await golem.run_service(
                        service_class,
                        num_instances=instances,
                        expiration=datetime.now(timezone.utc)
                        + timedelta(seconds=expiration_seconds),
                        network=network,
                        network_addresses=addresses,
                    )
                    clusters.append(cluster)
                    started.append(cluster)
                await wait_until_running(started)
            print("all services running; Ctrl-C to stop")
            while True:
                print_states(clusters)
                await asyncio.sleep(10)
        finally:
            # Stop in reverse order, so dependents go before what they depend on.
            for cluster in reversed(clusters):
                cluster.stop()
            for _ in range(60):
                if all(i.state == ServiceState.terminated for c in clusters for i in c.instances):
                    break
                await asyncio.sleep(1)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("stopped")
'''


def export_source(manifest: Manifest, *, output: Path | None = None) -> str:
    """A readable, runnable yapapi 0.13 program with the manifest's services.

    `output` is where the program will be saved (to locate the manifest's folder from it);
    None means beside the manifest.
    """
    import os

    target_dir = output.resolve().parent if output is not None else manifest.folder.resolve()
    manifest_dir = Path(os.path.relpath(manifest.folder.resolve(), target_dir)).as_posix()
    missing = [
        "restart policies",
        "health checks (run, http and tcp probes)",
        "respawn_unstarted_instances",
        "local.mounts and local.image (local network only)",
        "forwarded ports (`ports`; yapapi's LocalHttpProxy can forward HTTP by hand)",
        "renewals and `lifetime` (services stop at `expiration`)",
    ]
    if manifest.payment.debit_note_interval or manifest.payment.payment_timeout:
        missing.append(
            "payment.debit_note_interval and payment.payment_timeout (yapapi negotiates its "
            "own: at least 60 s and 5 h, mid-agreement payments only for agreements of 5 h "
            "or more)"
        )
    plan = network_plan(manifest)
    if plan is None:
        vpn = "NETWORK_CIDR = None  # the deployment has no VPN\n"
    else:
        entries = "".join(f"    {name!r}: {ip!r},\n" for name, ip in plan.hosts.items())
        vpn = (
            "\n# The deployment's VPN; every instance keeps its address across restarts, and\n"
            "# these names resolve in every instance (sent with the deploy command).\n"
            f"NETWORK_CIDR = {plan.cidr!r}\n"
            f"HOSTS = {{\n{entries}}}\n"
        )
    parts = [
        _EXPORT_HEADER.format(
            name=manifest.name,
            manifest=manifest.path.name,
            script=output.name if output is not None else f"{manifest.name}.py",
            missing="\n".join(f"- {item}" for item in missing),
            manifest_dir=repr(manifest_dir),
            budget=repr(str(manifest.budget)),
            subnet=repr(manifest.subnet),
            driver=repr(manifest.payment.driver),
            network=repr(manifest.payment.network),
            blacklist=repr(set(manifest.market.blacklist))
            if manifest.market.blacklist
            else "set()",
            vpn=vpn,
        )
    ]
    names: dict[str, str] = {}
    for name, spec in manifest.services.items():
        cls_name = class_name(name)
        while cls_name in names.values():
            cls_name += "_"
        names[name] = cls_name
        parts.append(_export_class(cls_name, spec, manifest.folder, networked=plan is not None))
    waves = []
    for wave in manifest.start_order():
        entries = "".join(
            f"        ({names[n]}, {manifest.services[n].instances}, "
            f"{manifest.services[n].expiration!r}, "
            f"{list(plan.addresses[n]) if plan is not None else None!r}),\n"
            for n in wave
        )
        waves.append(f"    [\n{entries}    ],\n")
    parts.append(
        "\n\n# (service class, instances, expiration in seconds, network addresses), in waves\n"
        "# by depends_on\n"
        f"START_ORDER = [\n{''.join(waves)}]\n"
    )
    caps = manifest.market.max_price
    max_fixed = f"Decimal({str(caps.start)!r})" if caps.start is not None else 'Decimal("inf")'
    per_second = ""
    for counter, cap in (("CPU", caps.cpu_per_hour), ("TIME", caps.env_per_hour)):
        if cap is not None:
            per_second += f"            com.Counter.{counter}: Decimal({str(cap)!r}) / 3600,\n"
    parts.append(_EXPORT_MAIN.format(max_fixed=max_fixed, max_price_for=per_second))
    return "".join(parts)


def _export_class(cls_name: str, spec: ServiceSpec, folder: Path, *, networked: bool) -> str:
    p = spec.payload
    repo_args = [
        f"{key}={getattr(p, key)!r}"
        for key in ("image_hash", "image_tag", "image_url")
        if getattr(p, key) is not None
    ]
    repo_args += [
        f"min_mem_gib={p.min_mem_gib!r}",
        f"min_storage_gib={p.min_storage_gib!r}",
        f"min_cpu_threads={p.min_cpu_threads!r}",
    ]
    if p.capabilities:
        repo_args.append(f"capabilities={list(p.capabilities)!r}")
    lines = [
        "\n\n",
        f"class {cls_name}(Service):\n",
        f'    """Service {spec.name!r}: {spec.instances} instance(s)."""\n',
    ]
    if spec.env:
        lines += [
            "\n",
            "    # yapapi does not send a command's env to the provider; /usr/bin/env applies it\n",
            f"    ENV = {with_env((), spec.env)!r}\n",
        ]
    lines += [
        "\n",
        "    @staticmethod\n",
        "    async def get_payload():\n",
        "        return await vm.repo(\n",
        *(f"            {arg},\n" for arg in repo_args),
        "        )\n",
    ]
    if networked:
        lines += [
            "\n",
            "    def get_deploy_args(self):\n",
            "        # yapapi sends the network only; add the names of the other instances\n",
            "        args = super().get_deploy_args()\n",
            "        if args:\n",
            '            args["hosts"] = HOSTS\n',
            "        return args\n",
        ]
    if START_ENTRYPOINT in p.capabilities or spec.start:
        entrypoint = START_ENTRYPOINT in p.capabilities
        lines += [
            "\n",
            "    async def start(self):\n",
            "        # one batch: deploy, start the VM"
            + (" and its entrypoint" if entrypoint else "")
            + (", then the start steps\n" if spec.start else "\n"),
            "        script = self._ctx.new_script()\n",
            "        script.deploy(**self.get_deploy_args())\n",
            f"        script.start({START_ENTRYPOINT!r})\n"
            if entrypoint
            else "        script.start()\n",
            *_export_steps(spec.start, bool(spec.env), folder, indent=8, new=False),
            "        yield script\n",
        ]
    if spec.run.steps:
        lines += ["\n", "    async def run(self):\n", "        while True:\n"]
        lines += _export_steps(spec.run.steps, bool(spec.env), folder, indent=12)
        lines.append("            yield script\n")
        if spec.run.every is None:
            lines.append("            await asyncio.Event().wait()  # once; keep running\n")
        else:
            lines.append(f"            await asyncio.sleep({spec.run.every!r})\n")
    if spec.shutdown:
        lines += [
            "\n",
            "    async def shutdown(self):\n",
            *_export_steps(spec.shutdown, bool(spec.env), folder, indent=8),
            "        yield script\n",
        ]
    return "".join(lines)


def _export_steps(
    steps: tuple[Step, ...], env: bool, folder: Path, *, indent: int, new: bool = True
) -> list[str]:
    import os

    pad = " " * indent
    lines = [f"{pad}script = self._ctx.new_script()\n"] if new else []
    for step in steps:
        if isinstance(step, RunStep):
            args = ", ".join(repr(a) for a in step.argv)
            prefix = "*self.ENV, " if env else ""
            lines.append(f"{pad}script.run({prefix}{args})\n")
        elif isinstance(step, UploadStep):
            rel = Path(os.path.relpath(step.src, folder)).as_posix()
            lines.append(f"{pad}script.upload_file(str(MANIFEST_DIR / {rel!r}), {step.dst!r})\n")
        else:
            rel = Path(os.path.relpath(step.dst, folder)).as_posix()
            lines.append(f"{pad}script.download_file({step.src!r}, str(MANIFEST_DIR / {rel!r}))\n")
    return lines
