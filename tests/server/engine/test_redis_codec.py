"""The pub/sub frames nodes of two releases exchange during a rolling update.

``RELEASED_FRAME`` is a frame as the release before timed frames writes it (bytes
fixed here, not produced by today's encoder), and ``released_decode`` is that
release's reader: it takes ``p`` frames with the grammar below and skips every kind
it does not know. The first is what new nodes must still read; the second is why
they write timed frames only once no such node is live (see ``RedisEngine.announce``,
tested against Redis in ``test_redis_engine``).
"""

from __future__ import annotations

import pytest

from roomcast.engine.redis_codec import (
    decode_body,
    decode_message,
    decode_timed_message,
    timed_prefix,
)

RELEASED_FRAME = (
    b'p7:ZxYwVuTs:50:17:{"user":"u1","client":"c1","conn_info":{"x":true}}{"k":"v","n":"1"}{"n":1}'
)
#: a node whose wall clock read 1_700_000_001.0 when its monotonic clock read 100.0
WALL_OFFSET = 1_700_000_001.0 - 100.0


def released_decode(frame: bytes) -> tuple[int, bytes, bytes] | None:
    """The reader of the release before timed frames: (offset, epoch, data), or None
    for a frame it skips."""
    if frame[:1] != b"p":
        return None
    i = frame.index(b":", 1)
    offset = int(frame[1:i])
    j = frame.index(b":", i + 1)
    k = frame.index(b":", j + 1)
    m = frame.index(b":", k + 1)
    info_len, tags_len = int(frame[j + 1 : k]), int(frame[k + 1 : m])
    return offset, frame[i + 1 : j], frame[m + 1 + info_len + tags_len :]


def test_a_released_frame_is_read_and_timed_from_its_arrival() -> None:
    offset, epoch, pub = decode_message(RELEASED_FRAME, received=100.0)
    assert (offset, epoch, pub.data) == (7, b"ZxYwVuTs", b'{"n":1}')
    assert pub.info is not None and (pub.info.user, pub.info.conn_info) == ("u1", b'{"x":true}')
    assert pub.tags == {"k": "v", "n": "1"}
    assert pub.created == 100.0


def test_a_stream_entry_holds_the_body_of_the_frame() -> None:
    body = RELEASED_FRAME.split(b":", 2)[2]
    pub = decode_body(body, 7)
    _, _, from_frame = decode_message(RELEASED_FRAME, received=0.0)
    assert pub == from_frame and pub.created == 0.0


def test_a_timed_frame_is_timed_from_its_publisher() -> None:
    frame = timed_prefix(1_700_000_000.25) + RELEASED_FRAME
    offset, epoch, pub = decode_timed_message(frame, received=100.0, wall_offset=WALL_OFFSET)
    assert (offset, epoch, pub.data) == (7, b"ZxYwVuTs", b'{"n":1}')
    assert pub.created == pytest.approx(100.0 - 0.75)


def test_a_publisher_clock_ahead_counts_as_no_time_on_the_way() -> None:
    frame = timed_prefix(1_700_000_002.0) + RELEASED_FRAME
    _, _, pub = decode_timed_message(frame, received=100.0, wall_offset=WALL_OFFSET)
    assert pub.created == 100.0


@pytest.mark.parametrize(
    "frame",
    [
        b"tnow:" + RELEASED_FRAME,
        b"t1700000000000000:j{}",
        b"t1700000000000000",
        b"t:p",
        b"t1700000000000000:" + RELEASED_FRAME.replace(b"ZxYwVuTs:", b""),  # no epoch
        b"t1700000000000000:x" + RELEASED_FRAME[1:],  # a kind other than p inside
    ],
)
def test_a_malformed_timed_frame_is_a_value_error(frame: bytes) -> None:
    """The shard logs a ValueError as a bad message from Redis and reads on."""
    with pytest.raises(ValueError):
        decode_timed_message(frame, received=100.0, wall_offset=WALL_OFFSET)


def test_the_released_reader_skips_timed_frames() -> None:
    """So a timed frame is lost on a node of the earlier release: it must never get one."""
    assert released_decode(RELEASED_FRAME) == (7, b"ZxYwVuTs", b'{"n":1}')
    assert released_decode(timed_prefix(1_700_000_000.0) + RELEASED_FRAME) is None
