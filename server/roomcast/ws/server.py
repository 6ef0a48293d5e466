"""The listening socket's protocol: WebSocket clients without aiohttp's per-connection weight.

Every accepted socket starts here. A first request head that is a GET of the
WebSocket path, byte for byte, is answered here and the socket stays with this
small protocol object (a frame parser, an outbox, the ``Client``) for its life.
Anything else goes, head and all, to aiohttp, which routes on the decoded path:
the server API, health and metrics, and also the WebSocket path in any other form
(percent-encoded, with a fragment, absolute-form, an upgrade on a kept-alive
connection). aiohttp then hands the socket back through ``upgrade_handler``, so
every upgrade gets the same answer and the same ``ConnectionProtocol``.

A WebSocket connection costs no aiohttp request, parser, queue or task: an idle
one holds a few KiB, and a frame of commands runs in a task only while it is
being handled. Every close, whoever asks for it, goes through ``_closing``, which
counts it by code and logs it.

Two bounds cut a client that does not keep up, both with 3008: the bytes waiting in
the send buffer (``client.queue_max_size``), and time without progress
(``websocket.write_timeout``): while writing is paused, a connection whose send buffer
has not shrunk at all within that time is reading nothing, however little it is sent.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from roomcast.client import Client
from roomcast.codes import DisconnectCode
from roomcast.origins import OriginPolicy
from roomcast.transport import record_close

from .frames import (
    CLOSE_INVALID_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameParser,
    close_payload,
    parse_close,
    server_frame,
)
from .handshake import Acceptance, Refusal, answer, lower_headers, parse_headers
from .outbox import Flusher, outbox_frames

if TYPE_CHECKING:
    from roomcast.node import Node

log = logging.getLogger(__name__)
access_log = logging.getLogger("roomcast.access")

MAX_HEAD_BYTES = 16_384
_BACKLOG_PAUSE = 32  # frames queued behind a busy one before reading pauses
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
#: Closes logged at debug level: the server's own orderly ones, many at once in a drain.


class _State(enum.Enum):
    HEAD = 1
    OPEN = 2
    CLOSING = 3
    CLOSED = 4


class Session(Protocol):
    """What an upgraded connection hands its messages to: a ``Client`` in production."""

    async def handle_frame(self, data: str | bytes) -> None:
        """Commands: a text frame (JSON), or a binary frame on a binary connection."""

    def handle_binary(self, payload: bytes) -> None:
        """A binary frame on a text connection."""

    async def cleanup(self) -> None: ...


def client_session(node: Node, protocol: ConnectionProtocol, remote: str) -> Client:
    return Client(node, protocol, remote)


class Gateway:
    """What every connection protocol shares: settings, node, the flusher, aiohttp.

    ``flusher`` exists once the loop runs (the app's startup sets it) and
    ``http_protocol`` once aiohttp's server is set up (the listener sets it).
    ``any_path`` and ``session_factory`` exist for the frame-conformance suite,
    which drives the same protocol with an echo session on the paths its cases choose.
    """

    def __init__(
        self,
        node: Node,
        connections: set[Client],
        *,
        session_factory: Callable[[Node, ConnectionProtocol, str], Session] = client_session,
        any_path: bool = False,
    ) -> None:
        settings = node.settings
        self.node = node
        self.connections = connections
        self.flusher: Flusher | None = None
        self.http_protocol: Callable[[], asyncio.Protocol] | None = None
        self.path = settings.websocket.handler_prefix.encode()
        self.any_path = any_path
        self.session_factory = session_factory
        self.max_message_size = settings.websocket.message_size_limit
        self.handshake_timeout = settings.websocket.handshake_timeout
        self.close_timeout = settings.websocket.close_timeout
        self.write_timeout = settings.websocket.write_timeout
        self.queue_max = settings.client.queue_max_size
        self.origins = OriginPolicy(settings.client.allowed_origins)

    def __call__(self) -> ConnectionProtocol:
        return ConnectionProtocol(self)

    def answer(self, headers: dict[str, str]) -> Refusal | Acceptance:
        return answer(headers, self.node, self.connections, self.origins)


def upgrade_handler(gateway: Gateway) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """aiohttp's route for the WebSocket path: the socket is handed to ``ConnectionProtocol``.

    aiohttp only sees upgrades the listening socket did not take itself (see the
    module docstring). Its request handler stays parked in this coroutine until
    the connection ends, because aiohttp closes a socket whose handler returns.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        decision = gateway.answer(lower_headers(request.headers.items()))
        if isinstance(decision, Refusal):
            refused = web.Response(
                status=decision.status, text=decision.text, headers=dict(decision.headers)
            )
            refused.force_close()
            return refused
        response = web.StreamResponse(status=101, headers=dict(decision.headers))
        await response.prepare(request)
        raw = request.transport
        if raw is None or raw.is_closing():
            return response
        connection = gateway()
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        http = request.protocol

        def forget(exc: BaseException | None) -> None:
            http.connection_lost(exc)  # aiohttp's bookkeeping of the socket it gave away
            if not lost.done():
                lost.set_result(None)

        connection.adopt(raw, forget, binary=decision.binary)
        http.set_parser(_Forward(connection))  # type: ignore[arg-type]  # bytes already read
        raw.set_protocol(connection)
        await lost
        return response

    return handle


class _Forward:
    """Takes what aiohttp read past the upgrade request and gives it to the connection."""

    __slots__ = ("_connection",)

    def __init__(self, connection: ConnectionProtocol) -> None:
        self._connection = connection

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._connection.data_received(data)
        return False, b""

    def feed_eof(self) -> None:
        return None


class ConnectionProtocol(asyncio.Protocol):
    """One accepted socket; after an upgrade, the ``Transport`` a ``Client`` writes to."""

    __slots__ = (
        "_backlog",
        "_binary",
        "_busy",
        "_client",
        "_deadline",
        "_gateway",
        "_head",
        "_on_lost",
        "_outbox",
        "_parser",
        "_pong",
        "_raw",
        "_reading_paused",
        "_stall",
        "_state",
        "_unsent",
        "_writing_paused",
    )

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._state = _State.HEAD
        self._head = bytearray()
        self._raw: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._parser: FrameParser | None = None
        self._client: Session | None = None
        self._outbox: list[bytes] = []
        self._busy: asyncio.Task[None] | None = None
        self._backlog: collections.deque[str | bytes] | None = None
        self._binary = False
        self._reading_paused = False
        self._writing_paused = False
        self._stall: asyncio.TimerHandle | None = None
        self._unsent = 0
        self._pong: bytes | None = None
        self._on_lost: Callable[[BaseException | None], None] | None = None

    # asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._gateway.handshake_timeout, self._head_timeout)

    def data_received(self, data: bytes) -> None:
        if self._state is _State.HEAD:
            self._receive_head(data)
        elif self._state is not _State.CLOSED:
            self._receive_frames(data)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        previous = self._state
        self._state = _State.CLOSED
        self._outbox.clear()
        self._pong = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        client = self._client
        if client is not None and previous is not _State.HEAD:
            if isinstance(client, Client):
                self._gateway.connections.discard(client)
            self._gateway.node.spawn(self._teardown(client))
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            on_lost(exc)

    def pause_writing(self) -> None:
        """The send buffer passed its high-water mark: pongs wait (see ``_write_pong``),
        and the write timeout starts watching for progress (see ``_check_progress``).

        Reading goes on: a client slow to read but keeping up must still have its
        commands and pongs read; the queue limit cuts one that does not keep up.
        """
        self._writing_paused = True
        if self._state is _State.OPEN and self._raw is not None:
            self._watch_progress(self._raw)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        pong, self._pong = self._pong, None
        if pong is not None and self._state is not _State.CLOSED:
            self._write_pong(pong)

    def _watch_progress(self, raw: asyncio.Transport) -> None:
        """Note what is unsent now and look again in ``write_timeout``."""
        self._unsent = raw.get_write_buffer_size()
        self._stall = asyncio.get_running_loop().call_later(
            self._gateway.write_timeout, self._check_progress
        )

    def _check_progress(self) -> None:
        """Still paused: cut the client (3008) if not one byte left the send buffer.

        ``_unsent`` grew by every write since the last look, so anything less than
        it now went out: the client read something and gets another period.
        """
        self._stall = None
        raw = self._raw
        if not self._writing_paused or self._state is not _State.OPEN or raw is None:
            return
        if raw.get_write_buffer_size() >= self._unsent:
            self.close(DisconnectCode.SLOW, "slow")
        else:
            self._watch_progress(raw)

    async def _teardown(self, client: Session) -> None:
        """The command still running finishes first; cleanup then undoes all it added."""
        busy = self._busy
        if busy is not None:
            await asyncio.wait((busy,))
        await client.cleanup()

    # Head: upgrade here, or hand over to aiohttp ---------------------------------
    def _head_timeout(self) -> None:
        self._deadline = None
        if self._state is _State.HEAD and self._raw is not None:
            self._raw.close()  # slowloris: the head never finished

    def _receive_head(self, data: bytes) -> None:
        head = self._head
        head += data
        end = head.find(b"\r\n\r\n")
        # The limit holds however the head arrives: in pieces, or whole in one read.
        if (end if end >= 0 else len(head)) > MAX_HEAD_BYTES:
            self._reject(Refusal(431, "request head too large"))
            return
        if end < 0:
            return
        line_end = head.find(b"\r\n")
        parts = bytes(head[:line_end]).split(b" ")
        path = parts[1].split(b"?", 1)[0] if len(parts) == 3 else b""
        gateway = self._gateway
        if parts[0] != b"GET" or (path != gateway.path and not gateway.any_path):
            self._hand_over()
            return
        headers = parse_headers(bytes(head[line_end + 2 : end]))
        rest = bytes(head[end + 4 :])
        self._head = bytearray()
        if headers is None:
            self._reject(Refusal(400, "malformed headers"))
            return
        decision = gateway.answer(headers)
        if isinstance(decision, Refusal):
            self._reject(decision)
            return
        raw = self._raw
        assert raw is not None
        lines = "".join(f"{name}: {value}\r\n" for name, value in decision.headers)
        raw.write(f"HTTP/1.1 101 Switching Protocols\r\n{lines}\r\n".encode())
        self._log_request(101)
        self.adopt(raw, None, binary=decision.binary)
        if rest:
            self._receive_frames(rest)

    def _hand_over(self) -> None:
        """Not ours to answer: aiohttp serves this connection from its first byte."""
        raw = self._raw
        http_protocol = self._gateway.http_protocol
        assert raw is not None and http_protocol is not None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._state = _State.CLOSED
        protocol = http_protocol()
        raw.set_protocol(protocol)
        protocol.connection_made(raw)
        protocol.data_received(bytes(self._head))
        self._head = bytearray()

    def _reject(self, refusal: Refusal) -> None:
        raw = self._raw
        assert raw is not None
        body = refusal.text.encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in refusal.headers)
        raw.write(
            f"HTTP/1.1 {refusal.status} {_REASONS[refusal.status]}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
            + body
        )
        self._log_request(refusal.status)
        self._state = _State.CLOSED
        raw.close()

    def adopt(
        self,
        raw: asyncio.Transport,
        on_lost: Callable[[BaseException | None], None] | None,
        *,
        binary: bool = False,
    ) -> None:
        """Serve ``raw`` as an open WebSocket (the 101 is written) with a new session;
        ``binary`` connections speak the Protobuf encoding in binary frames."""
        gateway = self._gateway
        self._binary = binary
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._raw = raw
        self._on_lost = on_lost
        self._state = _State.OPEN
        self._parser = FrameParser(gateway.max_message_size)
        peer = raw.get_extra_info("peername")
        client = gateway.session_factory(
            gateway.node, self, peer[0] if isinstance(peer, tuple) else ""
        )
        self._client = client
        if isinstance(client, Client):
            gateway.connections.add(client)

    def _log_request(self, status: int) -> None:
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request",
                extra={"method": "GET", "path": self._gateway.path.decode(), "status": status},
            )

    # Reading -------------------------------------------------------------------

    def _receive_frames(self, data: bytes) -> None:
        parser = self._parser
        assert parser is not None
        try:
            frames = parser.feed(data)
        except FrameError as exc:
            self._fail(exc.code, exc.reason)
            return
        for frame in frames:
            if self._state is _State.CLOSED:
                return
            opcode = frame.opcode
            if opcode == OP_TEXT:
                if self._state is not _State.OPEN:
                    continue  # closing: no new commands
                try:
                    text = frame.payload.decode()
                except UnicodeDecodeError:
                    self._fail(CLOSE_INVALID_DATA, "text is not UTF-8")
                    return
                self._handle_text(text)
            elif opcode == OP_BINARY:
                if self._state is not _State.OPEN or self._client is None:
                    continue
                if self._binary:
                    self._handle_text(frame.payload)
                else:
                    self._client.handle_binary(frame.payload)
            elif opcode == OP_CLOSE:
                self._peer_closed(frame.payload)
                return
            elif opcode == OP_PING:
                self._write_pong(frame.payload)

    def _handle_text(self, data: str | bytes) -> None:
        if self._busy is None:
            self._busy = asyncio.ensure_future(self._run(data))
            return
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = collections.deque()
        backlog.append(data)
        if len(backlog) >= _BACKLOG_PAUSE and not self._reading_paused and self._raw is not None:
            self._reading_paused = True
            self._raw.pause_reading()

    async def _run(self, data: str | bytes) -> None:
        """Handle frames strictly in order: connect must finish before the next command."""
        client = self._client
        assert client is not None
        try:
            await client.handle_frame(data)
            backlog = self._backlog
            while backlog and self._state is _State.OPEN:
                await client.handle_frame(backlog.popleft())
        except Exception:
            log.exception("frame handling failed")
            self.close(DisconnectCode.SERVER_ERROR, "internal server error")
        finally:
            self._busy = None
            if self._reading_paused and self._raw is not None and self._state is not _State.CLOSED:
                self._reading_paused = False
                self._raw.resume_reading()

    def _peer_closed(self, payload: bytes) -> None:
        try:
            code, _ = parse_close(payload)
        except FrameError as exc:
            self._fail(exc.code, exc.reason)
            return
        if self._state is _State.OPEN:
            # The client closes first: answer with its code, then hang up.
            self._state = _State.CLOSING
            self.flush()
            self._write_control(OP_CLOSE, b"" if code == 1005 else close_payload(code, ""))
        self._state = _State.CLOSED
        assert self._raw is not None
        self._raw.close()

    def _fail(self, code: int, reason: str) -> None:
        """A protocol violation: close frame with its code, then the socket."""
        if self._state is _State.CLOSED:
            return
        if self._state is _State.OPEN:
            self._closing(code, reason)
            self._write_control(OP_CLOSE, close_payload(code, reason))
        self._state = _State.CLOSED
        assert self._raw is not None
        self._raw.close()

    # Writing -------------------------------------------------------------------
    def _write_pong(self, payload: bytes) -> None:
        """Answer a ping now, or, while writes are paused, only the latest one later.

        RFC 6455 allows answering only the most recent ping: a client that pings and
        never reads holds one pending pong, not a growing send buffer.
        """
        if self._writing_paused:
            self._pong = payload
            return
        self._write_control(OP_PONG, payload)
        raw = self._raw
        if raw is not None and raw.get_write_buffer_size() > self._gateway.queue_max:
            self.close(DisconnectCode.SLOW, "slow")

    def _write_control(self, opcode: int, payload: bytes) -> None:
        raw = self._raw
        if raw is not None and not raw.is_closing():
            data = server_frame(opcode, payload)
            if self._writing_paused:
                self._unsent += len(data)
            raw.write(data)

    # Transport (what Client writes to) -------------------------------------------
    @property
    def closed(self) -> bool:
        return self._state is not _State.OPEN

    @property
    def binary(self) -> bool:
        return self._binary

    @property
    def session(self) -> str:
        return ""  # commands come on the socket itself

    def send(self, message: bytes) -> None:
        if self._state is not _State.OPEN:
            return
        outbox = self._outbox
        outbox.append(message)
        if len(outbox) == 1:
            flusher = self._gateway.flusher
            assert flusher is not None
            flusher.mark(self)

    def flush(self, frames: dict[int, bytes] | None = None) -> None:
        outbox = self._outbox
        if not outbox:
            return
        raw = self._raw
        if raw is None or raw.is_closing():
            outbox.clear()
            return
        data = outbox_frames(outbox, frames, binary=self._binary)
        outbox.clear()  # reused: no list per connection per flush for the collector to chase
        if self._writing_paused:
            self._unsent += len(data)
        raw.write(data)
        if raw.get_write_buffer_size() > self._gateway.queue_max:
            self.close(DisconnectCode.SLOW, "slow")

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, the close frame, then wait for the client's (bounded)."""
        if self._state is not _State.OPEN:
            return
        self._closing(code, reason)
        self._state = _State.CLOSING  # before the flush, which may find the client slow
        self.flush()
        self._write_control(OP_CLOSE, close_payload(code, reason))
        raw = self._raw
        assert raw is not None
        asyncio.get_running_loop().call_later(self._gateway.close_timeout, _abort_if_open, raw)

    def _closing(self, code: int, reason: str) -> None:
        """Every close this connection starts passes here once (see ``record_close``)."""
        client = self._client
        client_id = client.id if isinstance(client, Client) else ""
        record_close(log, self._gateway.node.metrics, code, reason, client_id)


def _abort_if_open(raw: asyncio.Transport) -> None:
    if not raw.is_closing():
        raw.abort()
