"""How LocalHttpProxy finds the end of a response (engine/http_proxy.py): yagna never
closes the WebSocket, so HTTP's own framing must say where the answer ends."""

from __future__ import annotations

import aiohttp
import pytest

from golem_deploy.engine.http_proxy import BadResponse, _dechunk, _read_response

pytestmark = pytest.mark.anyio


class Frames:
    """A WebSocket that delivers `frames`, then blocks (as yagna's does) or closes."""

    def __init__(self, *frames: bytes, closes: bool = False) -> None:
        self.frames = list(frames)
        self.closes = closes

    async def receive(self) -> aiohttp.WSMessage:
        if self.frames:
            return aiohttp.WSMessage(aiohttp.WSMsgType.BINARY, self.frames.pop(0), None)
        if self.closes:
            return aiohttp.WSMessage(aiohttp.WSMsgType.CLOSED, None, None)
        raise AssertionError("read past the end of the response")


async def test_content_length_ends_the_body_across_frames() -> None:
    ws = Frames(b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 5\r\nX-A: b\r\n\r\nhel", b"lo")
    response = await _read_response(ws)  # type: ignore[arg-type]
    assert (response.status, response.body, response.headers["X-A"]) == (200, b"hello", "b")


async def test_a_chunked_body_is_decoded() -> None:
    ws = Frames(
        b"HTTP/1.1 404 Nope\r\nTransfer-Encoding: chunked\r\n\r\n4\r\none,", b"\r\n0\r\n\r\n"
    )
    response = await _read_response(ws)  # type: ignore[arg-type]
    assert (response.status, response.body) == (404, b"one,")
    assert "Transfer-Encoding" not in response.headers
    assert _dechunk(b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n") == b"abcde"


async def test_without_framing_the_body_ends_when_the_connection_does() -> None:
    ws = Frames(b"HTTP/1.0 200 OK\r\n\r\nall ", b"of it", closes=True)
    response = await _read_response(ws)  # type: ignore[arg-type]
    assert response.body == b"all of it"


async def test_not_http_or_cut_short_is_a_bad_response() -> None:
    with pytest.raises(BadResponse, match="status line"):
        await _read_response(Frames(b"SSH-2.0-OpenSSH\r\n\r\n"))  # type: ignore[arg-type]
    with pytest.raises(BadResponse, match="closed before"):
        cut = Frames(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", closes=True)
        await _read_response(cut)  # type: ignore[arg-type]
