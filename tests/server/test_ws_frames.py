"""RFC 6455 client frame parsing: messages, fragments, control frames and every violation."""

from __future__ import annotations

import os
import struct

import pytest

from roomcast.ws.frames import (
    MAX_FRAGMENTS,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    Frame,
    FrameError,
    FrameParser,
    close_payload,
    parse_close,
    unmask,
)
from tests.support.rawws import frame


def test_unmask_roundtrip() -> None:
    data = os.urandom(1001)
    mask = os.urandom(4)
    assert unmask(unmask(data, mask), mask) == data
    assert unmask(b"", mask) == b""


@pytest.mark.parametrize("size", [0, 5, 125, 126, 300, 65535, 65536, 70000])
def test_message_sizes(size: int) -> None:
    payload = os.urandom(size)
    assert FrameParser(1 << 20).feed(frame(OP_BINARY, payload)) == [Frame(OP_BINARY, payload)]


def test_byte_by_byte_and_several_per_feed() -> None:
    parser = FrameParser(1024)
    data = frame(OP_TEXT, b"hello") + frame(OP_PING, b"p") + frame(OP_TEXT, b"world")
    out: list[Frame] = []
    for i in range(len(data)):
        out += parser.feed(data[i : i + 1])
    assert out == [Frame(OP_TEXT, b"hello"), Frame(OP_PING, b"p"), Frame(OP_TEXT, b"world")]
    assert FrameParser(1024).feed(data) == out


def test_fragments_with_interleaved_control_frame() -> None:
    data = (
        frame(OP_TEXT, b"he", fin=False)
        + frame(OP_PING, b"")
        + frame(0, b"ll", fin=False)
        + frame(0, b"o")
    )
    assert FrameParser(1024).feed(data) == [Frame(OP_PING, b""), Frame(OP_TEXT, b"hello")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(OP_TEXT, b"x", masked=False), 1002),
        (frame(OP_TEXT, b"x", rsv=1), 1002),
        (frame(0x3, b"x"), 1002),
        (frame(0, b"x"), 1002),
        (frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), 1002),
        (frame(OP_PING, b"x" * 126), 1002),
        (frame(OP_CLOSE, b"", fin=False), 1002),
        (frame(OP_TEXT, b"x" * 2000), 1009),
        (frame(OP_TEXT, b"x" * 600, fin=False) + frame(0, b"x" * 600), 1009),
    ],
    ids=[
        "unmasked",
        "rsv",
        "opcode",
        "lone-continuation",
        "nested-message",
        "long-ping",
        "fragmented-close",
        "too-big",
        "too-big-in-fragments",
    ],
)
def test_violations(data: bytes, code: int) -> None:
    with pytest.raises(FrameError) as error:
        FrameParser(1024).feed(data)
    assert error.value.code == code


def test_endless_empty_continuations_close_1009() -> None:
    """Zero-length fragments never reach the size limit; their count is limited instead."""
    parser = FrameParser(1024)
    parser.feed(frame(OP_TEXT, b"", fin=False))
    empty = frame(OP_CONTINUATION, b"", fin=False)
    with pytest.raises(FrameError) as error:
        for _ in range(MAX_FRAGMENTS):
            parser.feed(empty)
    assert error.value.code == 1009


def test_many_fragments_below_the_limit_make_one_message() -> None:
    parser = FrameParser(1024)
    data = frame(OP_TEXT, b"a", fin=False)
    data += frame(OP_CONTINUATION, b"", fin=False) * (MAX_FRAGMENTS - 2)
    data += frame(OP_CONTINUATION, b"b")
    assert parser.feed(data) == [Frame(OP_TEXT, b"ab")]


def test_huge_declared_length_refused_before_buffering() -> None:
    header = bytes((0x81, 0x80 | 127)) + struct.pack("!Q", 2**63 - 1) + os.urandom(4)
    with pytest.raises(FrameError) as error:
        FrameParser(65536).feed(header)
    assert error.value.code == 1009


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", (1005, "")),
        (close_payload(1000, "bye"), (1000, "bye")),
        (close_payload(4000, "custom"), (4000, "custom")),
    ],
)
def test_close_payloads(payload: bytes, expected: tuple[int, str]) -> None:
    assert parse_close(payload) == expected


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),
        (struct.pack("!H", 1006), 1002),
        (struct.pack("!H", 999), 1002),
        (struct.pack("!H", 1000) + b"\xff\xfe", 1007),
    ],
    ids=["one-byte", "reserved-1006", "below-range", "bad-utf8"],
)
def test_bad_close_payloads(payload: bytes, code: int) -> None:
    with pytest.raises(FrameError) as error:
        parse_close(payload)
    assert error.value.code == code
