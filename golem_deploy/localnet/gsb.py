"""yagna's service bus (GSB) spoken from Python: the wire codec and an async client.

Why hand-written: the bus is tiny (a dozen protobuf messages, all of them flat: strings,
bytes, varints) and a generated protobuf module would drag a code generator and a runtime
into the build for ~100 lines of straightforward encoding. Everything here follows
localnet-protocol.md section 4:

* a frame is a u32 big-endian length followed by one protobuf ``GSB_API.Packet``;
* ``Packet`` is a oneof: the field number says which message is inside (table below);
* proto3 rules: fields equal to their default (0, "", b"", False) are not written;
* call payloads are flexbuffers (serde's encoding on the Rust side); a receiver accepts
  zlib-compressed data too.

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
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from flatbuffers import flexbuffers

from golem_deploy.errors import GolemDeployError

log = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024 * 1024
"""The router refuses bigger frames; a bigger length prefix means a broken stream."""


class GsbError(GolemDeployError):
    """A bus-level failure: connection lost, a call answered with an error code, bad frame."""

    def __init__(self, message: str, *, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------
# protobuf wire format (only what GSB packets use)
# --------------------------------------------------------------------------------------

_VARINT = 0
_FIXED64 = 1
_LEN = 2
_FIXED32 = 5


def encode_varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as their 64-bit two's complement (protobuf int)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read one varint at ``pos``; returns (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise GsbError("truncated varint in GSB packet")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise GsbError("varint too long in GSB packet")


def _iter_fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value) for every field; value is int or bytes."""
    pos = 0
    while pos < len(data):
        key, pos = decode_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = decode_varint(data, pos)
            yield number, wire_type, value
        elif wire_type == _LEN:
            length, pos = decode_varint(data, pos)
            if pos + length > len(data):
                raise GsbError("truncated length-delimited field in GSB packet")
            yield number, wire_type, data[pos : pos + length]
            pos += length
        elif wire_type == _FIXED64:
            pos += 8
        elif wire_type == _FIXED32:
            pos += 4
        else:
            raise GsbError(f"unsupported protobuf wire type {wire_type} in GSB packet")
        if pos > len(data):
            raise GsbError("truncated GSB packet")


def _key(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)


# --------------------------------------------------------------------------------------
# packet messages
# --------------------------------------------------------------------------------------
# Each message is a dataclass whose fields are declared in protobuf field-number order
# (1, 2, 3, ...) -- every GSB message numbers its fields consecutively from 1. The Python
# type of a field decides its wire encoding: str and bytes are length-delimited, int and
# bool are varints.


@dataclass
class _Message:
    """Base for the packet messages: generic proto3 encode/decode driven by the fields."""

    PACKET_FIELD: ClassVar[int]

    def encode(self) -> bytes:
        out = bytearray()
        for number, f in enumerate(fields(self), start=1):
            value = getattr(self, f.name)
            if not value:  # proto3: defaults are not written
                continue
            if isinstance(value, int):  # bool is an int too
                out += _key(number, _VARINT) + encode_varint(int(value))
            else:
                raw = value.encode() if isinstance(value, str) else bytes(value)
                out += _key(number, _LEN) + encode_varint(len(raw)) + raw
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> _Message:
        declared = fields(cls)
        values: dict[str, Any] = {}
        for number, wire_type, raw in _iter_fields(data):
            if not 1 <= number <= len(declared):
                continue  # unknown field: ignore, as protobuf does
            f = declared[number - 1]
            kind = f.type
            if kind in ("str", "bytes"):
                if wire_type != _LEN:
                    raise GsbError(f"{cls.__name__}.{f.name}: expected bytes on the wire")
                values[f.name] = raw.decode() if kind == "str" else bytes(raw)
            else:
                if wire_type != _VARINT:
                    raise GsbError(f"{cls.__name__}.{f.name}: expected a varint on the wire")
                values[f.name] = bool(raw) if kind == "bool" else raw
        return cls(**values)


@dataclass
class Hello(_Message):
    PACKET_FIELD: ClassVar[int] = 1
    name: str = ""
    version: str = ""
    instance_id: bytes = b""


@dataclass
class RegisterRequest(_Message):
    PACKET_FIELD: ClassVar[int] = 2
    service_id: str = ""


@dataclass
class RegisterReply(_Message):
    PACKET_FIELD: ClassVar[int] = 3
    code: int = 0  # 0 OK, 400 BAD_REQUEST, 409 CONFLICT
    message: str = ""


@dataclass
class UnregisterRequest(_Message):
    PACKET_FIELD: ClassVar[int] = 4
    service_id: str = ""


@dataclass
class UnregisterReply(_Message):
    PACKET_FIELD: ClassVar[int] = 5
    code: int = 0  # 0 OK, 404 NOT_REGISTERED


@dataclass
class CallRequest(_Message):
    PACKET_FIELD: ClassVar[int] = 6
    caller: str = ""
    address: str = ""
    request_id: str = ""
    data: bytes = b""
    no_reply: bool = False


CALL_OK = 0
CALL_BAD_REQUEST = 400
CALL_SERVICE_FAILURE = 500
REPLY_FULL = 0
REPLY_PARTIAL = 1


@dataclass
class CallReply(_Message):
    PACKET_FIELD: ClassVar[int] = 7
    request_id: str = ""
    code: int = CALL_OK
    reply_type: int = REPLY_FULL
    data: bytes = b""


@dataclass
class Ping(_Message):
    PACKET_FIELD: ClassVar[int] = 14


@dataclass
class Pong(_Message):
    PACKET_FIELD: ClassVar[int] = 15


_BY_FIELD: dict[int, type[_Message]] = {
    cls.PACKET_FIELD: cls
    for cls in (
        Hello,
        RegisterRequest,
        RegisterReply,
        UnregisterRequest,
        UnregisterReply,
        CallRequest,
        CallReply,
        Ping,
        Pong,
    )
}


@dataclass
class UnknownPacket:
    """A packet kind an ExeUnit never needs (subscribe/broadcast); kept to be logged."""

    field: int
    body: bytes


Packet = _Message | UnknownPacket


def encode_packet(message: _Message) -> bytes:
    """One ``Packet`` (the oneof wrapper) around ``message``; no length prefix."""
    body = message.encode()
    return _key(message.PACKET_FIELD, _LEN) + encode_varint(len(body)) + body


def decode_packet(data: bytes) -> Packet:
    """The message inside one ``Packet``. A packet carries exactly one oneof member."""
    found: Packet | None = None
    for number, wire_type, raw in _iter_fields(data):
        if wire_type != _LEN:
            raise GsbError("GSB packet member is not a message")
        cls = _BY_FIELD.get(number)
        found = cls.decode(raw) if cls is not None else UnknownPacket(number, bytes(raw))
    if found is None:
        raise GsbError("empty GSB packet")
    return found


def encode_frame(message: _Message) -> bytes:
    """A packet with its u32 big-endian length prefix, ready for the socket."""
    packet = encode_packet(message)
    return struct.pack(">I", len(packet)) + packet


# --------------------------------------------------------------------------------------
# payloads
# --------------------------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    """Encode a payload as flexbuffers, the format serde uses on the Rust side."""
    return bytes(flexbuffers.Dumps(value))


def loads(data: bytes) -> Any:
    """Decode a payload; zlib-compressed data (hybrid-net mode) is inflated first."""
    if not data:
        return None
    with contextlib.suppress(zlib.error):
        data = zlib.decompress(data)
    return _plain(flexbuffers.Loads(data))


def _plain(value: Any) -> Any:
    """flexbuffers returns bytearray for blobs; hand out immutable bytes."""
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


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
