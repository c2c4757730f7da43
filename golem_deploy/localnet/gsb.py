"""yagna's service bus (GSB) spoken from Python: an async client.

The wire codec (protobuf packets, frames, flexbuffers payloads) is
:mod:`golem_deploy.localnet.gsb_codec`; its names are re-exported here, so users of the bus
import everything from this module.

The client (:class:`GsbClient`) connects, sends exactly one Hello with a fresh random
instance id (so the router cleans up our registrations when we disconnect), answers the
router's Ping, matches replies to our calls by ``request_id`` and runs incoming calls on
registered prefixes in its own task group, so nothing outlives the connection.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from golem_deploy.localnet.gsb_codec import (
    CALL_BAD_REQUEST,
    CALL_OK,
    CALL_SERVICE_FAILURE,
    MAX_FRAME,
    REPLY_FULL,
    REPLY_PARTIAL,
    CallReply,
    CallRequest,
    GsbError,
    Hello,
    Packet,
    Ping,
    Pong,
    RegisterReply,
    RegisterRequest,
    UnknownPacket,
    UnregisterReply,
    UnregisterRequest,
    _Message,
    decode_packet,
    decode_varint,
    dumps,
    encode_frame,
    encode_packet,
    encode_varint,
    loads,
)

__all__ = [
    "CALL_BAD_REQUEST",
    "CALL_OK",
    "CALL_SERVICE_FAILURE",
    "MAX_FRAME",
    "REPLY_FULL",
    "REPLY_PARTIAL",
    "CallReply",
    "CallRequest",
    "GsbClient",
    "GsbError",
    "Handler",
    "Hello",
    "IncomingCall",
    "Packet",
    "Ping",
    "Pong",
    "RegisterReply",
    "RegisterRequest",
    "UnknownPacket",
    "UnregisterReply",
    "UnregisterRequest",
    "decode_packet",
    "decode_varint",
    "dumps",
    "encode_frame",
    "encode_packet",
    "encode_varint",
    "loads",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# the client
# --------------------------------------------------------------------------------------


@dataclass
class IncomingCall:
    """A call to one of our registered addresses, with the means to answer it.

    Answer with exactly one :meth:`reply`, or with :meth:`partial` items followed by
    :meth:`end_stream` (the router holds the reply slot until a FULL reply arrives).
    """

    client: GsbClient
    caller: str
    address: str
    request_id: str
    data: bytes
    no_reply: bool
    method: str  # the address part after the registered prefix, e.g. "Exec"
    answered: bool = False

    def payload(self) -> Any:
        return loads(self.data)

    async def reply(self, value: Any, *, code: int = CALL_OK) -> None:
        """The one FULL reply; ``value`` is flexbuffers-encoded (bytes are sent raw)."""
        data = value if isinstance(value, bytes) else dumps(value)
        await self._send(CallReply(self.request_id, code, REPLY_FULL, data))
        self.answered = True

    async def partial(self, value: Any) -> None:
        """One streamed item (a PARTIAL reply)."""
        await self._send(CallReply(self.request_id, CALL_OK, REPLY_PARTIAL, dumps(value)))

    async def end_stream(self) -> None:
        """The end of a stream: a FULL reply with empty data."""
        await self._send(CallReply(self.request_id, CALL_OK, REPLY_FULL, b""))
        self.answered = True

    async def _send(self, reply: CallReply) -> None:
        if not self.no_reply:
            await self.client.send(reply)


Handler = Callable[[IncomingCall], Awaitable[None]]


def _parse_url(url: str) -> tuple[str, str | int]:
    if url.startswith("tcp://"):
        host, _, port = url[len("tcp://") :].rpartition(":")
        if not host or not port.isdigit():
            raise GsbError(f"bad GSB url {url!r}: expected tcp://HOST:PORT")
        return host, int(port)
    if url.startswith("unix:"):
        return "unix", url[len("unix:") :].removeprefix("//")
    raise GsbError(f"bad GSB url {url!r}: expected tcp://HOST:PORT or unix:PATH")


class GsbClient:
    """One connection to a yagna GSB router. Use :meth:`connect` (an async context manager)."""

    def __init__(self, stream: anyio.abc.ByteStream, name: str) -> None:
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._name = name
        self._send_lock = anyio.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[str, _PendingCall] = {}
        self._control: list[tuple[type[_Message], _Waiter]] = []
        self._handlers: dict[str, Handler] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.router_hello: Hello | None = None
        self.closed = anyio.Event()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, *, name: str = "golem-deploy") -> AsyncIterator[GsbClient]:
        """Connect, say Hello once, and serve the connection until the block exits."""
        host, where = _parse_url(url)
        try:
            if host == "unix":
                stream: anyio.abc.ByteStream = await anyio.connect_unix(str(where))
            else:
                stream = await anyio.connect_tcp(host, int(where))
        except OSError as exc:
            raise GsbError(f"cannot connect to the GSB router at {url}: {exc}") from exc
        client = cls(stream, name)
        try:
            async with anyio.create_task_group() as tg:
                client._tg = tg
                await client.send(Hello(name, "0.6.4", os.urandom(16)))
                tg.start_soon(client._read_loop)
                try:
                    yield client
                finally:
                    tg.cancel_scope.cancel()
        finally:
            client._fail_all(GsbError("GSB connection closed"))
            client.closed.set()
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    # ---- sending ----

    async def send(self, message: _Message) -> None:
        async with self._send_lock:
            try:
                await self._stream.send(encode_frame(message))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise GsbError(f"GSB connection lost: {exc}") from exc

    def drop(self) -> None:
        """Abort the connection now, answering nothing more (a vanishing provider)."""
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # ---- registration ----

    async def register(self, service_id: str, handler: Handler) -> None:
        """Receive every call to ``service_id`` and addresses below it."""
        self._handlers[service_id] = handler
        reply = await self._control_call(RegisterRequest(service_id), RegisterReply)
        assert isinstance(reply, RegisterReply)
        if reply.code != 0:
            del self._handlers[service_id]
            raise GsbError(
                f"GSB refused to register {service_id}: {reply.code} {reply.message}".strip(),
                code=reply.code,
            )

    async def unregister(self, service_id: str) -> None:
        reply = await self._control_call(UnregisterRequest(service_id), UnregisterReply)
        assert isinstance(reply, UnregisterReply)
        self._handlers.pop(service_id, None)
        if reply.code != 0:
            raise GsbError(f"{service_id} was not registered", code=reply.code)

    async def _control_call(self, request: _Message, reply_type: type[_Message]) -> _Message:
        # The router answers register/unregister requests in order, without ids.
        waiter = _Waiter()
        self._control.append((reply_type, waiter))
        await self.send(request)
        return await waiter.wait()

    # ---- outgoing calls ----

    async def call_raw(self, address: str, data: bytes, *, caller: str = "local") -> bytes:
        """Call ``address`` and return the FULL reply's raw data; error codes raise."""
        request_id = f"{self._name}-{next(self._ids)}"
        pending = _PendingCall()
        self._pending[request_id] = pending
        try:
            await self.send(CallRequest(caller, address, request_id, data))
            return await pending.wait()
        finally:
            self._pending.pop(request_id, None)

    async def push_raw(self, address: str, data: bytes, *, caller: str) -> None:
        """Send ``data`` to ``address`` expecting no reply (yagna's ``push_raw_as``).

        VPN frames travel this way: fire and forget, in order."""
        request_id = f"{self._name}-{next(self._ids)}"
        await self.send(CallRequest(caller, address, request_id, data, no_reply=True))

    async def call(self, address: str, payload: Any, *, caller: str = "local") -> Any:
        """Call ``address`` with a flexbuffers payload and decode the reply."""
        return loads(await self.call_raw(address, dumps(payload), caller=caller))

    # ---- reading ----

    async def _read_loop(self) -> None:
        try:
            while True:
                header = await self._reader.receive_exactly(4)
                (length,) = struct.unpack(">I", header)
                if length > MAX_FRAME:
                    raise GsbError(f"GSB frame of {length} bytes is too big")
                packet = decode_packet(await self._reader.receive_exactly(length))
                await self._dispatch(packet)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
            log.debug("GSB connection closed by the router")
        except GsbError as exc:
            log.warning("GSB protocol error, closing the connection: %s", exc)
        self._fail_all(GsbError("GSB connection closed"))
        self.closed.set()

    async def _dispatch(self, packet: Packet) -> None:
        if isinstance(packet, Ping):
            await self.send(Pong())
        elif isinstance(packet, Hello):
            self.router_hello = packet
        elif isinstance(packet, CallReply):
            pending = self._pending.get(packet.request_id)
            if pending is not None:
                pending.feed(packet)
        elif isinstance(packet, CallRequest):
            self._start_incoming(packet)
        elif isinstance(packet, RegisterReply | UnregisterReply):
            for i, (expected, waiter) in enumerate(self._control):
                if isinstance(packet, expected):
                    del self._control[i]
                    waiter.set(packet)
                    break
        elif isinstance(packet, Pong):
            pass
        else:
            log.debug("ignoring GSB packet %r", packet)

    def _start_incoming(self, request: CallRequest) -> None:
        prefix = _longest_prefix(self._handlers, request.address)
        call = IncomingCall(
            client=self,
            caller=request.caller,
            address=request.address,
            request_id=request.request_id,
            data=request.data,
            no_reply=request.no_reply,
            method=request.address[len(prefix) :].lstrip("/") if prefix else "",
        )
        assert self._tg is not None
        self._tg.start_soon(self._serve_incoming, call, self._handlers.get(prefix or ""))

    async def _serve_incoming(self, call: IncomingCall, handler: Handler | None) -> None:
        try:
            if handler is None:
                await call.reply(b"endpoint address not found", code=CALL_BAD_REQUEST)
                return
            await handler(call)
            if not call.answered:
                await call.end_stream()
        except GsbError as exc:
            log.debug("could not answer %s: %s", call.address, exc)
        except Exception as exc:  # a handler bug must not kill the connection
            log.exception("handler for %s failed", call.address)
            if not call.answered:
                with contextlib.suppress(GsbError):
                    await call.reply(str(exc).encode(), code=CALL_SERVICE_FAILURE)

    def _fail_all(self, error: GsbError) -> None:
        for pending in self._pending.values():
            pending.fail(error)
        for _, waiter in self._control:
            waiter.fail(error)
        self._control.clear()


def _longest_prefix(handlers: dict[str, Handler], address: str) -> str | None:
    """The registered prefix that owns ``address``, matching at ``/`` boundaries."""
    best: str | None = None
    for prefix in handlers:
        if (address == prefix or address.startswith(prefix.rstrip("/") + "/")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return best


class _Waiter:
    def __init__(self) -> None:
        self._event = anyio.Event()
        self._value: _Message | None = None
        self._error: GsbError | None = None

    def set(self, value: _Message) -> None:
        self._value = value
        self._event.set()

    def fail(self, error: GsbError) -> None:
        self._error = error
        self._event.set()

    async def wait(self) -> _Message:
        await self._event.wait()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


class _PendingCall:
    """Our outgoing call waiting for its FULL reply (PARTIAL items are collected)."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._reply: CallReply | None = None
        self._error: GsbError | None = None

    def feed(self, reply: CallReply) -> None:
        if reply.reply_type == REPLY_FULL or reply.code != CALL_OK:
            self._reply = reply
            self._event.set()

    def fail(self, error: GsbError) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()

    async def wait(self) -> bytes:
        await self._event.wait()
        if self._reply is None:
            raise self._error or GsbError("GSB connection closed")
        if self._reply.code != CALL_OK:
            text = self._reply.data.decode(errors="replace")
            raise GsbError(f"GSB call failed ({self._reply.code}): {text}", code=self._reply.code)
        return self._reply.data
