"""A lean keep-alive HTTP/1.1 client for yagna's plain-JSON requests over `http://`.

Why not aiohttp here: a running deployment asks yagna two questions per periodic batch
(POST exec, GET its results), 40 a second at 100 instances, and aiohttp's request path
(its request and response objects, header multidicts, URL parsing, timers, stream readers)
was about half the supervisor's CPU at that load (py-spy, bench/RESULTS.md). yagna's
answers are small JSON documents with a Content-Length (actix-web), on loopback or a LAN,
so reading them needs an HTTP/1.1 status line, headers and a sized or chunked body, and
nothing else: no redirects, cookies, compression, proxies or TLS. That is this module.
aiohttp stays for everything else: https, and the server-sent-event streams of live output.

The rules that keep a pooled connection safe to reuse: an answer is complete only when its
whole body arrived; a connection goes back to the pool only after a complete answer that
did not say `Connection: close`, with nothing left unread; one idle for KEEPALIVE_S (well
under the 60 s after which yagna closes an idle one) or closed by yagna is never used again;
one whose request was cancelled or timed out is closed, as its answer may still come.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import cast
from urllib.parse import quote, urlencode, urlsplit

__all__ = ["AnswerTooLarge", "ConnectionLost", "KeepAlivePool"]

_HEAD_LIMIT = 64 * 1024  # an answer's status line and headers


class ConnectionLost(ConnectionError):
    """The connection closed, or the server broke HTTP, before a whole answer arrived."""


class AnswerTooLarge(Exception):
    """The answer is larger than the pool's `limit` (a misbehaving server must not eat
    RAM); the connection is closed."""


class _Answer:
    """An HTTP/1.1 response being parsed from the bytes received so far."""

    __slots__ = ("body", "chunked", "close", "length", "status")

    def __init__(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ConnectionLost(f"not an HTTP/1.1 answer: {lines[0][:60]!r}")
        self.status = int(parts[1])
        self.length: int | None = None
        self.chunked = False
        self.close = parts[0] == "HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                if not value.isdigit():
                    raise ConnectionLost(f"bad Content-Length {value!r}")
                self.length = int(value)
            elif name == "transfer-encoding":
                self.chunked = value.endswith("chunked")
            elif name == "connection":
                self.close = "close" in value
        if self.status in (204, 304) or 100 <= self.status < 200:
            self.length = 0
        self.body: bytes | None = None


def _unchunk(data: bytes | bytearray) -> tuple[bytes, int] | None:
    """A chunked body's bytes and the length it took in `data`; None while incomplete."""
    out, at = bytearray(), 0
    while True:
        end = data.find(b"\r\n", at)
        if end < 0:
            return None
        size_text = bytes(data[at:end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ConnectionLost(f"bad chunk size {size_text[:20]!r}") from None
        at = end + 2
        if size == 0:  # no trailers from yagna: the blank line ends the body
            if len(data) < at + 2:
                return None
            return bytes(out), at + 2
        if len(data) < at + size + 2:
            return None
        out += data[at : at + size]
        at += size + 2


class _Connection(asyncio.Protocol):
    """One TCP connection; answers one request at a time."""

    def __init__(self, limit: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._limit = limit
        self._buf = bytearray()
        self._answer: _Answer | None = None
        self._waiter: asyncio.Future[_Answer] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is None:  # bytes nobody asked for: never reuse this connection
            self.abort()
            return
        try:
            self._parse()
        except (ConnectionLost, AnswerTooLarge) as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self.closed = True
        self._fail(ConnectionLost("yagna closed the connection before answering"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionLost(f"connection lost ({exc or 'closed'})"))

    def _parse(self) -> None:
        if self._answer is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _HEAD_LIMIT:
                    raise ConnectionLost("answer headers too large")
                return
            self._answer = _Answer(bytes(self._buf[:end]))
            del self._buf[: end + 4]
        answer = self._answer
        if answer.chunked:
            done = _unchunk(self._buf)
            if done is None:
                if len(self._buf) > self._limit:
                    raise AnswerTooLarge(f"answer larger than {self._limit} bytes")
                return
            answer.body, used = done
        elif answer.length is not None:
            if answer.length > self._limit:
                raise AnswerTooLarge(f"answer too large ({answer.length} bytes)")
            if len(self._buf) < answer.length:
                return
            answer.body, used = bytes(self._buf[: answer.length]), answer.length
        else:  # no length: the body ends with the connection (HTTP/1.0 style)
            answer.close = True
            if len(self._buf) > self._limit:
                raise AnswerTooLarge(f"answer larger than {self._limit} bytes")
            if not self.closed:
                return
            answer.body, used = bytes(self._buf), len(self._buf)
        del self._buf[:used]
        if self._buf:  # more than the answer: the connection's state is unknown
            answer.close = True
        waiter, self._waiter, self._answer = self._waiter, None, None
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and self._answer.length is None and not self._answer.chunked:
            try:  # a body delimited by the connection's end is complete now
                self._parse()
                return
            except (ConnectionLost, AnswerTooLarge) as err:
                exc = err
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def exchange(self, request: bytes, waiter: asyncio.Future[_Answer]) -> _Answer:
        assert self.transport is not None and self._waiter is None
        self._waiter = waiter
        self.transport.write(request)
        return await waiter


class KeepAlivePool:
    """Keep-alive connections to the servers of plain-`http://` URLs; one request each at a
    time, as many connections as requests in flight, at most `max_connections` (aiohttp's
    default, 100: at 500 instances, with a log file open for each, a 1024-file limit holds)."""

    def __init__(
        self,
        headers: Mapping[str, str],
        *,
        keepalive: float,
        connect_timeout: float,
        limit: int,
        max_connections: int = 100,
    ) -> None:
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._limit = limit
        self._slots = asyncio.Semaphore(max_connections)  # requests in flight
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._closed = False

    def _target(self, url: str) -> tuple[tuple[str, int], str, str]:
        """(host, port), the Host header and the escaped path of `url`."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain-http URL: {url}")
        port = parts.port or 80
        path = quote(parts.path or "/", safe="/:@-._~!$&'()*+,;=%")
        return (parts.hostname, port), parts.netloc, path

    async def _connection(self, server: tuple[str, int]) -> _Connection:
        idle = self._idle.get(server)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive:
                return conn
            conn.abort()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._limit), server[0], server[1]
                )
        except TimeoutError:
            raise ConnectionLost(f"no connection within {self._connect_timeout:g} s") from None
        return conn

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        body: bytes | None,
        timeout: float,
    ) -> tuple[int, bytes]:
        """Send one request and read its whole answer: (status, body). Raises TimeoutError
        after `timeout` s, ConnectionLost (an OSError) when no whole answer came."""
        server, host, path = self._target(url)
        if params:
            path += "?" + urlencode(params)
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{self._headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        elif method in ("POST", "PUT", "PATCH"):
            head += "Content-Length: 0\r\n"
        request = (head + "\r\n").encode("latin-1") + (body or b"")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Answer] = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter, timeout)
        conn: _Connection | None = None
        try:
            async with self._slots:
                conn = await self._connection(server)
                answer = await conn.exchange(request, waiter)
        except BaseException:
            if conn is not None:
                conn.abort()  # its answer may still come: never reuse it
            raise
        finally:
            timer.cancel()
        if answer.close or conn.closed or self._closed:
            conn.abort()
        else:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(server, []).append(conn)
        return answer.status, answer.body or b""

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its request ends."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()


def _expire(waiter: asyncio.Future[_Answer], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"no answer within {timeout:g} s"))
