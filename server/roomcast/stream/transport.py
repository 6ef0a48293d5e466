"""One streamed HTTP response as the ``Transport`` of a ``Client``.

Messages are framed for the kind of stream (newline-delimited JSON, length-prefixed
Protobuf, or SSE events) and written by the request handler that holds the
response open (``pump``), a loop turn's messages in one write. Commands reach the
client through ``submit``, one batch at a time and in the order they arrived,
since the SDK sends each in its own request. A stream cannot carry a close code:
a disconnect is a ``disconnect`` push written before the response ends.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from roomcast import protobuf
from roomcast.codes import DisconnectCode
from roomcast.transport import record_close

if TYPE_CHECKING:
    from roomcast.client import Client
    from roomcast.node import Node

log = logging.getLogger(__name__)


class Framing(enum.Enum):
    """How one message is cut out of the stream by the SDK."""

    LINES = "http_stream"  # JSON, one message a line
    LENGTH_PREFIXED = "http_stream_protobuf"  # Protobuf replies carry their length already
    EVENTS = "sse"  # one ``data:`` event a message

    def frame(self, message: bytes) -> bytes:
        if self is Framing.LINES:
            return message + b"\n"
        if self is Framing.EVENTS:
            return b"data: " + message + b"\n\n"
        return message

    @property
    def transport(self) -> str:
        """The ``transport`` label of the stream's sessions in the metrics."""
        return _TRANSPORTS[self]


#: the transport of each framing (Protobuf is HTTP streaming too)
_TRANSPORTS = {
    Framing.LINES: "http_stream",
    Framing.LENGTH_PREFIXED: "http_stream",
    Framing.EVENTS: "sse",
}
#: the ``transport`` label values, each exported even while it has no session
TRANSPORTS = tuple(dict.fromkeys(_TRANSPORTS.values()))


class _State(enum.Enum):
    OPEN = 1
    CLOSING = 2  # the last bytes (a disconnect push) are being written
    CLOSED = 3


class StreamTransport:
    """A ``Transport`` over a streamed response; see the module docstring."""

    __slots__ = (
        "_busy",
        "_client",
        "_framing",
        "_node",
        "_pending",
        "_pending_size",
        "_queue",
        "_raw",
        "_ready",
        "_state",
        "session",
        "transport",
    )

    def __init__(self, node: Node, framing: Framing) -> None:
        self._node = node
        self._framing = framing
        self.session = uuid.uuid4().hex
        self.transport = framing.transport
        self._state = _State.OPEN
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._ready = asyncio.Event()
        self._client: Client | None = None
        self._queue: collections.deque[tuple[str | bytes, asyncio.Future[None]]] = (
            collections.deque()
        )
        self._busy: asyncio.Task[None] | None = None
        self._raw: asyncio.Transport | None = None

    def attach(self, client: Client) -> None:
        self._client = client

    # Transport ---------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._state is not _State.OPEN

    @property
    def binary(self) -> bool:
        return self._framing is Framing.LENGTH_PREFIXED

    def send(self, message: bytes) -> None:
        if self._state is not _State.OPEN:
            return
        data = self._framing.frame(message)
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > self._node.settings.client.queue_max_size:
            self.close(DisconnectCode.SLOW, "slow")
            return
        self._ready.set()

    def close(self, code: int, reason: str) -> None:
        """Write what is queued and a ``disconnect`` push, then end the response."""
        if self._state is not _State.OPEN:
            return
        self._state = _State.CLOSING
        client_id = self._client.id if self._client is not None else ""
        record_close(log, self._node.metrics, code, reason, client_id)
        if code != DisconnectCode.CONNECTION_CLOSED:  # as Centrifugo: that one goes unsaid
            push = {"push": {"disconnect": {"code": code, "reason": reason}}}
            encoded = protobuf.encode_reply(push) if self.binary else orjson.dumps(push)
            self._pending.append(self._framing.frame(encoded))
        self._ready.set()
        # A peer that stopped reading keeps the last write waiting: cut it, as on WebSocket.
        asyncio.get_running_loop().call_later(
            self._node.settings.websocket.close_timeout, self._abort_if_open
        )

    def _abort_if_open(self) -> None:
        raw = self._raw
        if self._state is not _State.CLOSED and raw is not None and not raw.is_closing():
            raw.abort()

    # The response ------------------------------------------------------------
    async def pump(self, response: web.StreamResponse, raw: asyncio.Transport) -> None:
        """Write queued messages until the transport closes or the peer goes away.

        A write waits while the socket's buffer is full; what is sent meanwhile
        queues up to ``client.queue_max_size``, past which the stream closes (3008).
        """
        self._raw = raw
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                if self._state is _State.CLOSED:
                    return
                if self._pending:
                    data = b"".join(self._pending)
                    self._pending.clear()
                    self._pending_size = 0
                    await response.write(data)
                if self._state is _State.CLOSING:
                    return
        except ConnectionError:
            if self._state is _State.OPEN:
                self._node.metrics.count_disconnect(DisconnectCode.WRITE_ERROR)
        finally:
            self._state = _State.CLOSED
            self._pending.clear()

    def lost(self) -> None:
        """The peer closed the connection: stop writing."""
        if self._state is not _State.CLOSED:
            self._state = _State.CLOSED
            self._ready.set()

    # Commands ----------------------------------------------------------------
    def submit(self, data: str | bytes, max_pending: int) -> asyncio.Future[None] | None:
        """Queue one request's commands; the future is done once they are handled.

        None when ``max_pending`` requests already wait: the caller answers 429.
        """
        if len(self._queue) >= max_pending:
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((data, done))
        if self._busy is None:
            self._busy = asyncio.ensure_future(self._run())
        return done

    async def _run(self) -> None:
        client = self._client
        assert client is not None
        queue = self._queue
        try:
            while queue:
                data, done = queue.popleft()
                try:
                    if self._state is _State.OPEN:
                        await client.handle_frame(data)
                except Exception:
                    log.exception("emulation request handling failed")
                    self.close(DisconnectCode.SERVER_ERROR, "internal server error")
                finally:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._busy = None

    async def finished(self) -> None:
        """Wait for the commands under way (cleanup must come after them)."""
        busy = self._busy
        if busy is not None:
            await asyncio.wait((busy,))


class LossWatcher(asyncio.Protocol):
    """Stands between a socket and aiohttp's protocol to learn at once that it closed.

    aiohttp does not tell a handler that keeps a response open when its peer goes
    away; a stream would otherwise hold its subscriptions and presence until a write
    fails. Everything is passed on to aiohttp's protocol unchanged.
    """

    def __init__(self, inner: asyncio.BaseProtocol, on_lost: Callable[[], None]) -> None:
        self._inner = inner
        self._on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        assert isinstance(self._inner, asyncio.Protocol)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        assert isinstance(self._inner, asyncio.Protocol)
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()
        self._inner.connection_lost(exc)
