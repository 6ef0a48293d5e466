"""The stream transport's queue of a session's requests (in-process, no HTTP)."""

from __future__ import annotations

from roomcast.client import Client
from roomcast.config import Settings
from roomcast.engine.memory import MemoryEngine
from roomcast.node import Node
from roomcast.stream.transport import Framing, StreamTransport


async def test_requests_waiting_for_a_session_are_bounded() -> None:
    """The queue of one session's requests: past the bound the endpoint answers 429."""
    node = Node(Settings(), MemoryEngine())
    stream = StreamTransport(node, Framing.LINES)
    client = Client(node, stream)
    stream.attach(client)
    first = stream.submit("{}", max_pending=1)
    assert first is not None
    assert stream.submit("{}", max_pending=1) is None
    await first
    assert stream.submit("{}", max_pending=1) is not None
    await stream.finished()
    node.heartbeat.unwatch_stale(client)


def test_each_stream_frames_messages_as_its_sdk_transport_cuts_them() -> None:
    assert Framing.LINES.frame(b'{"id":1}') == b'{"id":1}\n'
    assert Framing.EVENTS.frame(b'{"id":1}') == b'data: {"id":1}\n\n'
    assert Framing.LENGTH_PREFIXED.frame(b"\x02\x08\x01") == b"\x02\x08\x01"  # has its length


async def test_a_stream_past_the_queue_limit_closes_slow_and_takes_no_more() -> None:
    node = Node(Settings.model_validate({"client": {"queue_max_size": 1024}}), MemoryEngine())
    stream = StreamTransport(node, Framing.LINES)
    stream.send(b"x" * 1000)
    assert not stream.closed
    stream.send(b"y" * 100)
    assert stream.closed
    assert node.metrics.disconnects[3008] == 1
    stream.send(b"z")  # ignored: the stream is closing
    stream.close(3001, "shutdown")  # a second close is no close
    assert sum(node.metrics.disconnects.values()) == 1
    stream.lost()
