"""Uploads and downloads over GFTP, published through yagna's gsb-api (as golem-js does),
fetched by the local provider's ExeUnit from gftp://<requestor node>/<id>."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _engine_helpers import Recorder, _payload, golem_for, wait_for

from golem_deploy.engine import Service, ServiceState
from golem_deploy.engine.payload import VmPayload
from golem_deploy.localnet import LocalNetInfo

pytestmark = [pytest.mark.localnet, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


BIG = bytes(range(256)) * 1000  # 256 kB: several 40 KiB gftp chunks


class TransferService(Service):
    workdir: Path

    @staticmethod
    async def get_payload() -> VmPayload:
        return await _payload()

    async def start(self) -> AsyncIterator[Any]:
        async for script in super().start():
            yield script
        src = self.workdir / "big.bin"
        src.write_bytes(BIG)
        script = self._ctx.new_script()
        script.upload_file(src, "/golem/work/big.bin")
        script.upload_json({"greeting": "hi"}, "/golem/work/conf.json")
        script.run("/bin/sh", "-c", "cat /golem/work/conf.json; echo; wc -c < /golem/work/big.bin")
        script.run("/bin/sh", "-c", "cp /golem/work/big.bin /golem/work/copy.bin")
        script.download_file("/golem/work/copy.bin", self.workdir / "back.bin")
        got: list[Any] = []

        async def keep(data: Any) -> None:
            got.append(data)

        script.download_json("/golem/work/conf.json", keep)
        yield script
        self.downloaded_json = got


async def test_upload_and_download_round_trip(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    TransferService.workdir = tmp_path
    rec = Recorder()
    async with golem_for(shared_localnet, rec) as golem:
        cluster = await golem.run_service(TransferService, num_instances=1)
        await wait_for(
            lambda: (
                cluster.instances[0].state is not ServiceState.pending
                and cluster.instances[0].state is not ServiceState.starting
            ),
            90,
            "start with transfers done",
        )
        [inst] = cluster.instances
        assert inst.state is ServiceState.running, inst.snapshot().reason
        out = rec.output(0)
        assert json.loads(out.splitlines()[0]) == {"greeting": "hi"}
        assert str(len(BIG)) in out
        assert (tmp_path / "back.bin").read_bytes() == BIG
        assert inst.downloaded_json == [{"greeting": "hi"}]  # type: ignore[attr-defined]
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()
