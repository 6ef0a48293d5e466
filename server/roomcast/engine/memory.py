"""The embedded engine: one process, nothing else to run.

Everything happens synchronously inside the awaited call, so a publication is
handed to the node's fan-out before ``publish`` returns and no other task can
interleave between a history read and a subscriber registration.

History of all channels together is held under ``history_max_size`` bytes: past
it, the oldest publications of the node are dropped first, whatever their channel
(a recovery from before them then fails as it would after their TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .base import (
    ClientInfo,
    EngineEventHandler,
    HistoryOptions,
    HistoryResult,
    NodeInfo,
    Publication,
    StreamPosition,
)

IDEMPOTENCY_WINDOW_SECONDS = 300.0
DEFAULT_HISTORY_MAX_SIZE = 256 * 1024 * 1024
_SWEEP_INTERVAL_SECONDS = 60.0
#: Bytes a kept publication costs beside its data: the object, its deque slot, its
#: entry in the eviction order.
PUBLICATION_OVERHEAD = 200


def history_cost(pub: Publication) -> int:
    """What keeping ``pub`` in history is counted as, in bytes."""
    return len(pub.data) + PUBLICATION_OVERHEAD


def new_epoch() -> str:
    """Eight random letters, like Centrifugo's epochs."""
    return "".join(random.choices(string.ascii_letters, k=8))


@dataclass(slots=True)
class _Stream:
    epoch: str
    top: int = 0
    publications: deque[Publication] = field(default_factory=deque)
    expires: float = 0.0  # monotonic; publications dropped after this
    meta_expires: float = 0.0  # monotonic; offset and epoch forgotten after this


class MemoryEngineMetrics(Collector):
    """How much the engine holds, read at scrape time."""

    def __init__(self, engine: MemoryEngine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self._engine
        for name, doc, value in (
            (
                "history_bytes",
                "History held, as counted against history_max_size.",
                engine.history_size,
            ),
            ("presence_entries", "Presence entries of all channels.", engine.presence_entries),
        ):
            gauge = GaugeMetricFamily(f"roomcast_engine_memory_{name}", doc)
            gauge.add_metric([], value)
            yield gauge


class MemoryEngine:
    """Broker, history and presence in this process's memory."""

    name = "memory"

    def __init__(self, history_max_size: int = DEFAULT_HISTORY_MAX_SIZE) -> None:
        self._handler: EngineEventHandler | None = None
        self._streams: dict[str, _Stream] = {}
        self._history_max_size = history_max_size
        self.history_size = 0  # bytes, by ``history_cost``
        self._history_count = 0
        #: Kept publications, oldest first; entries of publications dropped since
        #: (trimmed, expired) stay until they reach the front or a rebuild.
        self._history_order: deque[tuple[_Stream, Publication]] = deque()
        self.metrics_collector = MemoryEngineMetrics(self)
        self._presence: dict[str, dict[str, ClientInfo]] = {}
        self._idempotency: dict[tuple[str, str], tuple[float, StreamPosition | None]] = {}
        self._node: NodeInfo | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        return True

    @property
    def presence_entries(self) -> int:
        return sum(len(clients) for clients in self._presence.values())

    async def start(self, handler: EngineEventHandler) -> None:
        self._handler = handler
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="memory-engine-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def subscribe(self, channel: str) -> None:
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None

    def _stream(self, channel: str, opts: HistoryOptions, now: float) -> _Stream:
        stream = self._streams.get(channel)
        if stream is None or (stream.meta_expires and now > stream.meta_expires):
            if stream is not None:
                self._drop_all(stream)
            stream = _Stream(epoch=new_epoch())
            self._streams[channel] = stream
        elif stream.expires and now > stream.expires:
            self._drop_all(stream)
        pubs = stream.publications
        if pubs.maxlen != opts.size:
            while len(pubs) > opts.size:
                self._forget(pubs.popleft())
            stream.publications = deque(pubs, maxlen=opts.size)
        return stream

    # History memory -----------------------------------------------------------
    def _keep(self, stream: _Stream, pub: Publication) -> None:
        pubs = stream.publications
        if pubs.maxlen is not None and len(pubs) == pubs.maxlen:
            self._forget(pubs[0])  # the append below pushes it out
        pubs.append(pub)
        self.history_size += history_cost(pub)
        self._history_count += 1
        self._history_order.append((stream, pub))
        order = self._history_order
        while self.history_size > self._history_max_size and order:
            old_stream, old = order.popleft()
            if old_stream.publications and old_stream.publications[0] is old:
                old_stream.publications.popleft()
                self._forget(old)
        if len(order) > 2 * self._history_count + 1024:
            self._rebuild_order()

    def _forget(self, pub: Publication) -> None:
        self.history_size -= history_cost(pub)
        self._history_count -= 1

    def _drop_all(self, stream: _Stream) -> None:
        for pub in stream.publications:
            self._forget(pub)
        stream.publications.clear()

    def _rebuild_order(self) -> None:
        """Only kept publications, oldest (by acceptance time) first."""
        kept = [(s, p) for s in self._streams.values() for p in s.publications]
        kept.sort(key=lambda entry: entry[1].created)
        self._history_order = deque(kept)

    async def publish(
        self,
        channel: str,
        pub: Publication,
        *,
        history: HistoryOptions | None,
        idempotency_key: str | None = None,
    ) -> StreamPosition | None:
        now = time.monotonic()
        if idempotency_key:
            seen = self._idempotency.get((channel, idempotency_key))
            if seen is not None and seen[0] > now:
                return seen[1]
        position: StreamPosition | None = None
        epoch = ""
        if history is not None:
            stream = self._stream(channel, history, now)
            stream.top += 1
            pub.offset = stream.top
            self._keep(stream, pub)
            stream.expires = now + history.ttl_seconds
            stream.meta_expires = now + max(history.meta_ttl_seconds, history.ttl_seconds)
            epoch = stream.epoch
            position = StreamPosition(stream.top, stream.epoch)
        if idempotency_key:
            self._idempotency[(channel, idempotency_key)] = (
                now + IDEMPOTENCY_WINDOW_SECONDS,
                position,
            )
        if self._handler is not None:
            self._handler.on_publication(channel, pub, epoch)
        return position

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        if self._handler is not None:
            self._handler.on_join(channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        if self._handler is not None:
            self._handler.on_leave(channel, info)

    async def publish_control(self, payload: bytes) -> None:
        if self._handler is not None:
            self._handler.on_control(payload)

    async def send_to_node(self, uid: str, payload: bytes) -> bool:
        """One node only: the message reaches it when it is the one asked for."""
        if self._handler is None or self._handler.uid != uid:
            return False
        self._handler.on_node_message(payload)
        return True

    async def history(
        self,
        channel: str,
        *,
        history: HistoryOptions,
        since: StreamPosition | None,
        limit: int,
        reverse: bool = False,
    ) -> HistoryResult:
        stream = self._stream(channel, history, time.monotonic())
        position = StreamPosition(stream.top, stream.epoch)
        if limit == 0:
            return HistoryResult([], position)
        pubs = list(stream.publications)
        if reverse:
            pubs.reverse()
            if since is not None:
                pubs = [p for p in pubs if p.offset < since.offset]
        elif since is not None:
            pubs = [p for p in pubs if p.offset > since.offset]
        if limit > 0:
            pubs = pubs[:limit]
        return HistoryResult(pubs, position)

    async def remove_history(self, channel: str) -> None:
        stream = self._streams.get(channel)
        if stream is not None:
            self._drop_all(stream)

    async def add_presence(self, channel: str, info: ClientInfo, ttl_seconds: float) -> None:
        self._presence.setdefault(channel, {})[info.client] = info

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        clients = self._presence.get(channel)
        if clients is not None:
            clients.pop(client_id, None)
            if not clients:
                del self._presence[channel]

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        return dict(self._presence.get(channel, {}))

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        clients = self._presence.get(channel, {})
        return len(clients), len({info.user for info in clients.values()})

    async def announce(self, info: NodeInfo, ttl_seconds: float) -> None:
        self._node = info

    async def nodes(self) -> list[NodeInfo]:
        return [self._node] if self._node is not None else []

    def sweep(self, now: float | None = None) -> None:
        """Free expired history, stream metadata and idempotency keys."""
        now = time.monotonic() if now is None else now
        for channel in [c for c, s in self._streams.items() if s.meta_expires < now]:
            self._drop_all(self._streams.pop(channel))
        for stream in self._streams.values():
            if stream.publications and stream.expires < now:
                self._drop_all(stream)
        if len(self._history_order) > self._history_count:
            self._rebuild_order()
        for key in [k for k, (exp, _) in self._idempotency.items() if exp <= now]:
            del self._idempotency[key]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL_SECONDS)
            self.sweep()
