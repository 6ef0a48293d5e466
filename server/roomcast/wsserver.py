"""The listening socket's protocol: WebSocket clients without aiohttp's per-connection weight.

Every accepted socket starts here. The first request head decides who serves it:
an upgrade on the WebSocket path is answered here and the socket stays with this
small protocol object (a frame parser, an outbox, the ``Client``) for its life;
anything else (the server API, health, metrics) is handed, head and all, to
aiohttp's HTTP protocol. A WebSocket connection then costs no aiohttp request,
parser, queue or task: an idle one holds a few KiB instead of ~16, and a frame
of commands runs in a task only while it is being handled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import enum
import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .admission import upgrade_refusal
from .client import Client
from .codes import DisconnectCode
from .origins import OriginPolicy
from .websocket import Flusher, outbox_frames
from .wsframes import (
    CLOSE_INVALID_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameError,
    FrameParser,
    close_payload,
    parse_close,
)

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)
access_log = logging.getLogger("roomcast.access")

MAX_HEAD_BYTES = 16_384
_BACKLOG_PAUSE = 32  # frames queued behind a busy one before reading pauses
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class _State(enum.Enum):
    HEAD = 1
    OPEN = 2
    CLOSING = 3
    CLOSED = 4


class Session(Protocol):
    """What an upgraded connection hands its messages to: a ``Client`` in production."""

    async def handle_frame(self, text: str) -> None: ...

    def handle_binary(self, payload: bytes) -> None: ...

    async def cleanup(self) -> None: ...


def client_session(node: Node, protocol: ConnectionProtocol, remote: str) -> Client:
    return Client(node, protocol, remote)


class Gateway:
    """What every connection protocol shares: settings, node, and aiohttp for plain HTTP.

    ``any_path`` and ``session_factory`` exist for the frame-conformance suite, which
    drives the same protocol with an echo session on the paths its cases choose.
    """

    def __init__(
        self,
        node: Node,
        connections: set[Client],
        flusher: Flusher,
        http_protocol: Callable[[], asyncio.Protocol],
        *,
        session_factory: Callable[[Node, ConnectionProtocol, str], Session] = client_session,
        any_path: bool = False,
    ) -> None:
        settings = node.settings
        self.node = node
        self.connections = connections
        self.flusher = flusher
        self.http_protocol = http_protocol
        self.path = settings.websocket.handler_prefix.encode()
        self.any_path = any_path
        self.session_factory = session_factory
        self.max_message_size = settings.websocket.message_size_limit
        self.handshake_timeout = settings.websocket.handshake_timeout
        self.close_timeout = settings.websocket.close_timeout
        self.queue_max = settings.client.queue_max_size
        self.compression = settings.websocket.compression
        self.origins = OriginPolicy(settings.client.allowed_origins)

    def __call__(self) -> ConnectionProtocol:
        return ConnectionProtocol(self)


class ConnectionProtocol(asyncio.Protocol):
    """One accepted socket; after an upgrade, the ``Transport`` a ``Client`` writes to."""

    __slots__ = (
        "_backlog",
        "_busy",
        "_client",
        "_deadline",
        "_gateway",
        "_head",
        "_outbox",
        "_parser",
        "_paused",
        "_raw",
        "_state",
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
        self._backlog: collections.deque[str] | None = None
        self._paused = False

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
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        client = self._client
        if client is not None and previous is not _State.HEAD:
            if isinstance(client, Client):
                self._gateway.connections.discard(client)
            self._gateway.node.spawn(client.cleanup())

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
            self._reject(431, "request head too large")
            return
        if end < 0:
            return
        line_end = head.find(b"\r\n")
        parts = bytes(head[:line_end]).split(b" ")
        path = parts[1].split(b"?", 1)[0] if len(parts) == 3 else b""
        gateway = self._gateway
        if (
            parts[0] != b"GET"
            or (path != gateway.path and not gateway.any_path)
            or gateway.compression
        ):
            self._hand_over()
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        headers = _parse_headers(bytes(head[line_end + 2 : end]))
        rest = bytes(head[end + 4 :])
        self._head = bytearray()
        if headers is None:
            self._reject(400, "malformed headers")
            return
        self._upgrade(headers, rest)

    def _hand_over(self) -> None:
        """Not a WebSocket upgrade: aiohttp serves this connection from its first byte."""
        raw = self._raw
        assert raw is not None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._state = _State.CLOSED
        protocol = self._gateway.http_protocol()
        raw.set_protocol(protocol)
        protocol.connection_made(raw)
        protocol.data_received(bytes(self._head))
        self._head = bytearray()

    def _reject(self, status: int, text: str, extra: str = "") -> None:
        raw = self._raw
        assert raw is not None
        body = text.encode()
        raw.write(
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
            + body
        )
        self._log_request(status)
        self._state = _State.CLOSED
        raw.close()

    def _upgrade(self, headers: dict[str, str], rest: bytes) -> None:
        gateway = self._gateway
        node = gateway.node
        if "websocket" not in headers.get("upgrade", "").lower() or "upgrade" not in [
            token.strip() for token in headers.get("connection", "").lower().split(",")
        ]:
            self._reject(400, "websocket upgrade expected")
            return
        if headers.get("sec-websocket-version") != "13":
            self._reject(426, "websocket version 13 expected", "Sec-WebSocket-Version: 13\r\n")
            return
        key = headers.get("sec-websocket-key", "")
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError(key)
        except (binascii.Error, ValueError):
            self._reject(400, "bad Sec-WebSocket-Key")
            return
        subprotocols = headers.get("sec-websocket-protocol", "")
        refusal = upgrade_refusal(
            node,
            gateway.connections,
            gateway.origins,
            headers.get("origin"),
            headers.get("host"),
            subprotocols,
        )
        if refusal is not None:
            self._reject(*refusal)
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        offered = [p.strip() for p in subprotocols.split(",")]
        protocol = (
            "Sec-WebSocket-Protocol: centrifuge-json\r\n" if "centrifuge-json" in offered else ""
        )
        raw = self._raw
        assert raw is not None
        raw.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n{protocol}\r\n".encode()
        )
        self._log_request(101)
        self._state = _State.OPEN
        self._parser = FrameParser(gateway.max_message_size)
        peer = raw.get_extra_info("peername")
        client = gateway.session_factory(node, self, peer[0] if isinstance(peer, tuple) else "")
        self._client = client
        if isinstance(client, Client):
            gateway.connections.add(client)
        if rest:
            self._receive_frames(rest)

    def _log_request(self, status: int) -> None:
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request",
                extra={"method": "GET", "path": self._gateway.path.decode(), "status": status},
            )

    # Frames --------------------------------------------------------------------
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
                if self._state is _State.OPEN and self._client is not None:
                    self._client.handle_binary(frame.payload)
            elif opcode == OP_CLOSE:
                self._peer_closed(frame.payload)
                return
            elif opcode == OP_PING:
                self._write_control(0x8A, frame.payload)

    def _handle_text(self, text: str) -> None:
        if self._busy is None:
            self._busy = asyncio.ensure_future(self._run(text))
            return
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = collections.deque()
        backlog.append(text)
        if len(backlog) >= _BACKLOG_PAUSE and not self._paused and self._raw is not None:
            self._paused = True
            self._raw.pause_reading()

    async def _run(self, text: str) -> None:
        """Handle frames strictly in order: connect must finish before the next command."""
        client = self._client
        assert client is not None
        try:
            await client.handle_frame(text)
            backlog = self._backlog
            while backlog and self._state is _State.OPEN:
                await client.handle_frame(backlog.popleft())
        except Exception:
            log.exception("frame handling failed")
            self.close(DisconnectCode.SERVER_ERROR, "internal server error")
        finally:
            self._busy = None
            if self._paused and self._raw is not None and self._state is not _State.CLOSED:
                self._paused = False
                self._raw.resume_reading()

    def _peer_closed(self, payload: bytes) -> None:
        try:
            code, _ = parse_close(payload)
        except FrameError as exc:
            self._fail(exc.code, exc.reason)
            return
        if self._state is _State.OPEN:
            # The client closes first: answer with its code, then hang up.
            self.flush()
            self._write_control(0x88, b"" if code == 1005 else close_payload(code, ""))
        self._state = _State.CLOSED
        assert self._raw is not None
        self._raw.close()

    def _fail(self, code: int, reason: str) -> None:
        """A protocol violation: close frame with its code, then the socket."""
        if self._state is _State.CLOSED:
            return
        if self._state is _State.OPEN:
            self._write_control(0x88, close_payload(code, reason))
        self._state = _State.CLOSED
        assert self._raw is not None
        self._raw.close()

    def _write_control(self, first_byte: int, payload: bytes) -> None:
        raw = self._raw
        if raw is not None and not raw.is_closing():
            raw.write(bytes((first_byte, len(payload))) + payload)

    # Transport (what Client writes to) -------------------------------------------
    @property
    def closed(self) -> bool:
        return self._state is not _State.OPEN

    def send(self, message: bytes) -> None:
        if self._state is not _State.OPEN:
            return
        outbox = self._outbox
        outbox.append(message)
        if len(outbox) == 1:
            self._gateway.flusher.mark(self)

    def flush(self, frames: dict[int, bytes] | None = None) -> None:
        outbox = self._outbox
        if not outbox:
            return
        raw = self._raw
        if raw is None or raw.is_closing():
            outbox.clear()
            return
        data = outbox_frames(outbox, frames)
        outbox.clear()  # reused: no list per connection per flush for the collector to chase
        raw.write(data)
        if raw.get_write_buffer_size() > self._gateway.queue_max:
            self.close(DisconnectCode.SLOW, "slow")

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, the close frame, then wait for the client's (bounded)."""
        if self._state is not _State.OPEN:
            return
        self.flush()
        self._write_control(0x88, close_payload(code, reason))
        self._state = _State.CLOSING
        raw = self._raw
        assert raw is not None
        asyncio.get_running_loop().call_later(self._gateway.close_timeout, _abort_if_open, raw)


def _abort_if_open(raw: asyncio.Transport) -> None:
    if not raw.is_closing():
        raw.abort()


def _parse_headers(block: bytes) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            return None
        try:
            key = name.decode("ascii").lower()
            text = value.strip().decode("latin-1")
        except UnicodeDecodeError:
            return None
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers
