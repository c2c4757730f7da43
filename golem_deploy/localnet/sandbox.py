"""Where an activity's commands run: a sealed sandbox per activity, like a small VM.

A Golem VM gives every activity its own machine: the payload's image as root file system,
/golem/work, /golem/input, /golem/output and /golem/resource, no view of the provider's
host. Locally each activity gets a *sandbox* that seals it the same way:

* **Sealed mode** (the default; Linux, as root or with unprivileged user namespaces):
  one long-lived init process per activity (:mod:`exeunit_init`) owns new user, mount, pid,
  network, ipc and uts namespaces. Its root file system is the image (or, offline, the
  sealed host root -- :mod:`rootfs`) with a private writable layer; /golem/* are the
  activity's private directories; ``local.mounts`` appear read-only at their container
  paths; no other host path exists inside; the network is ``lo`` only; uid 0 inside is an
  unprivileged id outside. The init starts each command inside, on the ExeUnit's request
  (:mod:`sandbox_control`); background processes a command leaves behind keep running until
  the activity ends; ending the init ends every process of the activity -- the kernel
  guarantees it. Where sealing is impossible, creating the sandbox fails with one clear
  message: nothing runs unsealed unless asked for.
* **Unsafe host mode** (``isolate=False``, the ``--unsafe-host-exec`` opt-out): today's old
  behaviour, commands run as the invoking user in the private work directory with
  ``GOLEM_WORK``/``GOLEM_INPUT``/``GOLEM_OUTPUT``/``GOLEM_RESOURCE`` pointing at the
  private directories; :attr:`Sandbox.limitations` says what that means.

Commands are exec'd directly (argv as given, never through a shell unless argv[0] is one),
so arguments with ``;``, ``$(...)``, quotes or newlines arrive unchanged.

This module creates and ends the sandbox (directories, the init process); running commands
and measuring their CPU is :mod:`sandbox_commands` (a base class of :class:`Sandbox`), the
paths inside it :mod:`sandbox_paths`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.abc

from golem_deploy.localnet import spawn
from golem_deploy.localnet.limits import CgroupLimits, Limits
from golem_deploy.localnet.rootfs import HOST_ROOT, RootFs, host_root_entries
from golem_deploy.localnet.sandbox_commands import (
    INIT_COMMAND,
    CommandTimeout,
    SandboxCommands,
    drain_and_close,
    read_stat,
)
from golem_deploy.localnet.sandbox_control import InitControl
from golem_deploy.localnet.sandbox_paths import VOLUMES, SandboxError, SandboxPaths, normalize_path

__all__ = [
    "DEFAULT_LAYER_BYTES",
    "SANDBOX_ID_BASE",
    "UNSAFE_HOST_EXEC_ENV",
    "VOLUMES",
    "CommandTimeout",
    "Sandbox",
    "SandboxError",
    "namespaces_available",
    "sandbox_owner",
    "unsafe_host_exec_requested",
]

log = logging.getLogger(__name__)

SANDBOX_ID_BASE = 0x70000000
"""As root: host uid/gid of root inside every sandbox (see exeunit_init.SANDBOX_ID_BASE)."""

UNSAFE_HOST_EXEC_ENV = "GOLEM_DEPLOY_UNSAFE_HOST_EXEC"
"""Set to 1 (by ``golem-deploy up --unsafe-host-exec``; inherited by the local network's
processes): activities run unsealed on the host."""


def unsafe_host_exec_requested() -> bool:
    return os.environ.get(UNSAFE_HOST_EXEC_ENV) == "1"


DEFAULT_LAYER_BYTES = 2 * 1024**3
"""Size of the private writable layer when the agreement names no storage (2 GiB, the
default storage a local provider reserves)."""

UNSEALED_HINT = (
    "run as root, or allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0,"
    " and kernel.unprivileged_userns_clone=1 where it exists); --unsafe-host-exec runs the"
    " commands unsealed on this host instead (only for manifests you trust)"
)


def namespaces_available() -> bool:
    """Whether sealed mode can be tried here (the real test is starting the init)."""
    return (
        sys.platform == "linux"
        and shutil.which("unshare") is not None
        and shutil.which("nsenter") is not None
    )


def sandbox_owner() -> tuple[int, int] | None:
    """Host uid/gid of root inside a sandbox; None as an ordinary user (then: our own ids)."""
    return (SANDBOX_ID_BASE, SANDBOX_ID_BASE) if os.geteuid() == 0 else None


class Sandbox(SandboxCommands):
    """The private file system and process space of one activity.

    Lifecycle: ``await task_group.start(sandbox.serve)`` creates it (directories, the init
    process); :meth:`run` runs commands; :meth:`close` (or :meth:`kill_now` in an emergency)
    ends every process; ``serve`` returns afterwards.
    """

    def __init__(
        self,
        work_dir: Path,
        mounts: Mapping[str, Path] | None = None,
        *,
        isolate: bool | None = None,
        rootfs: RootFs = HOST_ROOT,
        layer_bytes: int = DEFAULT_LAYER_BYTES,
        limits: Limits | None = None,
        files: Mapping[str, Path] | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.root = work_dir / "golem"
        self.mounts = {normalize_path(k): Path(v).resolve() for k, v in (mounts or {}).items()}
        # Host files root inside may rewrite in place, as a VM's root can (the deploy's
        # /etc/hosts: golem-deploy points names at a renewed instance's new address).
        self.files = {normalize_path(k): Path(v).resolve() for k, v in (files or {}).items()}
        self._want_isolation = isolate is not False  # False: the explicit unsafe opt-out
        self.rootfs = rootfs
        self.layer_bytes = layer_bytes
        self.owner = sandbox_owner() if self._want_isolation else None
        self._cgroups = None if limits is None else CgroupLimits(work_dir.name, limits)
        self.limits_note: str | None = None  # why the agreement's limits are not enforced
        self._paths = SandboxPaths(self.root, self.mounts, self.owner)
        self.isolated = False
        self.limitations: str | None = None
        self._init: anyio.abc.Process | None = None
        self._init_pid: int | None = None  # pid 1 of the namespace, as the host sees it
        self._control: InitControl | None = None  # how commands reach the init
        self._reaping: anyio.Event | None = None  # set once the init is reaped
        self._groups: set[int] = set()  # process groups of commands (fallback cleanup)
        self._commands = 0
        self._cpu_finished = 0.0  # exact CPU time of commands that ended (from wait4)
        self._tg: anyio.abc.TaskGroup | None = None
        self._drainers: list[anyio.Event] = []  # output pipes held by background processes
        self._closed = anyio.Event()

    # ---- lifecycle ----

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Create the sandbox, then keep it (and output drainers) alive until closed."""
        for sub in VOLUMES:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for directory in (self.root, *(self.root / sub for sub in VOLUMES)):
            self.adopt(directory)
        if self._cgroups is not None:
            reason = self._cgroups.create()
            if reason is not None:
                self._cgroups = None
                self.limits_note = f"CPU and memory limits not enforced: {reason}"
        for host_file in self.files.values():
            self.adopt(host_file)
        for container_path, host_path in self.mounts.items():
            if not host_path.exists():
                raise SandboxError(
                    f"local mount {container_path}: {host_path} does not exist",
                    hint="fix the path under `local.mounts` in the manifest",
                )
        try:
            if self._want_isolation:
                if not namespaces_available():
                    raise SandboxError(
                        "cannot seal the activity: Linux namespaces (util-linux unshare and "
                        "nsenter) are not available here",
                        hint=UNSEALED_HINT,
                    )
                try:
                    await self._start_init()
                except SandboxError as exc:
                    raise SandboxError(
                        f"cannot seal the activity: {exc}", hint=UNSEALED_HINT
                    ) from exc
            else:
                self.limitations = (
                    "UNSAFE: --unsafe-host-exec: commands run unsealed as "
                    f"uid {os.geteuid()} on this host's file system and network, in the "
                    "activity's work dir with GOLEM_WORK, GOLEM_INPUT, GOLEM_OUTPUT, "
                    "GOLEM_RESOURCE set: absolute /golem/... paths and local.mounts at their "
                    "container paths are not available, and background processes that leave "
                    "their process group are not tracked"
                )
                log.warning("sandbox %s: %s", self.work_dir, self.limitations)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self._control is not None:
                    tg.start_soon(self._control.listen)
                task_status.started()
                await self._closed.wait()
                # The processes are dead: let the drainers see EOF, so pipes close cleanly.
                with anyio.move_on_after(1):
                    for drained in self._drainers:
                        await drained.wait()
                tg.cancel_scope.cancel()
        finally:
            self.kill_now()
            with anyio.CancelScope(shield=True):
                await self._reap_init()
                await self._remove_cgroups()

    async def _remove_cgroups(self) -> None:
        """Killed processes leave their cgroup once the kernel reaped them: retry a moment."""
        if self._cgroups is None:
            return
        with anyio.move_on_after(2):
            while not self._cgroups.remove():
                await anyio.sleep(0.02)

    async def close(self) -> None:
        """End every process of the activity (idempotent)."""
        self.kill_now()
        self._closed.set()
        with anyio.CancelScope(shield=True):
            await self._reap_init()

    def kill_now(self) -> None:
        """SIGKILL every process of the activity, synchronously (for a vanishing provider)."""
        self._closed.set()
        if self._init is not None and self._init.returncode is None:
            # The init's death makes the kernel kill its whole pid namespace; unshare
            # exits once its child is reaped, which is after every process of the
            # namespace is gone -- so close() waiting for unshare means they are all gone.
            # Without the init's pid yet, killing unshare ends it (--kill-child).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._init_pid or self._init.pid, signal.SIGKILL)
        for group in list(self._groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)

    async def _reap_init(self) -> None:
        """Wait for the init to end and close its pipes, once (close() and serve() both ask)."""
        init = self._init
        if init is None:
            return
        if self._reaping is not None:
            await self._reaping.wait()
            return
        self._reaping = anyio.Event()
        try:
            with anyio.move_on_after(5):
                await init.wait()
            if self._control is not None:
                self._control.close()
            for stream in (init.stdout, init.stderr):
                if stream is not None:
                    await drain_and_close(stream)
        finally:
            self._reaping.set()

    @property
    def netns(self) -> Path | None:
        """The activity's network namespace (for the VPN's TAP device), when sealed.

        As root it belongs to the host's user namespace, so the host can add an interface
        to it (setns + TUNSETIFF, `nsenter --net=`) while root inside cannot change it.
        """
        if not self.isolated or self._init_pid is None:
            return None
        return Path(f"/proc/{self._init_pid}/ns/net")

    def adopt(self, path: Path) -> None:
        """Give a file the host made in a volume to root inside the sandbox (as root only:
        otherwise root inside could not change what a transfer delivered)."""
        if self.owner is not None:
            with contextlib.suppress(OSError):
                os.lchown(path, *self.owner)

    def _init_spec(self) -> dict[str, object]:
        new_root = self.work_dir / "rootfs"
        layer = self.work_dir / "layer"
        for directory in (new_root, layer):
            directory.mkdir(parents=True, exist_ok=True)
        image = self.rootfs.image
        return {
            "new_root": str(new_root),
            "layer": str(layer),
            "layer_bytes": self.layer_bytes,
            "image": None if image is None else str(image),
            "host": [] if image is not None else host_root_entries(),
            "golem": str(self.root),
            "mounts": [[c, str(h)] for c, h in self.mounts.items()],
            "files": [[c, str(h)] for c, h in self.files.items()],
            "workdir": self.rootfs.workdir or "/golem/work",
            "volumes": [v for v in self.rootfs.volumes if v.startswith("/")],
            "owner": None if self.owner is None else list(self.owner),
            "map_base": None if self.owner is None else self.owner[0],
        }

    async def _start_init(self) -> None:
        unshare = ["unshare", "--mount", "--pid", "--net", "--ipc", "--uts"]
        unshare += ["--fork", "--kill-child"]
        if os.geteuid() != 0:
            unshare += ["--user", "--map-root-user"]
        spec = self._init_spec()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await spawn.open_process(  # no fork() of this big process: spawn.py
                [*unshare, "--", *INIT_COMMAND, json.dumps(spec)],
                stdin=theirs.fileno(),  # the command channel (sandbox_control)
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._init = process
        self._control = InitControl(ours)
        assert process.stdout is not None and process.stderr is not None
        line = b""
        with anyio.move_on_after(10):
            while not line.endswith(b"\n"):
                try:
                    line += await process.stdout.receive(1)
                except anyio.EndOfStream:
                    break
        if line.strip() != b"ready":
            err = b""
            with anyio.move_on_after(1), contextlib.suppress(anyio.EndOfStream):
                err = await process.stderr.receive()
            self.kill_now()
            await self._reap_init()
            self._init = None
            self._control = None
            self._reaping = None
            self._closed = anyio.Event()
            text = (line + err).decode(errors="replace").strip() or "init did not start"
            raise SandboxError(text.removeprefix("error: "))
        self._init_pid = _only_child(process.pid)
        self.isolated = True
        if self._cgroups is not None:  # the init's children, i.e. every command, inherit them
            reason = self._cgroups.join(self._init_pid)
            if reason is not None:
                self.limits_note = f"CPU and memory limits not enforced: {reason}"

    # ---- paths (see sandbox_paths) ----

    def host_path(self, path: str, *, write: bool) -> Path:
        """The host file behind a path inside the sandbox; refuses paths that leave it."""
        return self._paths.host_path(path, write=write)

    def copy_out(self, path: str, into: Path) -> None:
        """Copy a file of the sandbox (volume or read-only mount) to the host file ``into``."""
        self._paths.copy_out(path, into)

    def deliver(self, data: Path, path: str) -> None:
        """Move the host file ``data`` into a volume at ``path`` (owned by root inside)."""
        self._paths.deliver(data, path)


def _only_child(pid: int) -> int:
    """The pid of ``pid``'s single child (unshare's forked child: the namespace's init)."""
    children = f"/proc/{pid}/task/{pid}/children"  # one small file, where the kernel has it
    with contextlib.suppress(OSError, ValueError, IndexError), open(children, "rb") as listing:
        return int(listing.read().split()[0])
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None and stat[1] == pid:
                return int(entry)
    raise SandboxError("the sandbox init process disappeared")
