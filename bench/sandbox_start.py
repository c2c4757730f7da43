"""Activity start time: sealed sandbox vs the unsealed one, and image extraction time.

    .venv/bin/python bench/sandbox_start.py [--rounds 10] [--image-mb 50]

What a `deploy` + `start` + first command costs in the ExeUnit, without yagna (the bus and
REST round trips are the same in every variant):

- start_before_ms:       the sandbox of commit d9629bc (mount + pid namespace, host root),
                         loaded from git history -- "today's" start before issue 11
- start_unsealed_ms:     --unsafe-host-exec (no namespaces at all)
- start_host_root_ms:    sealed, the sealed host root (offline stand-in)
- start_image_cached_ms: sealed, in an image already in the cache (the usual case)
- image_cold_s:          first deploy of a new image: download from loopback, sha3, unpack
- extract_s:             unsquashfs + owner shift of the same image alone
- image_mb:              size of that image (random data: incompressible, the worst case)

Each start is: create the sandbox, run `/bin/sh -c "exit 0"` in it, close it.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from _common import REPO, emit, isolate, load_average, stats
from _gvmi import build_gvmi, serve_files

from golem_deploy.localnet.image import ImageCache, ImageConfig, TaskPackage
from golem_deploy.localnet.rootfs import RootFs
from golem_deploy.localnet.sandbox import Sandbox, sandbox_owner

BEFORE = "d9629bc"


def old_sandbox_class(scratch: Path) -> Any:
    """The Sandbox class as it was before sealing (None if git history is not there)."""
    folder = scratch / "before"
    folder.mkdir()
    for name in ("sandbox.py", "exeunit_init.py"):
        shown = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{BEFORE}:golem_deploy/localnet/{name}"],
            capture_output=True,
        )
        if shown.returncode != 0:
            return None
        (folder / name).write_bytes(shown.stdout)
    spec = importlib.util.spec_from_file_location("sandbox_before", folder / "sandbox.py")
    assert spec is not None and spec.loader is not None
    module: types.ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Sandbox


async def one_start(make: Callable[[Path], Any], work: Path) -> float:
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        sandbox = make(work)
        await tg.start(sandbox.serve)
        said: list[bytes] = []

        async def keep(chunk: bytes) -> None:
            said.append(chunk)

        code = await sandbox.run(["/bin/sh", "-c", "exit 0"], on_stdout=keep, on_stderr=keep)
        await sandbox.close()
    assert code == 0, (code, b"".join(said))
    return (time.perf_counter() - started) * 1000


def measure(make: Callable[[Path], Any], scratch: Path, rounds: int) -> dict[str, Any]:
    samples = []
    for i in range(rounds + 1):
        work = scratch / f"act-{time.monotonic_ns()}"
        elapsed = anyio.run(one_start, make, work)
        shutil.rmtree(work, ignore_errors=True)
        if i:  # the first round warms caches, untimed
            samples.append(elapsed)
    return stats(samples, digits=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--image-mb", type=int, default=50)
    args = parser.parse_args()
    result: dict[str, Any] = {"isolated_netns": isolate(), "load_before": load_average()}
    scratch = Path(tempfile.mkdtemp(prefix="gd-bench-sandbox-"))
    try:
        before = old_sandbox_class(scratch)
        if before is not None:
            result["start_before_ms"] = measure(lambda w: before(w), scratch, args.rounds)
        result["start_unsealed_ms"] = measure(
            lambda w: Sandbox(w, isolate=False), scratch, args.rounds
        )
        result["start_host_root_ms"] = measure(lambda w: Sandbox(w), scratch, args.rounds)

        image_dir = scratch / "image"
        (image_dir / "tree").mkdir(parents=True)  # build_gvmi squashes image_dir/tree
        filler = image_dir / "tree" / "filler"  # random bytes: squashfs cannot compress them
        filler.write_bytes(os.urandom(args.image_mb * 1024 * 1024))
        gvmi = build_gvmi(image_dir, ImageConfig(workdir="/golem/work"))
        result["image_mb"] = round(gvmi.size / 1024**2, 1)
        owner = sandbox_owner()
        shift = 0 if owner is None else owner[0]

        async def cold() -> tuple[float, RootFs]:
            cache = ImageCache(scratch / "images", id_shift=shift)
            async with serve_files({"i.gvmi": gvmi.path}) as server:
                started = time.perf_counter()
                cached = await cache.fetch(TaskPackage(gvmi.digest, server.url("i.gvmi")))
                elapsed = time.perf_counter() - started
            return elapsed, RootFs(image=cached.rootfs, workdir="/golem/work")

        elapsed, rootfs = anyio.run(cold)
        result["image_cold_s"] = round(elapsed, 2)
        result["start_image_cached_ms"] = measure(
            lambda w: Sandbox(w, rootfs=rootfs), scratch, args.rounds
        )

        async def extract_only() -> float:
            cache = ImageCache(scratch / "images-2", id_shift=shift)
            started = time.perf_counter()
            await cache.load_file(gvmi.path)
            return time.perf_counter() - started

        hashing = time.perf_counter()
        hashlib.sha3_224(gvmi.path.read_bytes()).hexdigest()
        hash_s = time.perf_counter() - hashing
        result["extract_s"] = round(anyio.run(extract_only) - hash_s, 2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["load_after"] = load_average()
    emit(result)


if __name__ == "__main__":
    main()
