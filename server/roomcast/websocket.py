"""aiohttp WebSocket adapter: per-connection outboxes flushed once per loop turn.

Frames bound for one connection in the same loop turn are joined with ``\\n``
(the protocol allows several messages per frame) and written with one
``transport.write``: the syscall, not Python, dominates fan-out cost. Frames are
built here (server frames are unmasked, so this is a header plus the payload)
and written straight to the asyncio transport, bypassing aiohttp's per-message
coroutine. A connection whose unsent bytes pass ``queue_max_size`` is closed
with the ``slow`` code instead of being awaited.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from aiohttp import WSMsgType, web

from .codes import DisconnectCode

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger(__name__)

_MAX_FRAME_PAYLOAD_BYTES = 65_536


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65_536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def outbox_frames(outbox: list[bytes], frames: dict[int, bytes] | None) -> bytes:
    """The bytes of one flush: messages joined into as few frames as possible.

    A lone message (the usual case in fan-out) is framed once per loop turn and the
    frame shared by every recipient through ``frames``, keyed by the message object.
    """
    if len(outbox) == 1:
        message = outbox[0]
        key = id(message)
        data = frames.get(key) if frames is not None else None
        if data is None:
            data = text_frame(message)
            if frames is not None:
                frames[key] = data
        return data
    return b"".join(text_frame(b"\n".join(chunk)) for chunk in chunks(outbox))


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


class WebSocketTransport:
    """One client's socket: outbox, coalesced writes, slow-consumer guard, read loop, close.

    The close handshake always runs in the connection's own task: a close requested
    from elsewhere (heartbeat, server API, drain) interrupts the pending read, and the
    loop then sends the close frame and waits for the client's reply. Closing from
    another task while a read is pending would make aiohttp drop the TCP connection
    before the client answers, and clients would see 1006 instead of our code.
    """

    __slots__ = (
        "_close_request",
        "_closed",
        "_flusher",
        "_outbox",
        "_queue_max",
        "_raw",
        "_reading",
        "_task",
        "_ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        raw: asyncio.Transport,
        flusher: Flusher,
        queue_max_bytes: int,
    ) -> None:
        self._ws = ws
        self._raw = raw
        self._flusher = flusher
        self._queue_max = queue_max_bytes
        self._outbox: list[bytes] = []
        self._closed = False
        self._close_request: tuple[int, str, bool] | None = None
        self._reading = False
        self._task: asyncio.Task[object] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, message: bytes) -> None:
        if self._closed:
            return
        outbox = self._outbox
        outbox.append(message)
        if len(outbox) == 1:
            self._flusher.mark(self)

    def flush(self, frames: dict[int, bytes] | None = None) -> None:
        """Write the outbox as few frames as possible."""
        outbox = self._outbox
        if not outbox:
            return
        self._outbox = []
        if self._closed and self._close_request is None:
            return  # the peer is gone
        raw = self._raw
        if raw.is_closing():
            return
        raw.write(outbox_frames(outbox, frames))
        if raw.get_write_buffer_size() > self._queue_max:
            self.close(DisconnectCode.SLOW, "slow", drain=False)

    def close(self, code: int, reason: str, *, drain: bool = True) -> None:
        """Queue the close: what is queued is written first, then the close handshake."""
        if self._close_request is not None or self._closed:
            return
        self._close_request = (code, reason, drain)
        self.flush()
        self._closed = True
        task = self._task
        if self._reading and task is not None and task is not asyncio.current_task():
            task.cancel()

    async def serve(
        self,
        on_text: Callable[[str], Awaitable[None]],
        on_binary: Callable[[], None],
        close_timeout: float,
    ) -> None:
        """Read frames until either side closes; runs in the connection's handler task."""
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        ws = self._ws
        try:
            while self._close_request is None:
                self._reading = True
                try:
                    msg = await ws.receive()
                except asyncio.CancelledError:
                    if self._close_request is not None and task.cancelling() == 1:
                        task.uncancel()
                        break
                    raise
                finally:
                    self._reading = False
                if msg.type is WSMsgType.TEXT:
                    await on_text(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    on_binary()
                else:
                    break  # close, closing, closed or error: aiohttp has answered
        finally:
            if self._close_request is None:
                self._closed = True  # the peer went away
                self._outbox.clear()
        await self._close_handshake(close_timeout)

    async def _close_handshake(self, wait_seconds: float) -> None:
        request = self._close_request
        if request is None or self._ws.closed:
            return
        code, reason, drain = request
        try:
            async with asyncio.timeout(wait_seconds + 1):
                await self._ws.close(code=code, message=reason.encode()[:123], drain=drain)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            log.debug("close handshake failed", extra={"error": str(exc)})
            self._raw.abort()


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
