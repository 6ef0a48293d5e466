"""A TCP proxy between an engine and Redis that can stop carrying bytes on command.

``stall`` holds the bytes of chosen connections without closing them: the TCP
connection stays up and nothing arrives (a half-open connection, or a partition that
TCP has not noticed yet). ``partition`` stalls every connection, new ones included;
``heal`` lets bytes flow again. Held bytes are delivered on heal, as TCP would after a
short partition; an engine that gave up on the connection has closed it by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass(eq=False)
class ProxiedConnection:
    """One client connection and its upstream; ``open`` clears to hold its bytes."""

    index: int
    open: asyncio.Event = field(default_factory=asyncio.Event)
    closed_by_client_at: float | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    #: bytes read while stalled, per destination, delivered on heal
    held: dict[asyncio.StreamWriter, list[bytes]] = field(default_factory=dict)

    def release(self) -> None:
        self.open.set()
        for writer, chunks in self.held.items():
            if chunks and not writer.is_closing():
                writer.write(b"".join(chunks))
            chunks.clear()


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.connections: list[ProxiedConnection] = []
        self._partitioned = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def live(self) -> list[ProxiedConnection]:
        return [c for c in self.connections if c.closed_by_client_at is None]

    def stall(self, *connections: ProxiedConnection) -> None:
        """Hold these connections' bytes in both directions; TCP stays up."""
        for conn in connections:
            conn.open.clear()

    def partition(self) -> None:
        """Hold every connection's bytes, and those of connections made from now on."""
        self._partitioned = True
        self.stall(*self.connections)

    def heal(self) -> None:
        self._partitioned = False
        for conn in self.connections:
            conn.release()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ProxiedConnection(len(self.connections))
        self.connections.append(conn)
        conn.writers.append(writer)
        if not self._partitioned:
            conn.open.set()
        try:
            await conn.open.wait()  # a partition: the connect "succeeds", nothing answers
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        conn.writers.append(up_writer)
        await asyncio.gather(
            self._pipe(conn, reader, up_writer, from_client=True),
            self._pipe(conn, up_reader, writer, from_client=False),
        )

    async def _pipe(
        self,
        conn: ProxiedConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        from_client: bool,
    ) -> None:
        held = conn.held.setdefault(writer, [])
        try:
            # Reading goes on while stalled, so a client that gives up is seen at once.
            while data := await reader.read(65536):
                if not conn.open.is_set():
                    held.append(data)
                    continue
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            if from_client and conn.closed_by_client_at is None:
                conn.closed_by_client_at = time.monotonic()
            writer.close()

    def _spawn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FaultProxy]:
        self._server = await asyncio.start_server(self._spawn, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()
            self.heal()
            for conn in self.connections:
                for writer in conn.writers:
                    writer.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
