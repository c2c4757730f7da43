"""Script transfer steps with yapapi's names and semantics (issue 13 A.10): the commands
they build, and what their before/after hooks do against an in-process Storage that
writes what a provider would send. The real GFTP path is tests/integration/
test_engine_transfer.py."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from golem_deploy.engine import CaptureContext, ProgressArgs
from golem_deploy.engine.script import CommandResult, UploadSourceError
from golem_deploy.engine.service import WorkContext
from golem_deploy.engine.storage import TransferError, _chunk_request, _contiguous, _finish

pytestmark = pytest.mark.anyio


def script():  # type: ignore[no-untyped-def]
    ctx = WorkContext(activity_id="a", agreement_id="g", provider_id="p", provider_name="n")
    return ctx.new_script()


class ProviderSends:
    """A Storage standing in for the provider's side: a received file gets `content`."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.published: list[Path] = []

    async def publish_file(self, path: Path) -> tuple[str, Callable[[], Awaitable[None]]]:
        path.open("rb").close()
        self.published.append(path)
        return "gftp://node/file", _nothing

    async def receive_file(
        self, path: Path
    ) -> tuple[str, Callable[[], Awaitable[int]], Callable[[], Awaitable[None]]]:
        async def wait() -> int:
            path.write_bytes(self.content)
            return len(self.content)

        return "gftp://node/slot", wait, _nothing


async def _nothing() -> None:
    return None


OK = CommandResult(0, "transfer", 0)


def test_yapapi_keyword_names_and_progress_args() -> None:
    s = script()
    progress = ProgressArgs(updateInterval="1s")
    s.deploy(progress_args=progress, net=[])
    s.upload_bytes(data=b"x", dst_path="/golem/input/a", progress_args=progress)
    s.upload_file(src_path="/tmp/in.txt", dst_path="/golem/input/b")
    s.upload_json(data={"k": 1}, dst_path="/golem/input/c.json")
    s.download_file(src_path="/golem/output/o", dst_path="/tmp/o")
    s.download_bytes(src_path="/golem/output/o", on_download=None, limit=10)
    s.download_json(src_path="/golem/output/j", on_download=lambda data: None, limit=10)
    s.download_from_url(src_url="http://127.0.0.1:1/x.bin", dst_path="/golem/input/x.bin")
    commands = [st.command for st in s.steps]
    assert commands[0] == {"deploy": {"net": [], "progress": {"updateInterval": "1s"}}}
    assert commands[1] == {
        "transfer": {
            "from": "",
            "to": "container:/golem/input/a",
            "progress": {"updateInterval": "1s"},
        }
    }
    assert commands[4]["transfer"]["from"] == "container:/golem/output/o"
    assert commands[7] == {
        "transfer": {"from": "http://127.0.0.1:1/x.bin", "to": "container:/golem/input/x.bin"}
    }
    assert s.steps[7].before is None  # the provider fetches it: nothing is published here


def test_run_takes_yapapis_capture_contexts() -> None:
    s = script()
    s.run("/bin/date")
    s.run(
        "/bin/date",
        stdout=CaptureContext.build(mode="all"),
        stderr=CaptureContext.build("tail", 64),
    )
    s.run("/bin/date", stdout=CaptureContext.build("stream", limit=5, fmt="str"))
    assert [st.command["run"]["capture"] for st in s.steps] == [
        {"stdout": {"stream": {}}, "stderr": {"stream": {}}},
        {"stdout": {"atEnd": {}}, "stderr": {"atEnd": {"tail": 64}}},
        {"stdout": {"stream": {"stream": 5, "format": "str"}}, "stderr": {"stream": {}}},
    ]
    with pytest.raises(ValueError, match="Invalid output capture mode"):
        CaptureContext.build("everything")


async def test_upload_file_is_read_when_the_script_executes(tmp_path: Path) -> None:
    src = tmp_path / "late.txt"
    s = script()
    s.upload_file(src, "/golem/input/late.txt")  # does not exist yet: fine until execution
    [step] = s.steps
    assert step.before is not None
    storage = ProviderSends(b"")
    with pytest.raises(UploadSourceError, match=r"cannot read .*late\.txt for upload"):
        await step.before(storage)  # type: ignore[arg-type]
    src.write_text("now it does")
    await step.before(storage)  # type: ignore[arg-type]
    assert storage.published == [src]
    assert step.command["transfer"]["from"] == "gftp://node/file"


async def test_download_bytes_over_the_limit_is_cut_as_yapapi_does() -> None:
    got: list[bytes] = []
    s = script()
    future = s.download_bytes("/golem/output/big", got.append, limit=4)
    [step] = s.steps
    assert step.before is not None and step.after is not None
    await step.before(ProviderSends(b"0123456789"))  # type: ignore[arg-type]
    await step.after(OK)
    assert got == [b"0123"]
    for release in step.cleanup:  # the scratch file goes with the step
        await release()
    assert not future.done()  # the executor sets it after `after`


async def test_download_json_parses_and_download_file_lands_whole(tmp_path: Path) -> None:
    seen: list[object] = []

    async def keep(data: object) -> None:
        seen.append(data)

    s = script()
    s.download_json("/golem/output/j", keep)
    s.download_file("/golem/output/o", tmp_path / "deep" / "o.txt")
    storage = ProviderSends(b'{"a": [1, 2]}')
    for step in s.steps:
        assert step.before is not None and step.after is not None
        await step.before(storage)  # type: ignore[arg-type]
        await step.after(OK)
    assert seen == [{"a": [1, 2]}]
    assert (tmp_path / "deep" / "o.txt").read_bytes() == b'{"a": [1, 2]}'


def test_received_chunks_must_cover_the_file() -> None:
    assert _contiguous({0: 10, 10: 5}) == 15
    assert _contiguous({}) == 0
    with pytest.raises(TransferError, match="gap or overlap at byte 12"):
        _contiguous({0: 10, 12: 5})
    assert _chunk_request({"offset": 30, "size": 40960}, 50) == (30, 20)
    with pytest.raises(ValueError, match="outside"):
        _chunk_request({"offset": 51, "size": 1}, 50)


def test_a_finished_upload_is_checked_then_renamed(tmp_path: Path) -> None:
    import os

    part, final = tmp_path / ".f.part", tmp_path / "f"
    part.write_bytes(b"payload")
    fd = os.open(part, os.O_RDONLY)
    try:
        with pytest.raises(TransferError, match="hash mismatch"):
            _finish(fd, part, final, hashlib.sha3_256(b"other").hexdigest())
        assert not final.exists()
        _finish(fd, part, final, hashlib.sha3_256(b"payload").hexdigest().upper())
    finally:
        os.close(fd)
    assert final.read_bytes() == b"payload" and not part.exists()
