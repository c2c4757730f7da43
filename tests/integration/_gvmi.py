"""Real ``.gvmi`` images made at test time, and a loopback HTTP server that serves them.

An image here is a handful of the host's binaries plus the shared libraries ``ldd`` names,
squashed by ``mksquashfs`` (Debian's squashfs-tools, which tests/conftest.py installs before
the suite goes offline) with gvmkit-build's metadata appended -- the same layout a provider
downloads from the registry.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from golem_deploy.localnet.image import ImageConfig, metadata_trailer

TOOLS = (
    *("sh", "bash", "cat", "ls", "id", "echo", "mount", "kill", "sleep", "touch", "env"),
    *("tr", "wc", "mkdir", "cp", "rm", "stat", "date"),
)
"""Enough for the tests' scripts (and yapapi's hello_service: echo, sh, tr)."""
MARKER = "built-by-the-gvmi-test-helper"


@dataclass(frozen=True)
class Gvmi:
    path: Path
    digest: str  # sha3-224 of the whole file

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def install_squashfs_tools() -> None:
    """Give the image tests mksquashfs/unsquashfs (Debian's squashfs-tools).

    The local network unpacks payload images with unsquashfs, and the image tests build a
    real .gvmi with mksquashfs. Once the session is inside the loopback-only namespace no
    package mirror is reachable, so it is installed (as root, with apt) before entering it.
    Without it the image tests skip with a reason (and the benchmarks stop with one).
    """
    if shutil.which("mksquashfs") and shutil.which("unsquashfs"):
        return
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "squashfs-tools"]
    try:
        if subprocess.run(install, env=env, capture_output=True, timeout=300).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
            subprocess.run(install, env=env, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError):
        return


def mksquashfs_available() -> bool:
    return shutil.which("mksquashfs") is not None and shutil.which("unsquashfs") is not None


def build_gvmi(where: Path, config: ImageConfig, tools: tuple[str, ...] = TOOLS) -> Gvmi:
    """Squash ``tools`` (from the host's PATH) and their libraries into ``where/image.gvmi``."""
    tree = where / "tree"
    for sub in ("bin", "etc", "tmp", "root", "proc", "dev"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "image-marker").write_text(MARKER + "\n")
    (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    libraries: set[str] = set()
    for tool in tools:
        found = shutil.which(tool)
        assert found is not None, f"the test image needs {tool} on the host"
        real = Path(found).resolve()
        shutil.copy2(real, tree / "bin" / tool)
        ldd = subprocess.run(["ldd", str(real)], capture_output=True, text=True).stdout
        libraries.update(re.findall(r"(/\S+\.so[.\d]*)", ldd))
    for library in libraries:
        target = tree / library.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(library).resolve(), target)
    squash = where / "image.squashfs"
    subprocess.run(
        ["mksquashfs", str(tree), str(squash), "-noappend", "-quiet", "-no-progress"],
        check=True,
        capture_output=True,
    )
    gvmi = where / "image.gvmi"
    gvmi.write_bytes(squash.read_bytes() + metadata_trailer(config))
    squash.unlink()
    return Gvmi(gvmi, hashlib.sha3_224(gvmi.read_bytes()).hexdigest())


@dataclass
class ImageServer:
    """Serves files on 127.0.0.1 and counts the requests for each path."""

    base: str
    hits: dict[str, int]

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


@asynccontextmanager
async def serve_files(files: dict[str, Path]) -> AsyncIterator[ImageServer]:
    """``GET /<name>`` answers the file (404 for any other name)."""
    hits: dict[str, int] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        hits[name] = hits.get(name, 0) + 1
        if name not in files:
            raise web.HTTPNotFound()
        return web.FileResponse(files[name])

    app = web.Application()
    app.router.add_get("/{name}", handler)
    async with serve_app(app) as base:
        yield ImageServer(base, hits)


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on a free port of 127.0.0.1; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
