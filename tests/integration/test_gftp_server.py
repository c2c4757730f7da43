"""The local network's `gftp server` speaks yagna gftp's JSON-RPC over stdio, as yapapi expects.

The happy path with yapapi itself (publish, receive, the ExeUnit transferring both ways) is
tests/integration/test_localnet_yapapi.py; this drives the launcher directly for what yapapi
never shows: answers to bad requests, same content -> same URL, close, shutdown.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from golem_deploy.localnet import LocalNetInfo

pytestmark = pytest.mark.localnet


class Gftp:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        assert answer["id"] == self.next_id
        return dict(answer)


@pytest.fixture
def gftp(shared_localnet: LocalNetInfo) -> Iterator[Gftp]:
    launcher = shared_localnet.gftp_dir / "gftp"
    process = subprocess.Popen(
        [str(launcher), "server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield Gftp(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_gftp_server_answers_like_yagnas(gftp: Gftp, tmp_path: Path) -> None:
    version = gftp.call("version")["result"]
    assert version.split()[0].count(".") == 2  # yapapi parses the first word as semver

    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("same content")
    two.write_text("same content")
    first = gftp.call("publish", files=[str(one)])["result"]
    second = gftp.call("publish", files=[str(two)])["result"]
    assert first[0]["file"] == str(one) and first[0]["url"].startswith("gftp://0x")
    assert first[0]["url"] == second[0]["url"]  # the URL names the content's hash

    missing = gftp.call("publish", files=[str(tmp_path / "nope.txt")])["error"]
    assert "nope.txt: no such file" in missing["message"]
    assert gftp.call("frobnicate")["error"]["code"] == -32601
    assert gftp.call("receive")["error"]["message"] == "parameter 'output_file' must be a str"

    slot = gftp.call("receive", output_file=str(tmp_path / "in.bin"))["result"]
    assert slot["file"] == str(tmp_path / "in.bin")
    closed = gftp.call("close", urls=[slot["url"], slot["url"], "gftp://0x1/abc"])["result"]
    assert closed == ["ok", "error", "error"]  # a URL is closed once; not ours: error

    assert gftp.call("shutdown")["result"] == "ok"
    assert gftp.process.wait(10) == 0
