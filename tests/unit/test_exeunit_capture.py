"""Output capture modes of `run` commands (yagna-rest.md §5.2), as requestors see them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from golem_deploy.localnet.exeunit_capture import Capture


def feed_all(capture: Capture, chunks: list[bytes]) -> list[object]:
    events = [capture.feed(chunk) for chunk in chunks]
    return [e for e in events if e is not None]


def test_no_capture_discards_everything() -> None:
    capture = Capture(None)
    assert feed_all(capture, [b"hello"]) == []
    assert capture.result() is None


def test_stream_mode_emits_every_chunk_and_keeps_all() -> None:
    capture = Capture({"stream": {}})
    assert feed_all(capture, [b"a\n", b"b\n"]) == ["a\n", "b\n"]
    assert capture.result() == "a\nb\n"


def test_stream_limit_keeps_and_streams_only_the_first_bytes() -> None:
    capture = Capture({"stream": {"limit": 3}})
    assert feed_all(capture, [b"ab", b"cdef", b"gh"]) == ["ab", "c"]
    assert capture.result() == "abc"


def test_at_end_modes_emit_nothing_and_keep_their_part() -> None:
    data = [b"0123", b"456", b"789"]
    expected = {
        None: "0123456789",
        "head": "0123",
        "tail": "6789",
        "headTail": "01289",  # ceil(5/2)=3 first + floor(5/2)=2 last
    }
    for part, result in expected.items():
        size = 5 if part == "headTail" else 4
        capture = Capture({"atEnd": {} if part is None else {part: size}})
        assert feed_all(capture, data) == []
        assert capture.result() == result, part


def test_binary_format_gives_byte_values() -> None:
    capture = Capture({"stream": {"format": "bin"}})
    assert feed_all(capture, [b"\x00\xff"]) == [[0, 255]]
    assert capture.result() == [0, 255]
    assert Capture({"atEnd": {"format": "binary"}}).result() is None  # empty -> null


def test_text_survives_multibyte_characters_split_across_chunks() -> None:
    text = "zażółć".encode()
    capture = Capture({"stream": {}})
    events = feed_all(capture, [text[:3], text[3:]])
    assert "".join(str(e) for e in events) == "zażółć"
    assert capture.result() == "zażółć"


@given(st.lists(st.binary(max_size=20), max_size=8), st.integers(min_value=0, max_value=40))
def test_head_and_tail_are_the_true_ends_of_the_output(chunks: list[bytes], n: int) -> None:
    whole = b"".join(chunks)
    head = Capture({"atEnd": {"head": n, "format": "bin"}})
    tail = Capture({"atEnd": {"tail": n, "format": "bin"}})
    both = Capture({"atEnd": {"headTail": n, "format": "bin"}})
    for chunk in chunks:
        head.feed(chunk)
        tail.feed(chunk)
        both.feed(chunk)
    assert head.result() == (list(whole[:n]) or None)
    assert tail.result() == (list(whole[max(0, len(whole) - n) :] if n else b"") or None)
    h, t = (n + 1) // 2, n // 2
    expected = whole if len(whole) <= n else whole[:h] + (whole[len(whole) - t :] if t else b"")
    assert both.result() == (list(expected) or None)
