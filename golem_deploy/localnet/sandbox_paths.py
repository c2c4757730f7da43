"""Paths between the host and a sandbox's volumes, safe against the activity racing us.

The ExeUnit's transfers read files from the sandbox (``container:/golem/output/x``) and
write files into it. Root inside the sandbox can change its volumes while the host works on
them: a file checked a moment ago could be a symlink to a host file now. So transfers walk a
volume one component at a time, never following a symlink (``O_NOFOLLOW``), and files the
host delivers belong to root inside (as root: the sandbox's uid range).

:func:`normalize_path` normalises a container path; :class:`SandboxPaths` maps and moves.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from golem_deploy.errors import GolemDeployError

VOLUMES = ("work", "input", "output", "resource")
"""The directories every activity gets under /golem."""


class SandboxError(GolemDeployError):
    """The sandbox could not be created, or a path would leave it (golem_deploy.localnet.
    sandbox exports it; it lives here so that both modules raise the same class)."""


class SandboxPaths:
    """The volumes of one sandbox (``root``/work, ...) and its read-only mounts."""

    def __init__(
        self, root: Path, mounts: Mapping[str, Path], owner: tuple[int, int] | None
    ) -> None:
        self.root = root
        self.mounts = mounts
        self.owner = owner

    def host_path(self, container_path: str, *, write: bool) -> Path:
        """The host file behind a path inside the sandbox; refuses paths that leave it.

        Writable: the four /golem volumes. Readable additionally: the read-only mounts.
        """
        path = normalize_path(container_path)
        candidates: list[tuple[str, Path]] = [(f"/golem/{sub}", self.root / sub) for sub in VOLUMES]
        if not write:
            candidates += list(self.mounts.items())
        best: tuple[str, Path] | None = None
        for prefix, host in candidates:
            if (path == prefix or path.startswith(prefix + "/")) and (
                best is None or len(prefix) > len(best[0])
            ):
                best = (prefix, host)
        if best is None:
            where = "a /golem/{work,input,output,resource} path"
            if not write and self.mounts:
                where += " or a local mount (" + ", ".join(sorted(self.mounts)) + ")"
            raise SandboxError(f"{container_path} is outside the sandbox; use {where}")
        prefix, host_root = best
        relative = path[len(prefix) :].lstrip("/")
        resolved = (host_root / relative).resolve()
        root = host_root.resolve()
        if resolved != root and root not in resolved.parents:
            raise SandboxError(f"{container_path} leaves the sandbox (via a symlink)")
        return resolved

    # The sandbox's root can change its volumes while the host works on them: a file checked
    # by host_path() could be a symlink to a host file a moment later. Transfers therefore
    # walk a volume one component at a time, never following a symlink (O_NOFOLLOW).

    def copy_out(self, container_path: str, into: Path) -> None:
        """Copy a file of the sandbox (volume or read-only mount) to the host file ``into``."""
        path = normalize_path(container_path)
        volume = self._volume_of(path)
        if volume is None:  # a read-only mount: host content the sandbox cannot change
            fd = os.open(self.host_path(path, write=False), os.O_RDONLY | os.O_CLOEXEC)
        else:
            parent, name = self._walk(container_path, volume, create=False)
            try:
                fd = self._open_at(container_path, name, os.O_RDONLY, parent)
            finally:
                os.close(parent)
        with os.fdopen(fd, "rb") as source, open(into, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)

    def deliver(self, data: Path, container_path: str) -> None:
        """Move the host file ``data`` into a volume at ``container_path`` (owned by root
        inside), creating missing directories."""
        path = normalize_path(container_path)
        volume = self._volume_of(path)
        self.host_path(path, write=True)  # refuses what is not in a volume, with the reason
        assert volume is not None
        parent, name = self._walk(container_path, volume, create=True)
        try:
            if not name:
                raise SandboxError(f"{container_path} is a directory")
            os.replace(data, name, dst_dir_fd=parent)
            if self.owner is not None:
                os.chown(name, *self.owner, dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(parent)

    def _volume_of(self, path: str) -> str | None:
        """The volume (/golem/work, ...) ``path`` is in, unless a mount inside it is closer."""
        for sub in VOLUMES:
            prefix = f"/golem/{sub}"
            if path == prefix or path.startswith(prefix + "/"):
                nested = [m for m in self.mounts if m == path or path.startswith(m + "/")]
                return None if any(len(m) > len(prefix) for m in nested) else sub
        return None

    def _walk(self, container_path: str, volume: str, *, create: bool) -> tuple[int, str]:
        """(fd of the parent directory, last name) of a path in a volume, no symlinks."""
        parts = normalize_path(container_path).split("/")[3:]
        fd = os.open(self.root / volume, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                        if self.owner is not None:
                            os.chown(part, *self.owner, dir_fd=fd, follow_symlinks=False)
                child = self._open_at(container_path, part, os.O_RDONLY | os.O_DIRECTORY, fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd, parts[-1] if parts else ""

    @staticmethod
    def _open_at(container_path: str, name: str, flags: int, dir_fd: int) -> int:
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise SandboxError(f"{container_path} leaves the sandbox (via a symlink)") from exc
            raise


def normalize_path(path: str) -> str:
    """Normalise an absolute container path (no '..' tricks, no trailing slash)."""
    pure = PurePosixPath(path)
    if not pure.is_absolute():
        raise SandboxError(f"container path {path!r} must be absolute")
    parts: list[str] = []
    for part in pure.parts[1:]:
        if part == "..":
            if not parts:
                raise SandboxError(f"container path {path!r} leaves the file system root")
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/" + "/".join(parts)
