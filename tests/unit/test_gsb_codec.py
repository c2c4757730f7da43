"""The GSB wire codec: the exact bytes yagna's router sends and expects (protocol doc §4)."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from golem_deploy.localnet import gsb


def test_ping_and_pong_frames_match_the_router_bytes() -> None:
    assert gsb.encode_frame(gsb.Pong()) == bytes.fromhex("00 00 00 02 7a 00")
    assert gsb.encode_frame(gsb.Ping()) == bytes.fromhex("00 00 00 02 72 00")
    assert isinstance(gsb.decode_packet(bytes.fromhex("72 00")), gsb.Ping)


def test_enum_400_is_the_varint_90_03() -> None:
    assert gsb.encode_varint(400) == bytes.fromhex("90 03")
    encoded = gsb.RegisterReply(code=400).encode()
    assert encoded == bytes.fromhex("08 90 03")


def test_proto3_defaults_are_omitted() -> None:
    # A FULL, code-0 reply carries only request_id and data; an OK RegisterReply is empty.
    assert gsb.RegisterReply().encode() == b""
    reply = gsb.CallReply(request_id="7", data=b"\x01").encode()
    assert reply == b"\x0a\x017" + b"\x22\x01\x01"


def test_call_request_field_numbers() -> None:
    packet = gsb.encode_packet(gsb.CallRequest("c", "/a", "r1", b"xy", True))
    # Packet field 6 (CallRequest), wire type 2 -> key 0x32.
    assert packet[0] == 0x32
    body = packet[2:]
    assert body == b"\x0a\x01c" + b"\x12\x02/a" + b"\x1a\x02r1" + b"\x22\x02xy" + b"\x28\x01"


def test_unknown_fields_and_packets_are_tolerated() -> None:
    # field 9 (varint) inside a RegisterReply is ignored; packet kind 13 is kept as unknown.
    assert gsb.RegisterReply.decode(b"\x48\x05\x08\x01") == gsb.RegisterReply(code=1)
    unknown = gsb.decode_packet(b"\x6a\x00")
    assert isinstance(unknown, gsb.UnknownPacket) and unknown.field == 13


def test_truncated_data_is_an_error_not_garbage() -> None:
    with pytest.raises(gsb.GsbError):
        gsb.decode_packet(b"\x32\x05\x0a\x01")
    with pytest.raises(gsb.GsbError):
        gsb.decode_varint(b"\x80", 0)


def test_negative_ints_use_64_bit_twos_complement() -> None:
    assert gsb.encode_varint(-1) == b"\xff" * 9 + b"\x01"
    assert gsb.decode_varint(gsb.encode_varint(-1), 0)[0] == (1 << 64) - 1


def test_payloads_accept_zlib_compressed_data() -> None:
    value = {"Ok": {"state": ["Ready", None]}}
    raw = gsb.dumps(value)
    assert gsb.loads(raw) == value
    assert gsb.loads(zlib.compress(raw)) == value
    assert gsb.loads(b"") is None


def test_blobs_decode_as_bytes() -> None:
    assert gsb.loads(gsb.dumps({"content": b"\x00\x01"})) == {"content": b"\x00\x01"}


_text = st.text(max_size=40)
_blob = st.binary(max_size=64)
_packets = st.one_of(
    st.builds(gsb.Hello, _text, _text, _blob),
    st.builds(gsb.RegisterRequest, _text),
    st.builds(gsb.RegisterReply, st.sampled_from([0, 400, 409]), _text),
    st.builds(gsb.UnregisterRequest, _text),
    st.builds(gsb.UnregisterReply, st.sampled_from([0, 404])),
    st.builds(gsb.CallRequest, _text, _text, _text, _blob, st.booleans()),
    st.builds(gsb.CallReply, _text, st.sampled_from([0, 400, 500]), st.sampled_from([0, 1]), _blob),
    st.just(gsb.Ping()),
    st.just(gsb.Pong()),
)


@given(_packets)
def test_every_packet_round_trips_through_a_frame(packet: gsb._Message) -> None:
    frame = gsb.encode_frame(packet)
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert gsb.decode_packet(frame[4:]) == packet


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_varints_round_trip(value: int) -> None:
    encoded = gsb.encode_varint(value)
    assert gsb.decode_varint(encoded, 0) == (value, len(encoded))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.text(max_size=20),
    # Map keys are serde field names: ASCII identifiers (flexbuffers keys are C strings).
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True), inner, max_size=4
        )
    ),
    max_leaves=20,
)


@given(_json)
def test_payloads_round_trip(value: object) -> None:
    assert gsb.loads(gsb.dumps(value)) == value
