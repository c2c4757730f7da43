"""What the ExeUnit's ``deploy`` does with the payload's image (see :mod:`image`).

Picks the activity's root file system, in this order:

1. ``local.image`` (``golem_deploy.local.image`` in the demand): a ``.gvmi`` file on disk
   (cached by its hash like a download) or an already extracted directory;
2. the demand's ``golem.srv.comp.task_package``: downloaded (with progress events when the
   deploy command asks for them), verified, cached and extracted once per hash;
3. the *sealed host root* when the image cannot be reached (offline) or the demand names
   none -- said once per image and process (a deployment's private local network is one
   process, so once per deployment): ``image d646d7b9… not reachable offline: using the
   sealed host root``.

A download that fails with an HTTP error, a hash mismatch or a broken image fails deploy
with that reason (:class:`ImageError`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from golem_deploy import paths
from golem_deploy.localnet.image import (
    ImageCache,
    ImageConfig,
    ImageError,
    ImageUnreachable,
    TaskPackage,
    parse_task_package,
)
from golem_deploy.localnet.image.cache import may_download
from golem_deploy.localnet.image.gvmi import file_digest
from golem_deploy.localnet.rootfs import HOST_ROOT, RootFs
from golem_deploy.localnet.sandbox import sandbox_owner

log = logging.getLogger(__name__)

_caches: dict[Path, ImageCache] = {}
_said: set[str] = set()  # notices already logged by this process


def image_cache() -> ImageCache:
    """The image cache of the current state directory (one per process and directory)."""
    root = paths.home() / "images"
    if root not in _caches:
        owner = sandbox_owner()
        _caches[root] = ImageCache(root, id_shift=0 if owner is None else owner[0])
    return _caches[root]


@dataclass(frozen=True)
class ResolvedRoot:
    rootfs: RootFs
    digest: str | None = None  # the cached image in use (released when the sandbox ends)
    notice: str | None = None  # what the user should know (offline stand-in)
    first_notice: bool = False  # the first time this process says it (show it to the user)


class ProgressThrottle:
    """Turns download callbacks into ``progress`` events at the pace the requestor asked.

    The deploy command's ``progress`` argument: ``updateInterval`` (humantime: "300ms",
    "1s") and/or ``updateStep`` (bytes). With neither, one event per second. The last
    event (download complete) is always sent.
    """

    def __init__(self, args: Any, emit: Callable[[dict[str, Any]], None]) -> None:
        args = args if isinstance(args, dict) else {}
        self.interval = parse_duration(args.get("updateInterval"))
        step = args.get("updateStep")
        self.step = int(step) if isinstance(step, int | float) and step > 0 else None
        if self.interval is None and self.step is None:
            self.interval = 1.0
        self._emit = emit
        self._last_time = 0.0
        self._last_bytes = 0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        due = (self.interval is not None and now - self._last_time >= self.interval) or (
            self.step is not None and done - self._last_bytes >= self.step
        )
        if due or (total is not None and done >= total):
            self._last_time, self._last_bytes = now, done
            self._emit(
                {
                    "progress": {
                        "step": [0, 1],
                        "message": None,
                        "progress": [done, total],
                        "unit": "Bytes",
                    }
                }
            )


_DURATION_RE = re.compile(r"^\s*([0-9.]+)\s*(ms|s|m|h)?\s*$")


def parse_duration(value: Any) -> float | None:
    """Seconds of a humantime string such as "300ms", "1s", "2m" (None when absent/bad)."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    match = _DURATION_RE.match(value)
    if match is None:
        return None
    factor = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]
    return float(match.group(1)) * factor


def _rootfs(path: Path, config: ImageConfig, label: str) -> RootFs:
    return RootFs(
        image=path,
        env=dict(config.env),
        workdir=config.workdir,
        entrypoint=config.entrypoint,
        cmd=config.cmd,
        volumes=config.volumes,
        label=label,
    )


async def resolve_root(
    task_package: str | None,
    local_image: Path | None,
    progress: Callable[[int, int | None], None] | None,
) -> ResolvedRoot:
    """The root file system for a deploy (see the module docstring); raises ImageError."""
    cache = image_cache()
    if local_image is not None:
        if local_image.is_dir():
            return ResolvedRoot(RootFs(image=local_image.resolve(), label=str(local_image)))
        known = await local_digest(local_image) if local_image.is_file() else None
        cached = await cache.load_file(local_image, known)
        cache.acquire(cached.digest)
        return ResolvedRoot(_rootfs(cached.rootfs, cached.config, str(local_image)), cached.digest)
    if not task_package:
        return ResolvedRoot(HOST_ROOT)
    package = parse_task_package(task_package)
    try:
        cached = await cache.fetch(package, progress)
    except ImageUnreachable as exc:
        notice = _offline_notice(package)
        first = package.digest not in _said
        if first:
            _said.add(package.digest)
            log.warning("%s (%s)", notice, exc)
        return ResolvedRoot(HOST_ROOT, notice=notice, first_notice=first)
    cache.acquire(cached.digest)
    return ResolvedRoot(
        _rootfs(cached.rootfs, cached.config, f"image {package.short}"), cached.digest
    )


async def resolve_cached(task_package: str | None, local_image: Path | None) -> ResolvedRoot | None:
    """The root :func:`resolve_root` would pick, if it is at hand without any download or
    extraction (an extracted or cached image, the sealed host root); None otherwise, and
    for anything resolve_root would fail on (deploy then does it, and says why).

    For the offline stand-in the result carries its ``notice``: deploy must still call
    resolve_root then, which says it (once per image and process) and logs it. A result
    with an image digest holds a reference to it (:func:`release` it)."""
    cache = image_cache()
    if local_image is not None:
        if local_image.is_dir():
            return ResolvedRoot(RootFs(image=local_image.resolve(), label=str(local_image)))
        if not local_image.is_file():
            return None
        digest = await local_digest(local_image)
        cached = cache.cached(digest)
        if cached is None:
            return None
        cache.acquire(digest)
        return ResolvedRoot(_rootfs(cached.rootfs, cached.config, str(local_image)), digest)
    if not task_package:
        return ResolvedRoot(HOST_ROOT)
    try:
        package = parse_task_package(task_package)
    except ImageError:
        return None
    if package.digest:
        cached = cache.cached(package.digest)
        if cached is not None:
            cache.acquire(package.digest)
            return ResolvedRoot(
                _rootfs(cached.rootfs, cached.config, f"image {package.short}"), package.digest
            )
        if may_download(package.url):
            return None  # a download: deploy's, with its progress events
    return ResolvedRoot(HOST_ROOT, notice=_offline_notice(package))


_digests: dict[tuple[int, int, int, int], str] = {}
_hashing: dict[tuple[int, int, int, int], anyio.Lock] = {}


async def local_digest(path: Path) -> str:
    """sha3-224 of a ``local.image`` file, hashed once per version of the file and process
    (the pre-starts of N activities of that image, then their deploys, ask for it)."""
    info = path.stat()
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    async with _hashing.setdefault(key, anyio.Lock()):
        if key not in _digests:
            _digests[key] = await anyio.to_thread.run_sync(file_digest, path)
    return _digests[key]


def _offline_notice(package: TaskPackage) -> str:
    return f"image {package.short} not reachable offline: using the sealed host root"


def acquire(digest: str | None) -> None:
    """One more sandbox uses this image (never evicted meanwhile)."""
    if digest is not None:
        image_cache().acquire(digest)


def release(digest: str | None) -> None:
    """The sandbox that used this image ended."""
    if digest is not None:
        image_cache().release(digest)


__all__ = [
    "HOST_ROOT",
    "ImageError",
    "ProgressThrottle",
    "ResolvedRoot",
    "acquire",
    "image_cache",
    "parse_duration",
    "release",
    "resolve_cached",
    "resolve_root",
]
