"""Raw asyncio Redis connections on hiredis's parser.

redis-py's PubSub reader costs about 15 us a message and resubscribes silently after a
reconnect, so messages lost meanwhile go unnoticed. These connections are plain and
loud instead: commands are pipelined (everything asked for in one loop turn goes out in
one write, replies are matched in order), pub/sub messages go straight from
``data_received`` to a callback, and a lost connection fails every waiter with
``EngineUnavailable`` exactly once so the engine can resubscribe and look for holes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from .base import EngineUnavailable

Arg = bytes | str | int | float
#: a pushed message: its channel, its payload, and when its read arrived (monotonic)
OnMessage = Callable[[bytes, bytes, float], None]

#: hiredis's stub types a command as a one-element tuple; it takes any length.
_pack = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)

_PUSH_MESSAGE = frozenset((b"message", b"smessage"))
_PUSH_CONFIRM = frozenset((b"subscribe", b"ssubscribe", b"unsubscribe", b"sunsubscribe"))
#: Cluster redirections; no command of a subscriber connection other than (S)SUBSCRIBE gets one.
_REDIRECTS = ("MOVED ", "ASK ")


class RedisReplyError(Exception):
    """Redis answered a command with an error (the connection itself is fine)."""


class ConnectionLost(EngineUnavailable):
    """The connection closed or timed out before the reply came."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where one Redis listens and how to log in: parsed from a redis://, rediss:// or
    unix:// URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_verify: bool = True
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    unix_path: str | None = None
    """A Unix socket (unix:///run/redis.sock?db=1) instead of host and port."""

    @classmethod
    def parse(
        cls,
        url: str,
        *,
        tls_verify: bool = True,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
    ) -> RedisAddress:
        """``redis://[user:pass@]host:port/db``; rediss:// for TLS; ``unix:///path?db=N``
        for a Unix socket (the database only as a query option, the path being the file).

        Query options override the keyword defaults (redis-py's names):
        ``ssl_cert_reqs=none`` skips certificate checks, ``ssl_ca_certs=/path`` names a
        private CA, ``ssl_certfile`` and ``ssl_keyfile`` a client certificate.
        """
        if "://" not in url:
            url = "redis://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unix_path = None
        if parts.scheme == "unix":
            if not parts.path or parts.path == "/":
                raise ValueError("a unix:// Redis URL needs the socket's path")
            unix_path, path = parts.path, ""
        else:
            path = parts.path.strip("/")
        db = int(path) if path else int(query.get("db", 0))
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
            tls_verify=(
                query["ssl_cert_reqs"].lower() not in ("none", "0")
                if "ssl_cert_reqs" in query
                else tls_verify
            ),
            tls_ca_file=query.get("ssl_ca_certs", tls_ca_file),
            tls_cert_file=query.get("ssl_certfile", tls_cert_file),
            tls_key_file=query.get("ssl_keyfile", tls_key_file),
            unix_path=unix_path,
        )

    def with_endpoint(self, host: str, port: int) -> RedisAddress:
        """The same credentials on another server (a Sentinel master, a cluster node)."""
        return dataclasses.replace(self, host=host, port=port, unix_path=None)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.tls_cert_file:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file or None)
        return context

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"unix://{self.unix_path}?db={self.db}"
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"


class RedisConnection(asyncio.Protocol):
    """One connection to Redis; commands are pipelined, replies resolve futures in order.

    With ``on_message`` set it is a subscriber connection: pushed messages go to the
    callback and subscribe confirmations to ``on_confirm``; only PING waits for a reply.
    Every message of one read carries the time the read arrived: one clock read per
    read, not per message, and the time it waited behind the others counts.
    ``on_redirect`` takes MOVED/ASK answers to SSUBSCRIBE, which would otherwise end the
    connection and every other channel's subscription with it.
    """

    def __init__(
        self,
        on_message: OnMessage | None = None,
        on_confirm: Callable[[bytes, bytes], None] | None = None,
        on_redirect: Callable[[RedisReplyError], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader(replyError=RedisReplyError)
        self._transport: asyncio.Transport | None = None
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        self._on_message = on_message
        self._on_confirm = on_confirm
        self._on_redirect = on_redirect
        #: the reply error that made this connection unusable, for the log
        self.last_error: Exception | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # asyncio.Protocol ----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        on_message = self._on_message
        received = time.monotonic() if on_message is not None else 0.0
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if on_message is not None and type(reply) is list and reply:
                kind = reply[0]
                if kind in _PUSH_MESSAGE:
                    on_message(reply[1], reply[2], received)
                    continue
                if kind in _PUSH_CONFIRM:
                    if self._on_confirm is not None:
                        self._on_confirm(kind, reply[1])
                    continue
            if (
                self._on_redirect is not None
                and isinstance(reply, RedisReplyError)
                and str(reply).startswith(_REDIRECTS)  # a subscribe sent to a stale slot owner
            ):
                self._on_redirect(reply)
                continue
            if not self._waiters:
                # An error nobody waits for (a refused SUBSCRIBE): the stream is unusable.
                self.last_error = reply
                self.close()
                return
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            if isinstance(reply, RedisReplyError):
                waiter.set_exception(reply)
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._outbox.clear()
        error = ConnectionLost(f"redis connection lost: {exc or self.last_error or 'closed'}")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    # Commands ------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self.closed.done()

    def call(self, *args: Arg) -> asyncio.Future[Any]:
        """Queue one command; the reply (or RedisReplyError, ConnectionLost) completes it."""
        waiter: asyncio.Future[Any] = self._loop.create_future()
        if not self.is_open:
            waiter.set_exception(ConnectionLost("redis connection is closed"))
            return waiter
        self._waiters.append(waiter)
        self._queue(_pack(args))
        return waiter

    def send(self, *args: Arg) -> None:
        """Queue a command whose reply arrives as a push (SUBSCRIBE and friends)."""
        if self.is_open:
            self._queue(_pack(args))

    def _queue(self, packed: bytes) -> None:
        self._outbox.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._transport is not None and self._outbox:
            self._transport.write(b"".join(self._outbox))
        self._outbox.clear()

    async def execute(self, *args: Arg, wait_seconds: float) -> Any:
        """Run a command and wait for its reply at most ``wait_seconds``.

        A timeout leaves the connection open: the abandoned waiter keeps its place in
        the queue, so its late reply is read and dropped, never matched to another
        command. A connection that is really dead is found by the health check's PING,
        and only then are this shard's connections (and subscriptions) renewed.
        """
        waiter = self.call(*args)
        try:
            return await asyncio.wait_for(waiter, wait_seconds)
        except TimeoutError:
            raise ConnectionLost(f"redis command {args[0]!r} timed out") from None

    async def execute_many(
        self, commands: Sequence[Sequence[Arg]], wait_seconds: float
    ) -> list[Any]:
        """Several commands in one write; replies (or the error objects) in order."""
        waiters = [self.call(*command) for command in commands]
        try:
            gathered = asyncio.gather(*waiters, return_exceptions=True)
            done = await asyncio.wait_for(gathered, wait_seconds)
        except TimeoutError:
            for waiter in waiters:
                waiter.cancel()  # their replies are read and dropped when they come
            raise ConnectionLost("redis pipeline timed out") from None
        for item in done:
            if isinstance(item, ConnectionLost):
                raise item
        return list(done)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _close_late_connection(task: asyncio.Task[tuple[asyncio.Transport, RedisConnection]]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result()[0].close()


async def open_connection(
    address: RedisAddress,
    *,
    connect_seconds: float,
    on_message: OnMessage | None = None,
    on_confirm: Callable[[bytes, bytes], None] | None = None,
    on_redirect: Callable[[RedisReplyError], None] | None = None,
    name: str = "",
) -> RedisConnection:
    """Connect, log in and select the database; raises ConnectionLost or RedisReplyError."""
    loop = asyncio.get_running_loop()
    context = address.ssl_context()

    def protocol() -> RedisConnection:
        return RedisConnection(on_message, on_confirm, on_redirect)

    connecting = asyncio.ensure_future(
        loop.create_unix_connection(protocol, address.unix_path)
        if address.unix_path is not None
        else loop.create_connection(
            protocol,
            address.host,
            address.port,
            ssl=context,
            server_hostname=address.host if context is not None else None,
        )
    )
    try:
        _, conn = await asyncio.wait_for(asyncio.shield(connecting), connect_seconds)
    except BaseException as exc:
        # Timed out or cancelled: a connection that completes after all must not stay open.
        connecting.cancel()
        connecting.add_done_callback(_close_late_connection)
        if isinstance(exc, OSError | TimeoutError):  # ssl.SSLError is an OSError
            raise ConnectionLost(f"cannot connect to {address}: {exc or 'timeout'}") from None
        raise
    try:
        setup: list[list[Arg]] = []
        if address.password is not None:
            auth: list[Arg] = ["AUTH"]
            if address.username:
                auth.append(address.username)
            setup.append([*auth, address.password])
        if address.db:
            setup.append(["SELECT", address.db])
        if name:
            setup.append(["CLIENT", "SETNAME", name])
        for reply in await conn.execute_many(setup, connect_seconds) if setup else []:
            if isinstance(reply, RedisReplyError):
                raise reply
    except BaseException:
        conn.close()
        raise
    return conn
