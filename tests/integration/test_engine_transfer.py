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
from _gvmi import serve_files

from golem_deploy.engine import CaptureContext, CommandFailed, Service, ServiceState
from golem_deploy.engine.payload import VmPayload
from golem_deploy.localnet import LocalNetInfo

pytestmark = [pytest.mark.localnet, pytest.mark.anyio]


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
        # (the local network's one-time "not reachable offline" note may come first)
        [conf] = [line for line in out.splitlines() if line.startswith("{")]
        assert json.loads(conf) == {"greeting": "hi"}
        assert str(len(BIG)) in out
        assert (tmp_path / "back.bin").read_bytes() == BIG
        assert inst.downloaded_json == [{"greeting": "hi"}]  # type: ignore[attr-defined]
        cluster.stop()
        with anyio.fail_after(60):
            await cluster.wait_finished()


BIG3 = bytes(range(251)) * (3 * 1024 * 1024 // 251)  # ~3 MB: about 77 gftp chunks


class YapapiTransfers(Service):
    """yapapi's transfer names and semantics (issue 13 A.10), as a ported program uses them."""

    workdir: Path
    web_url: str

    @staticmethod
    async def get_payload() -> VmPayload:
        return await _payload()

    async def start(self) -> AsyncIterator[Any]:
        async for script in super().start():
            yield script
        src = self.workdir / "late.bin"
        head: list[bytes] = []

        async def keep(data: bytes) -> None:
            head.append(data)

        script = self._ctx.new_script()
        script.upload_file(src_path=str(src), dst_path="/golem/work/late.bin")
        size = script.run(
            "/bin/sh", "-c", "wc -c < /golem/work/late.bin", stdout=CaptureContext.build("all")
        )
        script.download_from_url(src_url=self.web_url, dst_path="/golem/work/web.txt")
        web = script.run("/bin/cat", "/golem/work/web.txt")
        script.download_bytes(src_path="/golem/work/late.bin", on_download=keep, limit=100)
        script.download_file(src_path="/golem/work/late.bin", dst_path=str(self.workdir / "back"))
        src.write_bytes(BIG3)  # after upload_file: read when the script executes, as yapapi
        yield script
        self.sizes = [(await size).stdout, (await web).stdout, head]

        self.unreadable = []
        for path in (self.workdir / "never-written.bin", self.workdir):  # missing, a folder
            script = self._ctx.new_script()
            script.upload_file(path, "/golem/work/x.bin")
            try:
                yield script
            except CommandFailed as e:  # a BatchError the handler may catch, as in yapapi
                self.unreadable.append(str(e))


async def test_yapapi_transfer_names_streaming_and_download_from_url(
    shared_localnet: LocalNetInfo, tmp_path: Path
) -> None:
    YapapiTransfers.workdir = tmp_path
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.txt").write_text("served on loopback\n")
    async with serve_files({"page.txt": site / "page.txt"}) as server:
        YapapiTransfers.web_url = server.url("page.txt")
        rec = Recorder()
        async with golem_for(shared_localnet, rec) as golem:
            cluster = await golem.run_service(YapapiTransfers, num_instances=1)
            await wait_for(
                lambda: (
                    cluster.instances[0].state not in (ServiceState.pending, ServiceState.starting)
                ),
                90,
                "start with transfers done",
            )
            [inst] = cluster.instances
            assert inst.state is ServiceState.running, inst.snapshot().reason
            size, web, head = inst.sizes  # type: ignore[attr-defined]
            assert size.strip() == str(len(BIG3))
            assert web == "served on loopback\n" and server.hits == {"page.txt": 1}
            assert head == [BIG3[:100]]  # over the limit: cut, as yapapi does
            assert (tmp_path / "back").read_bytes() == BIG3
            missing, folder = inst.unreadable  # type: ignore[attr-defined]
            assert "never-written.bin for upload: No such file or directory" in missing
            assert f"cannot read {tmp_path} for upload: not a regular file" in folder
            assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
            cluster.stop()
            with anyio.fail_after(60):
                await cluster.wait_finished()
