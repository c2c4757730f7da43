"""The pre-start: an activity's sandbox, started while yagna is still answering the create.

yagna answers the requestor's ``POST /activity`` only at its 750 ms look at the activity
(docs/localnet.md, "How fast activities start and end"), although the ExeUnit reports
Initialized within ~10 ms; so the ``deploy`` arrives ~0.75 s after the ExeUnit started.
Starting the sealed sandbox then (one init in new namespaces: ~0.04 s alone, 0.2-0.3 s
each when ten start at once on two cores) sat in every deployment's critical path, while
the machine idled for this activity during those 0.75 s. So right after Initialized,
:class:`Prestart` prepares the sandbox the deploy will most likely ask for:

* its root only when it is at hand without a download or an extraction
  (:func:`exeunit_image.resolve_cached`): a first download stays in deploy, with its
  progress events;
* the sandbox exactly as deploy builds it for a body without VPN ``hosts`` (no
  ``/etc/hosts`` file): a :class:`SandboxPlan`, which deploy computes too;
* sealed mode only, and not when a fault makes deploy slow on purpose (``slow_start``).

Deploy then takes what was prepared (:meth:`Prestart.take`) and adopts the sandbox when
its own plan is the same (:meth:`Prepared.adopt`); otherwise it closes it and builds its
own as it always did. A pre-start that failed is only logged (``no pre-start: ...``):
deploy does it again and reports any error itself. Nothing of the manifest runs before
deploy -- only our init -- and the deploy's env, VPN join, notices and limits notes are
deploy's as before.
Everything that ends the activity or its sandbox ends what was prepared, and releases its
image reference.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from golem_deploy.localnet import exeunit_image
from golem_deploy.localnet.limits import Limits
from golem_deploy.localnet.sandbox import (
    DEFAULT_LAYER_BYTES,
    Sandbox,
    namespaces_available,
    unsafe_host_exec_requested,
)

if TYPE_CHECKING:
    from golem_deploy.localnet.exeunit import ExeUnitConfig

log = logging.getLogger("golem_deploy.localnet.exeunit")

PRESTART_ENV = "GOLEM_DEPLOY_EXEUNIT_PRESTART"
"""Set to 0 to start sandboxes only at deploy, as before the pre-start (benchmarks' A/B)."""


@dataclass(frozen=True)
class SandboxPlan:
    """What an activity's sandbox is made of: equal plans build equal sandboxes."""

    root: exeunit_image.ResolvedRoot
    mounts: tuple[tuple[str, Path], ...]
    layer_bytes: int
    limits: Limits | None
    files: tuple[tuple[str, Path], ...]  # host files bound into it (the deploy's /etc/hosts)
    sealed: bool

    @classmethod
    def of(
        cls,
        config: ExeUnitConfig,
        root: exeunit_image.ResolvedRoot,
        files: dict[str, Path],
        *,
        sealed: bool,
    ) -> SandboxPlan:
        """The sandbox deploy builds for this activity, root and deploy's files."""
        limits = None
        if config.cpu_threads and config.mem_gib:
            limits = Limits(config.cpu_threads, int(config.mem_gib * 1024**3))
        storage = config.storage_gib
        return cls(
            root=root,
            mounts=tuple(sorted(config.mounts.items())),
            layer_bytes=int(storage * 1024**3) if storage else DEFAULT_LAYER_BYTES,
            limits=limits,
            files=tuple(sorted(files.items())),
            sealed=sealed,
        )

    def fits(self, other: SandboxPlan) -> bool:
        """Whether a sandbox built by ``other`` is this one (the root's notice aside)."""
        return self._key() == other._key()

    def _key(self) -> tuple[object, ...]:
        root = (self.root.rootfs, self.root.digest)
        return (root, self.mounts, self.layer_bytes, self.limits, self.files, self.sealed)

    def build(self, work_dir: Path) -> Sandbox:
        return Sandbox(
            work_dir,
            dict(self.mounts),
            isolate=None if self.sealed else False,
            rootfs=self.root.rootfs,
            layer_bytes=self.layer_bytes,
            limits=self.limits,
            files=dict(self.files),
        )


class Prepared:
    """A started sandbox nobody uses yet, and the image reference that goes with it."""

    def __init__(self, plan: SandboxPlan, sandbox: Sandbox, ended: anyio.Event) -> None:
        self.plan = plan
        self.sandbox = sandbox
        self._ended = ended  # its serve() returned: processes reaped, cgroups removed
        self._released = False

    def adopt(self, plan: SandboxPlan) -> Sandbox | None:
        """The sandbox, when ``plan`` (deploy's) would build the same one; else None. The
        caller holds its own image reference: this one's is released."""
        if not self.plan.fits(plan):
            return None
        self.release()
        return self.sandbox

    async def close(self) -> None:
        """End its processes and wait until it is gone (the next sandbox of the activity
        reuses its cgroup's name)."""
        with anyio.CancelScope(shield=True):
            await self.sandbox.close()
            with anyio.move_on_after(5):
                await self._ended.wait()
        self.release()

    def kill_now(self) -> None:
        self.sandbox.kill_now()
        self.release()

    def release(self) -> None:
        if not self._released:
            self._released = True
            exeunit_image.release(self.plan.root.digest)


def wanted(config: ExeUnitConfig) -> bool:
    """Whether this activity's sandbox may be started before its deploy."""
    return (
        os.environ.get(PRESTART_ENV) != "0"
        and not (config.unsafe_host_exec or unsafe_host_exec_requested())
        and not config.slow_start
        and namespaces_available()
    )


class Prestart:
    """The pre-start of one activity (see the module docstring): the ExeUnit calls
    :meth:`start` with its task group, deploy takes the result (:meth:`take`), and
    :meth:`discard` or :meth:`kill_now` end it."""

    def __init__(self, config: ExeUnitConfig) -> None:
        self._config = config
        self._began = False
        self._done = anyio.Event()
        self._prepared: Prepared | None = None
        self._dead = False  # the activity ended: whatever comes now is killed at once

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Begin preparing in ``tg`` (the ExeUnit's), if this activity wants it."""
        if wanted(self._config) and not self._began:
            self._began = True
            tg.start_soon(self._run, tg)

    async def _run(self, tg: anyio.abc.TaskGroup) -> None:
        root = None
        try:
            config = self._config
            root = await exeunit_image.resolve_cached(config.task_package, config.local_image)
            if root is None or self._dead:
                return
            plan = SandboxPlan.of(config, root, {}, sealed=True)
            sandbox = plan.build(config.work_dir)
            ended = anyio.Event()
            await tg.start(_serve, sandbox, ended)
            self._prepared = Prepared(plan, sandbox, ended)
            root = None  # the prepared sandbox holds the reference now
            if self._dead:
                self.kill_now()
        except Exception as exc:  # deploy does it again and reports what goes wrong
            log.info("activity %s: no pre-start: %s", self._config.activity_id, exc)
        finally:
            if root is not None:
                exeunit_image.release(root.digest)
            self._done.set()

    async def wait(self) -> Sandbox | None:
        """Wait until the pre-start is over: the sandbox it prepared, still unused, if any."""
        if self._began:
            await self._done.wait()
        return None if self._prepared is None else self._prepared.sandbox

    async def take(self) -> Prepared | None:
        """Wait until the pre-start is over; what it prepared is the caller's from now."""
        if not self._began:
            return None
        await self._done.wait()
        prepared, self._prepared = self._prepared, None
        return prepared

    async def discard(self) -> None:
        """Close what was prepared (after the pre-start is over: it is not interrupted)."""
        with anyio.CancelScope(shield=True):
            prepared = await self.take()
            if prepared is not None:
                await prepared.close()

    def kill_now(self) -> None:
        """SIGKILL what was prepared, synchronously (the activity vanished or ended). What
        the pre-start still makes is killed as it comes; nobody waits for it any more (its
        task may never run once the task group is cancelled)."""
        self._dead = True
        self._done.set()
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            prepared.kill_now()


async def _serve(
    sandbox: Sandbox,
    ended: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await sandbox.serve(task_status=task_status)
    finally:
        ended.set()
