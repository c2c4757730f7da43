"""yagna/keepalive.py: the lean HTTP/1.1 client for yagna's JSON requests.

Its answers from real yagna are covered by every integration test (it is the client's
transport for http:// yagna). Here: the rules real yagna rarely shows, against a server on
loopback that answers with exactly the bytes each case needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from golem_deploy.yagna.keepalive import AnswerTooLarge, ConnectionLost, KeepAlivePool, _unchunk

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[False, True], ids=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """On asyncio's own loop (the engine in tests and library use) and on uvloop (the
    supervisor's): their transports differ."""
    return "asyncio", {"use_uvloop": request.param}


#: What the server does with each request it reads: the bytes to answer (None: answer
#: nothing), and whether to close the connection afterwards.
Script = Callable[[bytes], tuple[bytes | None, bool]]


def answer(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


class Server:
    """A loopback server that records requests and the connection each came on."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                out, close = self.script(request)
                if out is not None:
                    writer.write(out)
                    await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(script: Script) -> AsyncIterator[Server]:
    server = Server(script)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


def pool(keepalive: float = 30.0, max_connections: int = 100) -> KeepAlivePool:
    return KeepAlivePool(
        {"Authorization": "Bearer k"},
        keepalive=keepalive,
        connect_timeout=5.0,
        limit=1000,
        max_connections=max_connections,
    )


async def test_a_connection_is_reused_for_the_next_request() -> None:
    async with serving(lambda r: (answer(b'"ok"'), False)) as server:
        p = pool()
        url = f"http://127.0.0.1:{server.port}/activity-api/v1/activity/a1/exec"
        assert await p.request("POST", url, params=None, body=b"{}", timeout=5) == (200, b'"ok"')
        assert await p.request("GET", url, params={"timeout": "5.0"}, body=None, timeout=5) == (
            200,
            b'"ok"',
        )
        p.close()
    assert server.connections == 1
    post, get = server.requests
    assert post.startswith(b"POST /activity-api/v1/activity/a1/exec HTTP/1.1\r\n")
    assert b"Authorization: Bearer k\r\n" in post and post.endswith(b"\r\n\r\n{}")
    assert get.startswith(b"GET /activity-api/v1/activity/a1/exec?timeout=5.0 HTTP/1.1\r\n")


async def test_requests_beyond_max_connections_wait_for_a_free_one() -> None:
    async with serving(lambda r: (answer(b"1"), False)) as server:
        p = pool(max_connections=2)
        url = f"http://127.0.0.1:{server.port}/x"
        answers = await asyncio.gather(
            *(p.request("GET", url, params=None, body=None, timeout=5) for _ in range(6))
        )
        p.close()
    assert answers == [(200, b"1")] * 6
    assert server.connections == 2


async def two_gets(script: Script, p: KeepAlivePool) -> tuple[list[tuple[int, bytes]], int]:
    """Two GETs one after the other: their answers, and how many connections they took."""
    async with serving(script) as server:
        url = f"http://127.0.0.1:{server.port}/x"
        answers = [await p.request("GET", url, params=None, body=None, timeout=5) for _ in "ab"]
        p.close()
    return answers, server.connections


async def test_connection_close_is_honoured() -> None:
    closing = answer(b"1", extra="Connection: close\r\n")
    assert await two_gets(lambda r: (closing, True), pool()) == ([(200, b"1")] * 2, 2)


async def test_a_connection_idle_too_long_is_not_reused() -> None:
    assert await two_gets(lambda r: (answer(b"1"), False), pool(keepalive=0.0)) == (
        [(200, b"1")] * 2,
        2,
    )


async def test_a_connection_that_sent_more_than_the_answer_is_not_reused() -> None:
    extra = answer(b"1") + b"HTTP/1.1 200 OK\r\n"
    assert await two_gets(lambda r: (extra, False), pool()) == ([(200, b"1")] * 2, 2)


async def test_an_answer_without_a_length_ends_with_the_connection() -> None:
    async with serving(lambda r: (b"HTTP/1.0 200 OK\r\n\r\n[1, 2]", True)) as server:
        p = pool()
        status, body = await p.request(
            "GET", f"http://127.0.0.1:{server.port}/x", params=None, body=None, timeout=5
        )
        p.close()
    assert (status, body) == (200, b"[1, 2]")


async def test_a_chunked_answer_is_read_whole() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n"
    )
    assert await two_gets(lambda r: (chunked, False), pool()) == ([(200, b"[1,2]")] * 2, 1)


async def test_an_error_status_comes_back_with_its_body() -> None:
    async with serving(lambda r: (answer(b'{"message":"no"}', "500 Internal"), False)) as server:
        p = pool()
        status, body = await p.request(
            "GET", f"http://127.0.0.1:{server.port}/x", params=None, body=None, timeout=5
        )
        p.close()
    assert (status, body) == (500, b'{"message":"no"}')


async def test_no_answer_within_the_timeout_raises_and_the_connection_is_dropped() -> None:
    replies = iter([(None, False), (answer(b"late"), False)])
    async with serving(lambda r: next(replies)) as server:
        p = pool()
        url = f"http://127.0.0.1:{server.port}/x"
        with pytest.raises(TimeoutError):
            await p.request("GET", url, params=None, body=None, timeout=0.05)
        # a new connection: the first one's answer, were it to come, must not be read as
        # the answer to this request
        assert await p.request("GET", url, params=None, body=None, timeout=5) == (200, b"late")
        p.close()
    assert server.connections == 2


async def test_the_server_closing_before_answering_is_a_lost_connection() -> None:
    async with serving(lambda r: (None, True)) as server:
        p = pool()
        with pytest.raises(ConnectionLost):
            await p.request(
                "POST", f"http://127.0.0.1:{server.port}/x", params=None, body=b"1", timeout=5
            )
        p.close()


async def test_a_half_answer_then_close_is_a_lost_connection() -> None:
    async with serving(lambda r: (answer(b"0123456789")[:-4], True)) as server:
        p = pool()
        with pytest.raises(ConnectionLost):
            await p.request(
                "GET", f"http://127.0.0.1:{server.port}/x", params=None, body=None, timeout=5
            )
        p.close()


async def test_an_answer_over_the_limit_is_refused() -> None:
    async with serving(lambda r: (answer(b"x" * 2000), False)) as server:
        p = pool()  # limit 1000
        with pytest.raises(AnswerTooLarge, match="too large"):
            await p.request(
                "GET", f"http://127.0.0.1:{server.port}/x", params=None, body=None, timeout=5
            )
        p.close()


async def test_an_answer_without_a_length_is_bounded_too() -> None:
    unbounded = b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 2000
    async with serving(lambda r: (unbounded, False)) as server:
        p = pool()  # limit 1000
        with pytest.raises(AnswerTooLarge):
            await p.request(
                "GET", f"http://127.0.0.1:{server.port}/x", params=None, body=None, timeout=5
            )
        p.close()


async def test_nothing_listening_is_a_connection_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    with pytest.raises(OSError):
        await pool().request("GET", f"http://127.0.0.1:{port}/x", params=None, body=None, timeout=5)


def test_unchunk_waits_for_the_whole_body() -> None:
    whole = b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"
    for cut in range(len(whole)):
        assert _unchunk(whole[:cut]) is None
    assert _unchunk(whole) == (b"abc", len(whole))


def test_unchunk_refuses_a_bad_size() -> None:
    with pytest.raises(ConnectionLost):
        _unchunk(b"zz\r\nab\r\n")
