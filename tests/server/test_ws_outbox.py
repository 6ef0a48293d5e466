"""Frame building of the outbox writer."""

from __future__ import annotations

import struct

import pytest

from roomcast.ws.frames import text_frame
from roomcast.ws.outbox import chunks


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_text_frame_lengths(size: int) -> None:
    payload = b"x" * size
    frame = text_frame(payload)
    assert frame[0] == 0x81
    if size < 126:
        assert frame[1] == size and frame[2:] == payload
    elif size < 65536:
        assert frame[1] == 126 and struct.unpack("!H", frame[2:4])[0] == size
        assert frame[4:] == payload
    else:
        assert frame[1] == 127 and struct.unpack("!Q", frame[2:10])[0] == size
        assert frame[10:] == payload


def test_chunks_keep_frames_near_the_limit() -> None:
    messages = [b"y" * 30_000] * 5
    groups = chunks(messages)
    assert sum(len(g) for g in groups) == 5
    assert all(sum(len(m) + 1 for m in g) <= 65_536 for g in groups)
