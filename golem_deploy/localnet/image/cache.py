"""Fetch, verify, cache and extract payload images, as a Golem provider does.

A real provider downloads the ``.gvmi`` named by the demand's ``task_package`` when an
activity deploys, checks its sha3 against the hash in the package, and keeps it in a cache.
The local network does the same, once per image for every deployment of this user:

* **From where**: a loopback URL always; any other host only when the user sets
  ``GOLEM_DEPLOY_FETCH_IMAGES=1`` (the local network is offline by design; otherwise the
  sealed host root stands in and the deployment's log says so).
* **Where**: ``<golem-deploy state dir>/images/<digest>/`` holds the extracted tree
  (``rootfs/``) and the image's metadata (``config.json``); the ``.gvmi`` itself is not kept.
* **Size cap**: :data:`DEFAULT_MAX_BYTES` (env ``GOLEM_DEPLOY_IMAGE_CACHE_MB``); when an
  extraction makes the cache larger, the least recently used images go first (never one
  a running activity of this process uses).
* **Extraction** with ``unsquashfs`` (Debian's squashfs-tools): it reads every compressor
  gvmkit-build uses (gzip, lzo, lz4, xz, zstd), is maintained with the kernel's squashfs
  and is fast C; a pure-Python reader would need optional codec packages per compressor.
  As root the tree's owners are shifted into the sandboxes' dedicated uid range, so that
  root inside a sandbox owns the image's root-owned files, as in the VM.

Errors: an unreachable server (no network, DNS failure, connection refused, timeout) is
:class:`ImageUnreachable` -- the caller falls back to the sealed host root; an HTTP error,
a hash mismatch or a broken image is :class:`ImageError` -- deploy fails with its message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import anyio

from golem_deploy.localnet.image.gvmi import (
    ImageConfig,
    ImageError,
    TaskPackage,
    file_digest,
    read_config,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 8 * 1024**3
CHUNK = 256 * 1024

Progress = Callable[[int, int | None], None]
"""Called with (bytes downloaded so far, total bytes or None) while an image downloads."""


FETCH_ENV = "GOLEM_DEPLOY_FETCH_IMAGES"
"""Set to 1 to let the local network download images from hosts other than this machine."""


def may_download(url: str) -> bool:
    """Whether the local network may fetch ``url``: loopback always, anything else only when
    the user opted in. The local network is offline by design: `up` of a stranger's
    manifest must not make this machine contact the image registry (or any host it names)
    unasked; without the download the sealed host root stands in, and says so."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    return os.environ.get(FETCH_ENV) == "1"


class ImageUnreachable(ImageError):
    """The image's server cannot be reached at all (offline): not the image's fault."""


@dataclass(frozen=True)
class CachedImage:
    digest: str
    rootfs: Path
    config: ImageConfig


class ImageCache:
    """The shared image cache of one golem-deploy state directory."""

    def __init__(self, root: Path, max_bytes: int | None = None, id_shift: int = 0) -> None:
        self.root = root
        env_mb = os.environ.get("GOLEM_DEPLOY_IMAGE_CACHE_MB")
        self.max_bytes = max_bytes or (int(env_mb) * 1024**2 if env_mb else DEFAULT_MAX_BYTES)
        self.id_shift = id_shift  # added to every owner uid/gid of an extracted tree
        self.downloads = 0  # how many downloads this cache made (tests check reuse)
        self._locks: dict[str, anyio.Lock] = {}
        self._in_use: dict[str, int] = {}

    # ---- public ----

    async def fetch(self, package: TaskPackage, progress: Progress | None = None) -> CachedImage:
        """The image of ``package``: from the cache, or downloaded, verified and extracted."""
        if not package.digest:
            raise ImageUnreachable(f"image {package.url} has no hash to verify it by")
        async with self._lock(package.digest):
            cached = self._lookup(package.digest)
            if cached is not None:
                return cached
            if not may_download(package.url):
                raise ImageUnreachable(
                    f"{package.url} is not on this machine and the local network downloads "
                    f"images only with {FETCH_ENV}=1"
                )
            partial = self._partial(package.digest)
            try:
                await self._download(package, partial, progress)
                digest = await anyio.to_thread.run_sync(file_digest, partial, package)
                if digest != package.digest:
                    raise ImageError(
                        f"image hash mismatch: {package.url} has sha3 {digest}, "
                        f"the payload expects {package.digest}",
                        hint="fix image_hash (or image_url) of the payload",
                    )
                return await self._extract(partial, package.digest)
            finally:
                partial.unlink(missing_ok=True)

    async def load_file(self, path: Path, digest: str | None = None) -> CachedImage:
        """A ``.gvmi`` file on disk (``local.image``): cached by its sha3-224 like a download
        (``digest``: that hash, when the caller knows it already)."""
        if not path.is_file():
            raise ImageError(f"local image {path} does not exist", hint="fix local.image")
        if digest is None:
            digest = await anyio.to_thread.run_sync(file_digest, path)
        async with self._lock(digest):
            cached = self._lookup(digest)
            return cached if cached is not None else await self._extract(path, digest)

    def cached(self, digest: str) -> CachedImage | None:
        """The image if it is in the cache now (no download, no extraction); else None."""
        return self._lookup(digest)

    def acquire(self, digest: str) -> None:
        """A sandbox uses this image: never evict it meanwhile."""
        self._in_use[digest] = self._in_use.get(digest, 0) + 1

    def release(self, digest: str) -> None:
        self._in_use[digest] = max(0, self._in_use.get(digest, 0) - 1)

    # ---- steps ----

    def _lock(self, digest: str) -> anyio.Lock:
        return self._locks.setdefault(digest, anyio.Lock())

    def _partial(self, digest: str) -> Path:
        folder = self.root / ".partial"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder / f"{digest}.{os.getpid()}.gvmi"

    def _lookup(self, digest: str) -> CachedImage | None:
        entry = self.root / digest
        try:
            raw = json.loads((entry / "config.json").read_text())
        except (OSError, ValueError):
            return None
        os.utime(entry)  # least recently used goes first
        return CachedImage(digest, entry / "rootfs", ImageConfig.from_json(raw))

    async def _download(self, package: TaskPackage, into: Path, progress: Progress | None) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_read=60)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
                session.get(package.url) as response,
            ):
                if response.status >= 400:
                    raise ImageError(
                        f"image download failed: {package.url}: HTTP {response.status} "
                        f"{response.reason or ''}".rstrip()
                    )
                self.downloads += 1
                total = response.content_length
                done = 0
                with open(into, "wb") as out:
                    async for chunk in response.content.iter_chunked(CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        if done > self.max_bytes:
                            raise ImageError(
                                f"image download failed: {package.url} is larger than the "
                                f"image cache ({self.max_bytes // 1024**2} MB)",
                                hint="raise GOLEM_DEPLOY_IMAGE_CACHE_MB",
                            )
                        if progress is not None:
                            progress(done, total)
                if total is not None and done != total:
                    raise ImageError(
                        f"image download failed: {package.url}: got {done} of {total} bytes"
                    )
        except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise ImageUnreachable(f"{package.url} is not reachable: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise ImageError(f"image download failed: {package.url}: {exc}") from exc

    async def _extract(self, gvmi: Path, digest: str) -> CachedImage:
        config = await anyio.to_thread.run_sync(read_config, gvmi)
        if shutil.which("unsquashfs") is None:
            raise ImageError(
                "cannot unpack the image: unsquashfs is not installed",
                hint="install squashfs-tools (apt-get install squashfs-tools)",
            )
        staging = self.root / ".partial" / f"{digest}.{os.getpid()}.tree"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        rootfs = staging / "rootfs"
        started = time.monotonic()
        result = await anyio.run_process(
            # -no-xattrs: no file capabilities or security labels from a foreign image
            ["unsquashfs", "-no-progress", "-quiet", "-no-xattrs", "-d", str(rootfs), str(gvmi)],
            check=False,
        )
        if result.returncode != 0 or not rootfs.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
            detail = (result.stderr or result.stdout).decode(errors="replace").strip()
            raise ImageError(f"cannot unpack the image {digest[:8]}…: {detail[-300:]}")
        size = await anyio.to_thread.run_sync(self._settle_tree, rootfs)
        (staging / "config.json").write_text(json.dumps(config.to_json()))
        (staging / "size").write_text(str(size))
        entry = self.root / digest
        try:
            staging.rename(entry)
        except OSError:  # another process extracted it meanwhile: use theirs
            shutil.rmtree(staging, ignore_errors=True)
        log.info(
            "image %s extracted (%d bytes) in %.1f s", digest[:8], size, time.monotonic() - started
        )
        self.acquire(digest)  # not evicted by its own arrival
        try:
            await anyio.to_thread.run_sync(self._evict)
        finally:
            self.release(digest)
        cached = self._lookup(digest)
        if cached is None:
            raise ImageError(f"image {digest[:8]}… vanished from the cache")
        return cached

    def _settle_tree(self, rootfs: Path) -> int:
        """Shift owners into the sandbox id range (as root); return the tree's size."""
        size = 0
        for directory, dirs, files in os.walk(rootfs):
            for name in [*dirs, *files, ""]:
                path = os.path.join(directory, name) if name else directory
                info = os.lstat(path)
                size += info.st_size
                if self.id_shift and info.st_uid < 65536 and info.st_gid < 65536:
                    os.lchown(path, info.st_uid + self.id_shift, info.st_gid + self.id_shift)
                    if not os.path.islink(path) and info.st_mode & 0o6000:
                        os.chmod(path, info.st_mode & 0o7777)  # chown clears setuid bits
        return size

    def _evict(self) -> None:
        entries = []
        for entry in self.root.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                size = int((entry / "size").read_text())
            except (OSError, ValueError):
                continue
            entries.append((entry.stat().st_mtime, entry, size))
        total = sum(size for _, _, size in entries)
        for _, entry, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if self._in_use.get(entry.name):
                continue
            log.info("image cache over %d bytes: removing %s", self.max_bytes, entry.name[:8])
            doomed = entry.with_name(f".evicted-{entry.name}-{os.getpid()}")
            with contextlib.suppress(OSError):
                entry.rename(doomed)
                shutil.rmtree(doomed, ignore_errors=True)
                total -= size
