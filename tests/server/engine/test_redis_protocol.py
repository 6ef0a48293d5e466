"""The subscriber side of a Redis connection, fed the bytes Redis pushes (no server)."""

from __future__ import annotations

import time

from roomcast.engine.redis_protocol import RedisConnection


def pushed(channel: bytes, payload: bytes) -> bytes:
    """A pub/sub message as Redis writes it to a subscriber (RESP2)."""
    parts = (b"message", channel, payload)
    return b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


async def test_messages_of_one_read_carry_the_time_the_read_arrived() -> None:
    got: list[tuple[bytes, bytes, float]] = []
    conn = RedisConnection(
        on_message=lambda key, frame, received: got.append((key, frame, received))
    )
    first = pushed(b"a", b"p1::0:0:{}") + pushed(b"b", b"p2::0:0:{}")
    before = time.monotonic()
    conn.data_received(first + pushed(b"c", b"p3::0:0:{}")[:9])  # the third arrives in parts
    between = time.monotonic()
    conn.data_received(pushed(b"c", b"p3::0:0:{}")[9:])
    after = time.monotonic()
    assert [(key, frame) for key, frame, _ in got] == [
        (b"a", b"p1::0:0:{}"),
        (b"b", b"p2::0:0:{}"),
        (b"c", b"p3::0:0:{}"),
    ]
    assert got[0][2] == got[1][2] and before <= got[0][2] <= between
    assert between <= got[2][2] <= after
