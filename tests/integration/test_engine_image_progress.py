"""A starting instance shows how far its image download is (issue 11: "starting (image
45 %, 12 MB/s)" in status).

The provider's ExeUnit reports the deploy's download as `progress` runtime events when the
deploy command asks for them; the engine asks whenever the offer says the provider sends
them, and keeps the latest figures in the instance's snapshot until the deploy ends. The
image server here sends half the image, then waits for the test: the snapshot is read
while the download is provably half done, with no timing guesswork.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from _engine_helpers import Recorder, golem_for, wait_for
from _gvmi import build_gvmi, mksquashfs_available, serve_app
from aiohttp import web

from golem_deploy.engine import Service, ServiceState, vm
from golem_deploy.engine.payload import VmPayload
from golem_deploy.localnet import LocalNetInfo
from golem_deploy.localnet.image import ImageConfig

pytestmark = [
    pytest.mark.localnet,
    pytest.mark.skipif(not mksquashfs_available(), reason="needs squashfs-tools"),
]


@asynccontextmanager
async def half_then_wait(image: Path, gate: anyio.Event) -> AsyncIterator[str]:
    """Serves `image`: its first half at once, the rest once `gate` is set."""
    data = image.read_bytes()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        await gate.wait()
        await response.write(data[len(data) // 2 :])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/image.gvmi", handler)
    async with serve_app(app) as base:
        try:
            yield f"{base}/image.gvmi"
        finally:
            gate.set()  # a handler still waiting must end before the server can


def test_a_starting_instance_reports_its_image_download(localnet: object, tmp_path: Path) -> None:
    # An image no cache has seen: a random file makes its hash unique.
    (tmp_path / "tree" / "etc").mkdir(parents=True)
    (tmp_path / "tree" / "etc" / "unique").write_bytes(os.urandom(64))
    image = build_gvmi(tmp_path, ImageConfig(workdir="/golem/work"))
    info: LocalNetInfo = localnet(providers=1)  # type: ignore[operator]

    async def main() -> None:
        gate = anyio.Event()
        async with half_then_wait(image.path, gate) as url:

            class Imaged(Service):
                @staticmethod
                async def get_payload() -> VmPayload:
                    return await vm.repo(image_hash=image.digest, image_url=url)

            async with golem_for(info, Recorder()) as golem:
                cluster = await golem.run_service(Imaged, num_instances=1)
                instance = cluster.instances[0]
                await wait_for(
                    lambda: instance.snapshot().download is not None, 60, "a download report"
                )
                snap = instance.snapshot()
                assert snap.state is ServiceState.starting
                assert snap.download is not None
                assert snap.download.total == image.size
                assert 0 < snap.download.done < image.size
                gate.set()
                await wait_for(lambda: instance.state is ServiceState.running, 60, "running")
                assert instance.snapshot().download is None  # the deploy is over
                cluster.stop()

    anyio.run(main)
