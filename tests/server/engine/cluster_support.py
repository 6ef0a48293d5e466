"""Several ``roomcast serve`` processes on Redis, SDK clients that log what they get,
and a round-robin TCP front that skips dead backends (a load balancer stand-in)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from centrifuge import (
    Client,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

from tests.processes import PROTOCOL_CONFIG, ServerProcess, start_server, token


def cluster_config(address: list[str], **redis: Any) -> dict[str, Any]:
    """The transcript config (history, recovery, presence, join/leave) on Redis."""
    config = dict(PROTOCOL_CONFIG)
    # presence is refreshed on the heartbeat, so pings at least as often as presence updates
    config["client"] = {
        "ping_interval": "2s",
        "pong_timeout": "1s",
        "presence_update_interval": "2s",
    }
    config["engine"] = {
        "type": "redis",
        "redis": {
            "address": address,
            "position_check_interval": "1s",
            "health_check_interval": "0.5s",
            "reconnect_delay_max": "1s",
            **redis,
        },
    }
    return config


@contextlib.contextmanager
def server_nodes(count: int, config: dict[str, Any]) -> Iterator[list[ServerProcess]]:
    nodes: list[ServerProcess] = []
    try:
        for i in range(count):
            nodes.append(start_server(config, env={"ROOMCAST_NODE_NAME": f"node{i}"}))
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@dataclass
class Log(SubscriptionEventHandler):
    """What one subscription delivered to the application, in order."""

    channel: str
    deliveries: list[tuple[int, Any]] = field(default_factory=list)
    subscribed: list[SubscribedContext] = field(default_factory=list)
    unsubscribed: list[int] = field(default_factory=list)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.deliveries.append((ctx.pub.offset, ctx.pub.data))

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.unsubscribed.append(ctx.code)


def sdk_client(url: str, user: str) -> Client:
    return Client(url, token=token(user), proxy=None, max_reconnect_delay=1.0)


class Front:
    """Accepts TCP connections and splices each to the next backend that answers."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self._next = itertools.cycle(range(len(ports)))
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        self._writers.add(writer)
        try:
            for _ in self.ports:
                port = self.ports[next(self._next)]
                try:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    continue
                self._writers.add(up_writer)
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                return
            writer.close()
        finally:
            self._pipes.discard(task)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Front]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()
            for writer in self._writers:
                writer.close()
            if self._pipes:
                await asyncio.wait(self._pipes, timeout=5)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
