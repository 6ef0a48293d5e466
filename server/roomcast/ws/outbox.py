"""Per-connection outboxes flushed once per loop turn.

Messages bound for one connection in the same loop turn are joined with ``\\n``
(the JSON protocol allows several messages per frame; Protobuf messages carry their
length and are simply concatenated into binary frames) and written with one
``transport.write``: the syscall, not Python, dominates fan-out cost. A lone
message, the usual case in fan-out, is framed once and the frame shared by every
recipient of that loop turn.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from .frames import binary_frame, text_frame

if TYPE_CHECKING:
    from roomcast.metrics import Metrics

_MAX_FRAME_PAYLOAD_BYTES = 65_536


def outbox_frames(
    outbox: list[bytes], frames: dict[int, bytes] | None, *, binary: bool = False
) -> bytes:
    """The bytes of one flush: messages joined into as few frames as possible.

    ``frames`` caches the frame of a lone message by the message object's id, for
    the other recipients flushed in the same loop turn.
    """
    if len(outbox) == 1:
        message = outbox[0]
        key = id(message)
        data = frames.get(key) if frames is not None else None
        if data is None:
            data = binary_frame(message) if binary else text_frame(message)
            if frames is not None:
                frames[key] = data
        return data
    if binary:
        return b"".join(binary_frame(b"".join(chunk)) for chunk in chunks(outbox))
    return b"".join(text_frame(b"\n".join(chunk)) for chunk in chunks(outbox))


def chunks(messages: list[bytes]) -> list[list[bytes]]:
    """Split messages into groups whose joined payload stays near one frame limit."""
    groups: list[list[bytes]] = [[]]
    size = 0
    for message in messages:
        if size and size + len(message) > _MAX_FRAME_PAYLOAD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(message)
        size += len(message) + 1
    return groups


class Flushable(Protocol):
    def flush(self, frames: dict[int, bytes] | None = None) -> None: ...


class Flusher:
    """Writes every dirty outbox once at the end of the current loop turn."""

    def __init__(self, metrics: Metrics) -> None:
        self._dirty: list[Flushable] = []
        self._scheduled = False
        self._metrics = metrics
        self._loop = asyncio.get_running_loop()

    def mark(self, transport: Flushable) -> None:
        self._dirty.append(transport)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        frames: dict[int, bytes] = {}  # one frame per message shared by its recipients
        for transport in dirty:
            transport.flush(frames)
        self._metrics.frames_written()
