"""The GSB wire codec: protobuf packets, u32-framed, with flexbuffers call payloads.

Pure encoding and decoding, no I/O; :mod:`golem_deploy.localnet.gsb` is the client that
speaks it over a socket (and re-exports these names). Why hand-written: the bus is tiny (a
dozen protobuf messages, all of them flat: strings, bytes, varints) and a generated protobuf
module would drag a code generator and a runtime into the build for ~100 lines of
straightforward encoding. Everything here follows localnet-protocol.md section 4:

* a frame is a u32 big-endian length followed by one protobuf ``GSB_API.Packet``;
* ``Packet`` is a oneof: the field number says which message is inside (table below);
* proto3 rules: fields equal to their default (0, "", b"", False) are not written;
* call payloads are flexbuffers (serde's encoding on the Rust side); a receiver accepts
  zlib-compressed data too.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from flatbuffers import flexbuffers

from golem_deploy.errors import GolemDeployError

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
