"""The GSB client's session logic, against a scripted router on a loopback socket.

The real router is exercised in tests/integration/test_exeunit_gsb.py; here each protocol
rule of localnet-protocol.md §4.3 is checked frame by frame: one Hello with a fresh 16-byte
instance id, Pong for Ping, replies matched by request id, incoming calls answered FULL or
streamed PARTIAL...FULL(empty), compressed payloads accepted.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from golem_deploy.localnet import gsb

Script = Callable[["Router"], Awaitable[None]]


class Router:
    """One accepted connection, read and written frame by frame."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)

    async def send(self, message: gsb._Message) -> None:
        await self.stream.send(gsb.encode_frame(message))

    async def receive(self) -> gsb.Packet:
        (length,) = struct.unpack(">I", await self.reader.receive_exactly(4))
        return gsb.decode_packet(await self.reader.receive_exactly(length))


async def with_router(
    script: Script,
    client_body: Callable[[gsb.GsbClient], Awaitable[None]],
    unix_path: Path | None = None,
) -> None:
    listener: anyio.abc.Listener[anyio.abc.SocketStream]
    if unix_path is None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        url = f"tcp://127.0.0.1:{port}"
    else:
        listener = await anyio.create_unix_listener(unix_path)
        url = f"unix:{unix_path}"
    done = anyio.Event()

    async def accept(stream: anyio.abc.SocketStream) -> None:
        try:
            await script(Router(stream))
        finally:
            done.set()

    with anyio.fail_after(10):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, accept)
            async with gsb.GsbClient.connect(url) as client:
                await client_body(client)
                await done.wait()
            tg.cancel_scope.cancel()


def test_hello_once_with_a_random_instance_id_and_pong_for_ping(tmp_path: Path) -> None:
    seen: list[gsb.Packet] = []

    async def script(router: Router) -> None:
        seen.append(await router.receive())
        await router.send(gsb.Hello("ya-sb-router", "0.6.4", b"r" * 16))
        await router.send(gsb.Ping())
        seen.append(await router.receive())

    async def nothing(client: gsb.GsbClient) -> None:
        pass

    ids = []
    for unix_path in (None, tmp_path / "router.sock"):  # tcp://, then unix:
        seen.clear()
        anyio.run(with_router, script, nothing, unix_path)
        hello, pong = seen
        assert isinstance(hello, gsb.Hello) and len(hello.instance_id) == 16
        assert isinstance(pong, gsb.Pong)
        ids.append(hello.instance_id)
    assert ids[0] != ids[1]  # a fresh id per connection


def test_outgoing_calls_are_matched_by_request_id_and_errors_raise() -> None:
    async def script(router: Router) -> None:
        assert isinstance(await router.receive(), gsb.Hello)
        first = await router.receive()
        second = await router.receive()
        assert isinstance(first, gsb.CallRequest) and isinstance(second, gsb.CallRequest)
        assert first.request_id != second.request_id
        # Answer out of order, with a stray reply for nobody in between.
        await router.send(gsb.CallReply("nobody", data=gsb.dumps("x")))
        await router.send(
            gsb.CallReply(second.request_id, code=400, data=b"endpoint address not found")
        )
        compressed = zlib.compress(gsb.dumps({"Ok": first.address}))
        await router.send(gsb.CallReply(first.request_id, data=compressed))

    async def body(client: gsb.GsbClient) -> None:
        results: dict[str, object] = {}

        async def call(name: str) -> None:
            try:
                results[name] = await client.call(f"/local/{name}", {"q": name})
            except gsb.GsbError as exc:
                results[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "one")
            await anyio.sleep(0.05)
            tg.start_soon(call, "two")
        assert results["one"] == {"Ok": "/local/one"}
        error = results["two"]
        assert isinstance(error, gsb.GsbError) and error.code == 400
        assert "endpoint address not found" in str(error)

    anyio.run(with_router, script, body)


def test_incoming_calls_get_one_full_reply_or_a_stream_ending_with_empty_full() -> None:
    frames: list[gsb.Packet] = []

    async def script(router: Router) -> None:
        assert isinstance(await router.receive(), gsb.Hello)
        register = await router.receive()
        assert register == gsb.RegisterRequest("/public/svc")
        await router.send(gsb.RegisterReply())
        await router.send(gsb.CallRequest("0xabc", "/public/svc/Echo", "r1", gsb.dumps({"v": 1})))
        frames.append(await router.receive())
        await router.send(gsb.CallRequest("0xabc", "/public/svc/Count", "r2", gsb.dumps(3)))
        for _ in range(4):
            frames.append(await router.receive())
        await router.send(gsb.CallRequest("0xabc", "/public/other/X", "r3", b""))
        frames.append(await router.receive())

    async def handler(call: gsb.IncomingCall) -> None:
        if call.method == "Echo":
            await call.reply({"Ok": call.payload(), "caller": call.caller})
        else:
            for i in range(call.payload()):
                await call.partial({"Ok": i})
            await call.end_stream()

    async def body(client: gsb.GsbClient) -> None:
        await client.register("/public/svc", handler)

    anyio.run(with_router, script, body)
    echo, *stream, unknown = frames
    assert isinstance(echo, gsb.CallReply) and echo.request_id == "r1"
    assert gsb.loads(echo.data) == {"Ok": {"v": 1}, "caller": "0xabc"}
    assert [(f.reply_type, gsb.loads(f.data)) for f in stream] == [  # type: ignore[union-attr]
        (gsb.REPLY_PARTIAL, {"Ok": 0}),
        (gsb.REPLY_PARTIAL, {"Ok": 1}),
        (gsb.REPLY_PARTIAL, {"Ok": 2}),
        (gsb.REPLY_FULL, None),
    ]
    assert stream[-1] == gsb.CallReply("r2")  # FULL with empty data ends the stream
    assert isinstance(unknown, gsb.CallReply) and unknown.code == gsb.CALL_BAD_REQUEST


def test_a_refused_registration_raises_with_the_code() -> None:
    async def script(router: Router) -> None:
        assert isinstance(await router.receive(), gsb.Hello)
        assert isinstance(await router.receive(), gsb.RegisterRequest)
        await router.send(gsb.RegisterReply(code=409, message="already registered"))

    async def body(client: gsb.GsbClient) -> None:
        with pytest.raises(gsb.GsbError) as refused:
            await client.register("/public/taken", _unused)
        assert refused.value.code == 409

    anyio.run(with_router, script, body)


def test_a_lost_connection_fails_pending_calls() -> None:
    async def script(router: Router) -> None:
        assert isinstance(await router.receive(), gsb.Hello)
        assert isinstance(await router.receive(), gsb.CallRequest)
        await router.stream.aclose()

    async def body(client: gsb.GsbClient) -> None:
        with pytest.raises(gsb.GsbError, match="closed"):
            await client.call("/local/x", None)
        await client.closed.wait()

    anyio.run(with_router, script, body)


def test_bad_urls_are_rejected() -> None:
    for url in ("http://127.0.0.1:1", "tcp://nohost", "127.0.0.1:7464"):
        with pytest.raises(gsb.GsbError, match="bad GSB url"):
            gsb._parse_url(url)
    assert gsb._parse_url("unix:/tmp/yagna.sock") == ("unix", "/tmp/yagna.sock")


async def _unused(call: gsb.IncomingCall) -> None:
    raise AssertionError("not called")
