"""The payload's real image: fetched like a provider does, verified, cached, used as root.

A small real ``.gvmi`` is built at test time (host binaries + their libraries, squashed,
gvmkit-build metadata appended) and served from a loopback HTTP server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from _gvmi import MARKER, Gvmi, build_gvmi, mksquashfs_available, serve_files
from test_exeunit_direct import READY, exec_payload, with_exeunit
from test_exeunit_escape import sh

from golem_deploy.localnet import LocalNetInfo, exeunit_image
from golem_deploy.localnet.exeunit import ExeUnit
from golem_deploy.localnet.image import (
    ImageCache,
    ImageConfig,
    ImageError,
    ImageUnreachable,
    TaskPackage,
)
from golem_deploy.localnet.sandbox import Sandbox, namespaces_available, sandbox_owner

pytestmark = pytest.mark.skipif(
    not (mksquashfs_available() and namespaces_available() and sys.platform == "linux"),
    reason="needs squashfs-tools and Linux namespaces",
)

CONFIG = ImageConfig(env={"FROM_IMAGE": "yes"}, workdir="/app", volumes=("/golem/work", "/data"))


@pytest.fixture(scope="module")
def gvmi(tmp_path_factory: pytest.TempPathFactory) -> Gvmi:
    return build_gvmi(tmp_path_factory.mktemp("gvmi"), CONFIG)


def new_cache(tmp_path: Path) -> ImageCache:
    owner = sandbox_owner()
    return ImageCache(tmp_path / "images", id_shift=0 if owner is None else owner[0])


async def in_image(
    tmp_path: Path,
    cache: ImageCache,
    package: TaskPackage,
    body: Callable[[Sandbox], Awaitable[None]],
) -> None:
    cached = await cache.fetch(package)
    rootfs = exeunit_image._rootfs(cached.rootfs, cached.config, "test image")
    async with anyio.create_task_group() as tg:
        sandbox = Sandbox(tmp_path / f"act-{len(os.listdir(tmp_path))}", rootfs=rootfs)
        await tg.start(sandbox.serve)
        try:
            await body(sandbox)
        finally:
            await sandbox.close()


def test_commands_see_the_image_and_not_the_host_and_the_cache_is_reused(
    tmp_path: Path, gvmi: Gvmi
) -> None:
    cache = new_cache(tmp_path)

    async def first(sandbox: Sandbox) -> None:
        code, out = await sh(
            sandbox,
            "cat /etc/image-marker; pwd; echo $FROM_IMAGE; ls /data && echo data-ok; "
            "ls /usr/bin/python3 2>&1 || echo no-host-python; "  # one pipe: lines in order
            "echo changed > /etc/image-marker && cat /etc/image-marker; "
            "touch /new-at-the-root && echo root-owns-slash",
        )
        assert code == 0, out
        assert out.splitlines() == [
            MARKER,
            "/app",  # the image's WorkingDir
            "yes",  # the image's Env
            "data-ok",  # the image's volumes exist
            *[line for line in out.splitlines() if "python3" in line],
            "no-host-python",
            "changed",  # the root is writable: a private layer over the image
            "root-owns-slash",  # ... also / itself, as in the VM
        ]

    async def second(sandbox: Sandbox) -> None:
        # The writable layer was private to the first activity: the image is unchanged.
        assert await sh(sandbox, "cat /etc/image-marker") == (0, MARKER + "\n")

    async def main() -> None:
        async with serve_files({"img.gvmi": gvmi.path}) as server:
            package = TaskPackage(gvmi.digest, server.url("img.gvmi"))
            await in_image(tmp_path, cache, package, first)
            await in_image(tmp_path, cache, package, second)
            assert server.hits == {"img.gvmi": 1} and cache.downloads == 1
        # Cached by hash: a new cache object on the same folder needs no server at all.
        again = new_cache(tmp_path)
        await in_image(tmp_path, again, package, second)
        assert again.downloads == 0

    # A provider process with umask 077 (a 0700 state dir) must not make the image unusable.
    umask = os.umask(0o077)
    try:
        anyio.run(main)
    finally:
        os.umask(umask)
    assert not list((tmp_path / "images" / ".partial").iterdir())  # nothing half-made left


def test_hash_mismatch_404_and_offline_fail_clearly(tmp_path: Path, gvmi: Gvmi) -> None:
    cache = new_cache(tmp_path)

    async def main() -> None:
        async with serve_files({"img.gvmi": gvmi.path}) as server:
            wrong = TaskPackage("0" * 56, server.url("img.gvmi"))
            with pytest.raises(ImageError, match="image hash mismatch: .* has sha3 " + gvmi.digest):
                await cache.fetch(wrong)
            missing = TaskPackage(gvmi.digest, server.url("missing.gvmi"))
            with pytest.raises(ImageError, match="HTTP 404"):
                await cache.fetch(missing)
            closed_port = server.url("img.gvmi").replace(server.base, "http://127.0.0.1:9")
        with pytest.raises(ImageUnreachable):
            await cache.fetch(TaskPackage(gvmi.digest, closed_port))
        assert not (tmp_path / "images" / gvmi.digest).exists()

    anyio.run(main)


def test_unreachable_image_falls_back_to_the_sealed_host_root(tmp_path: Path) -> None:
    package = f"hash:sha3:{'ab' * 28}:http://127.0.0.1:9/img.gvmi"

    async def main() -> None:
        resolved = await exeunit_image.resolve_root(package, None, None)
        assert resolved.rootfs.image is None and resolved.digest is None
        assert resolved.notice == (
            "image abababab… not reachable offline: using the sealed host root"
        )

    anyio.run(main)


@pytest.mark.localnet
def test_deploy_downloads_with_progress_and_fails_with_the_providers_reason(
    shared_localnet: LocalNetInfo, tmp_path: Path, gvmi: Gvmi
) -> None:
    """Through the ExeUnit's bus API: what a requestor sees of deploy and its image."""

    async def main() -> None:
        async with serve_files({"img.gvmi": gvmi.path}) as server:
            good = f"hash:sha3:{gvmi.digest}:{server.url('img.gvmi')}"
            # Another hash (the good one is cached by now: a cached image needs no server).
            missing = f"hash:sha3:{'1' * 56}:{server.url('missing.gvmi')}"

            async def deploys(unit: ExeUnit, call: Callable[..., Awaitable[Any]]) -> None:
                me = unit.config.activity_id
                deploy = {"deploy": {"progress": {"updateInterval": None, "updateStep": 1}}}
                marker = {
                    "run": {
                        "entry_point": "/bin/cat",
                        "args": ["/etc/image-marker"],
                        "capture": {"stdout": {"atEnd": {}}},
                    }
                }
                await call("Exec", exec_payload(unit, "b1", [deploy, READY[1], marker]))
                results = await call(
                    "GetExecBatchResults",
                    {"activityId": me, "batchId": "b1", "commandIndex": None, "timeout": 20.0},
                )
                assert [r["result"] for r in results["Ok"]] == ["Ok"] * 3, results
                assert results["Ok"][2]["stdout"] == MARKER + "\n"
                progress = [
                    e["kind"]["progress"]
                    for e in unit._batches["b1"].events
                    if "progress" in e["kind"]
                ]
                assert progress and progress[-1]["progress"] == [gvmi.size, gvmi.size]
                assert progress[-1]["unit"] == "Bytes"

            async def fails(unit: ExeUnit, call: Callable[..., Awaitable[Any]]) -> None:
                me = unit.config.activity_id
                await call("Exec", exec_payload(unit, "b1", [{"deploy": {}}]))
                results = await call(
                    "GetExecBatchResults",
                    {"activityId": me, "batchId": "b1", "commandIndex": None, "timeout": 20.0},
                )
                (only,) = results["Ok"]
                assert only["result"] == "Error"
                assert only["message"].startswith("deploy failed: image download failed: ")
                assert "HTTP 404" in only["message"]

            await anyio.to_thread.run_sync(
                lambda: with_exeunit(shared_localnet, tmp_path, deploys, task_package=good)
            )
            await anyio.to_thread.run_sync(
                lambda: with_exeunit(shared_localnet, tmp_path, fails, task_package=missing)
            )

    anyio.run(main)


def test_device_nodes_an_image_brings_open_nothing(tmp_path: Path) -> None:
    """A hostile image may carry device nodes (a disk, /dev/mem): the image is mounted
    nodev, so even root inside cannot open them. A harmless one stands in for the test."""
    tree = tmp_path / "build" / "tree"
    tree.mkdir(parents=True)
    os.mknod(tree / "disk", 0o20666, os.makedev(1, 3))  # the null device's numbers
    image = build_gvmi(tmp_path / "build", CONFIG)
    cache = new_cache(tmp_path)

    async def body(sandbox: Sandbox) -> None:
        _, out = await sh(sandbox, "ls -l /disk; echo x > /disk && echo opened")
        assert out.startswith("c") and "opened" not in out, out
        assert "Permission denied" in out

    async def main() -> None:
        async with serve_files({"img.gvmi": image.path}) as server:
            await in_image(tmp_path, cache, TaskPackage(image.digest, server.url("img.gvmi")), body)

    anyio.run(main)


@pytest.mark.localnet
def test_start_entrypoint_runs_the_images_entrypoint_as_the_vm_does(
    shared_localnet: LocalNetInfo, tmp_path: Path, gvmi: Gvmi
) -> None:
    """`start` with the "start-entrypoint" argument (the capability of that name) starts
    the image's Entrypoint + Cmd in the background; an image without one fails the start
    with ya-runtime-vm's own message."""
    script = "echo from-entrypoint > /golem/work/ep; exec sleep 60"
    config = ImageConfig(entrypoint=("/bin/sh", "-c"), cmd=(script,), volumes=("/golem/work",))
    with_entrypoint = build_gvmi(tmp_path / "ep", config)
    start = {"start": {"args": ["start-entrypoint"]}}
    # The entrypoint runs beside this command: wait (bounded) for the file it writes.
    wait_for_file = (
        "i=0; while [ ! -f /golem/work/ep ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done;"
        " cat /golem/work/ep"
    )
    capture = {"stdout": {"atEnd": {}}}
    read_it = {"run": {"entry_point": "/bin/sh", "args": ["-c", wait_for_file], "capture": capture}}

    async def results(unit: ExeUnit, call: Callable[..., Awaitable[Any]]) -> list[Any]:
        me = unit.config.activity_id
        await call("Exec", exec_payload(unit, "b1", [{"deploy": {}}, start, read_it]))
        answer = await call(
            "GetExecBatchResults",
            {"activityId": me, "batchId": "b1", "commandIndex": None, "timeout": 30.0},
        )
        return list(answer["Ok"])

    async def runs(unit: ExeUnit, call: Callable[..., Awaitable[Any]]) -> None:
        got = await results(unit, call)
        assert [r["result"] for r in got] == ["Ok", "Ok", "Ok"], got
        assert got[2]["stdout"] == "from-entrypoint\n"

    async def refused(unit: ExeUnit, call: Callable[..., Awaitable[Any]]) -> None:
        got = await results(unit, call)
        assert [r["result"] for r in got[:2]] == ["Ok", "Error"], got
        assert "does not define an entrypoint" in got[1]["message"]

    with_exeunit(shared_localnet, tmp_path, runs, local_image=with_entrypoint.path)
    with_exeunit(shared_localnet, tmp_path, refused, local_image=gvmi.path)
