"""Where an emulation request goes: a stream of this node, or the node that holds it.

A request names the node and the session of its stream (both from the connect
reply). For this node the session's commands are queued on its stream; for another
they are sent to that node alone through the engine (a Redis channel per node),
which queues them there. The memory engine is one node: any other is unknown.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from roomcast.engine import EngineUnavailable

from .transport import TRANSPORTS

if TYPE_CHECKING:
    from roomcast.node import Node

    from .transport import StreamTransport

log = logging.getLogger(__name__)

_JSON, _PROTOBUF = b"j", b"p"


class Outcome(enum.Enum):
    """What became of one emulation request (the endpoint maps it to a status)."""

    HANDLED = "handled"  # the commands ran here; their replies went down the stream
    FORWARDED = "forwarded"  # the node holding the stream received them
    NO_NODE = "node not found"
    NO_SESSION = "session not found"
    WRONG_ENCODING = "encoding differs from the stream's"
    BUSY = "too many requests of the session waiting"
    UNAVAILABLE = "engine unavailable"


@dataclass(frozen=True, slots=True)
class EmulationRequest:
    node: str
    session: str
    #: newline-delimited JSON commands, or length-prefixed Protobuf ones
    data: str | bytes


class Sessions:
    """The streams of this node by session id."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._streams: dict[str, StreamTransport] = {}
        #: open streams by transport, kept as they come and go so a scrape need not count
        self.by_transport = dict.fromkeys(TRANSPORTS, 0)

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: StreamTransport) -> None:
        self._streams[stream.session] = stream
        self.by_transport[stream.transport] += 1

    def remove(self, stream: StreamTransport) -> None:
        if self._streams.get(stream.session) is stream:
            del self._streams[stream.session]
            self.by_transport[stream.transport] -= 1

    async def deliver(self, request: EmulationRequest) -> Outcome:
        node = self._node
        if request.node != node.uid:
            return await self._forward(request)
        stream = self._streams.get(request.session)
        if stream is None or stream.closed:
            return Outcome.NO_SESSION
        if stream.binary != isinstance(request.data, bytes):
            return Outcome.WRONG_ENCODING
        done = stream.submit(request.data, node.settings.emulation.max_pending_requests)
        if done is None:
            return Outcome.BUSY
        await done
        return Outcome.HANDLED

    async def _forward(self, request: EmulationRequest) -> Outcome:
        data = request.data
        kind, body = (_PROTOBUF, data) if isinstance(data, bytes) else (_JSON, data.encode())
        payload = kind + request.session.encode() + b"\0" + body
        try:
            delivered = await self._node.engine.send_to_node(request.node, payload)
        except EngineUnavailable:
            self._node.metrics.engine_errors += 1
            return Outcome.UNAVAILABLE
        return Outcome.FORWARDED if delivered else Outcome.NO_NODE

    def on_forwarded(self, payload: bytes) -> None:
        """A request another node received for a stream of this one."""
        session, sep, body = payload[1:].partition(b"\0")
        data: str | bytes = body
        if payload[:1] == _JSON:
            try:
                data = body.decode()
            except UnicodeDecodeError:
                sep = b""
        if not sep or payload[:1] not in (_JSON, _PROTOBUF):
            log.warning("bad forwarded emulation request", extra={"size": len(payload)})
            return
        request = EmulationRequest(self._node.uid, session.decode(errors="replace"), data)
        self._node.spawn(self._deliver_forwarded(request))

    async def _deliver_forwarded(self, request: EmulationRequest) -> None:
        outcome = await self.deliver(request)
        if outcome is not Outcome.HANDLED:
            # The sender answered already; a stream gone meanwhile is being reconnected.
            log.info(
                "forwarded emulation request dropped",
                extra={"session": request.session, "outcome": outcome.name.lower()},
            )
