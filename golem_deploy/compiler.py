"""Manifest -> Service classes: the bridge from the declarative file to the Services API.

`compile_manifest(manifest)` returns one generated `Service` subclass per service, named
after it (`simple-service` -> `SimpleService`), exactly as a yapapi user would have written
it by hand: `get_payload()` builds the VM payload with `vm.repo(...)`, `start()` deploys and
starts the VM and then runs the manifest's start steps, `run()` repeats its steps every
`run.every`, `shutdown()` runs the shutdown steps. The engine and supervisor read the class
attributes `spec`, `restart` and `healthcheck`.

Why generate classes instead of interpreting the manifest inside the engine: the engine then
has a single way to run services (the yapapi-shaped API, which is also its public library
API), and `golem-deploy export` can print the very same classes as Python source.

The manifest's `env` is applied by wrapping every command as
`/usr/bin/env K=V ... argv` -- portable to real VMs, where an ExeScript `run` has no env.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import anyio

from golem_deploy.engine import Service, vm
from golem_deploy.engine.service import Script
from golem_deploy.errors import GolemDeployError
from golem_deploy.manifest.model import (
    DownloadStep,
    Healthcheck,
    Manifest,
    RestartPolicy,
    RunStep,
    ServiceSpec,
    Step,
    UploadStep,
)

__all__ = ["CompileError", "ManifestService", "class_name", "compile_manifest", "with_env"]


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
    restart: ClassVar[RestartPolicy]
    healthcheck: ClassVar[Healthcheck | None]
    local_mounts: ClassVar[Mapping[str, Path]] = {}

    @classmethod
    async def _payload(cls) -> Any:
        p = cls.spec.payload
        payload = await vm.repo(
            image_hash=p.image_hash,
            image_url=p.image_url,
            image_tag=p.image_tag,
            min_mem_gib=p.min_mem_gib,
            min_storage_gib=p.min_storage_gib,
            min_cpu_threads=p.min_cpu_threads,
            capabilities=list(p.capabilities),
        )
        if cls.local_mounts:
            payload = payload.with_local_mounts(cls.local_mounts)
        return payload

    def _script(self, steps: tuple[Step, ...]) -> Script:
        """One script running `steps` in order (env applied to every command)."""
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
        """Deploy and start the VM, then the manifest's start steps."""
        async for script in super().start():
            yield script
        if self.spec.start:
            yield self._script(self.spec.start)

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


def compile_manifest(manifest: Manifest, *, local: bool = False) -> dict[str, type[Service]]:
    """One generated Service subclass per service, in manifest order.

    With `local=True` the payload also carries the `golem_deploy.local.mounts` demand
    property (read only by the embedded local network's provider).
    """
    classes: dict[str, type[Service]] = {}
    taken: set[str] = set()
    for name, spec in manifest.services.items():
        cls_name = class_name(name)
        suffix = 2
        while cls_name in taken:
            cls_name, suffix = f"{class_name(name)}{suffix}", suffix + 1
        taken.add(cls_name)
        classes[name] = _compile_service(cls_name, spec, manifest.folder, local=local)
    return classes


def _compile_service(cls_name: str, spec: ServiceSpec, folder: Path, *, local: bool) -> type:
    _check_local_paths(spec, folder)
    healthcheck = spec.healthcheck
    if healthcheck is not None:
        wrapped = RunStep(with_env(healthcheck.run.argv, spec.env), healthcheck.run.shell)
        healthcheck = dataclasses.replace(healthcheck, run=wrapped)

    async def get_payload() -> Any:
        return await cls._payload()

    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": cls_name,
        "__doc__": f"Service {spec.name!r} generated from the manifest.",
        "spec": spec,
        "restart": spec.restart,
        "healthcheck": healthcheck,
        "local_mounts": dict(spec.mounts) if local else {},
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
