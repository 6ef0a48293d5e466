"""A Roomcast node: its connections, the engine, and the operations both the
client protocol and the server API share (publish, history, control commands).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import orjson

from . import __version__
from .channels import ChannelInfo, ChannelRules
from .codes import Disconnect, DisconnectCode, ErrorCode, ProtocolError, UnsubscribeCode
from .config import Settings
from .dataformat import Refusals
from .engine import (
    ClientInfo,
    Engine,
    EngineUnavailable,
    HistoryOptions,
    NodeInfo,
    Publication,
    StreamPosition,
)
from .fields import json_bytes
from .heartbeat import Heartbeat
from .hub import Hub
from .metrics import Metrics
from .recovery import epoch_matches
from .shed import Shedder
from .stream.sessions import Sessions
from .tokens import SubscriptionOverride, TokenVerifier

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger(__name__)

NODE_ANNOUNCE_INTERVAL_SECONDS = 3.0


class Node:
    """Everything one server process shares between its connections."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.uid = str(uuid.uuid4())
        self.name = settings.node_name or socket.gethostname()
        self.started = time.time()
        self.rules = ChannelRules(settings.channel)
        self.metrics = Metrics()
        self.metrics.register_engine(engine)
        self.hub = Hub(self.metrics)
        token = settings.client.token
        self.conn_verifier = TokenVerifier(token)
        sub_token = settings.client.subscription_token
        self.sub_verifier = TokenVerifier(sub_token) if sub_token.enabled else self.conn_verifier
        self.heartbeat = Heartbeat(
            settings.client.ping_interval, settings.client.pong_timeout, self._on_heartbeat
        )
        self.clients: dict[str, Client] = {}
        #: HTTP-streaming and SSE connections by emulation session
        self.sessions = Sessions(self)
        self.users: dict[str, set[Client]] = {}
        self.draining = False
        self.shedder = Shedder(self)
        #: JSON connections closed for non-JSON data in binary namespaces, logged per channel
        self.refusals = Refusals()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[None]] = []
        m = self.metrics
        m.gauges["connections"] = lambda: len(self.clients)
        m.gauges["subscriptions"] = lambda: self.hub.num_subscriptions
        m.gauges["channels"] = lambda: self.hub.num_channels
        m.labelled_gauges["emulation_sessions"] = ("transport", lambda: self.sessions.by_transport)
        m.gauges["draining"] = lambda: float(self.draining)
        m.gauges["engine_available"] = lambda: float(self.engine.available)
        m.gauges["tasks"] = lambda: len(asyncio.all_tasks())

    # Lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        await self.engine.start(self)
        self._background.append(asyncio.create_task(self.heartbeat.run(), name="heartbeat"))
        self._background.append(asyncio.create_task(self._announce_forever(), name="announce"))

    async def close(self) -> None:
        await self.shedder.close()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.engine.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a fire-and-forget engine call; failures are counted, never raised."""
        task = asyncio.ensure_future(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except EngineUnavailable:
            self.metrics.engine_errors += 1
        except Exception:
            log.exception("background operation failed")

    @property
    def ready(self) -> bool:
        return not self.draining and self.engine.available

    def info(self) -> NodeInfo:
        return NodeInfo(
            uid=self.uid,
            name=self.name,
            version=__version__,
            num_clients=len(self.clients),
            num_users=len(self.users),
            num_channels=self.hub.num_channels,
            num_subs=self.hub.num_subscriptions,
            uptime=int(time.time() - self.started),
            channels=dict(self.hub.channels()),
        )

    async def _announce_forever(self) -> None:
        while True:
            try:
                await self.engine.announce(self.info(), NODE_ANNOUNCE_INTERVAL_SECONDS * 3)
            except EngineUnavailable:
                self.metrics.engine_errors += 1
            await asyncio.sleep(NODE_ANNOUNCE_INTERVAL_SECONDS)

    # Connections ------------------------------------------------------------
    def register(self, client: Client) -> None:
        self.clients[client.id] = client
        self.users.setdefault(client.user, set()).add(client)

    def unregister(self, client: Client) -> None:
        self.heartbeat.remove(client)
        if self.clients.pop(client.id, None) is None:
            return
        same_user = self.users.get(client.user)
        if same_user is not None:
            same_user.discard(client)
            if not same_user:
                del self.users[client.user]

    def user_connection_count(self, user: str) -> int:
        return len(self.users.get(user, ()))

    def _on_heartbeat(self, client: Client) -> None:
        interval = self.settings.client.presence_update_interval
        now = time.monotonic()
        if now - client.last_presence_update < interval:
            return
        client.last_presence_update = now
        for sub in client.subs.values():
            if sub.presence:
                self.spawn(client.refresh_presence(sub, interval * 3))

    # Channels -----------------------------------------------------------------
    def history_options(self, info: ChannelInfo) -> HistoryOptions | None:
        o = info.options
        if not o.history_enabled:
            return None
        meta = (
            o.history_meta_ttl
            if o.history_meta_ttl is not None
            else (self.settings.channel.history_meta_ttl)
        )
        return HistoryOptions(o.history_size, o.history_ttl, meta)

    def validate_data(self, info: ChannelInfo, data: Any) -> bytes:
        """Check a payload against the channel's data format; return the bytes to publish.

        A JSON command's payload is a parsed value and goes out compact. Raw bytes (a
        Protobuf command's payload, the server API's ``b64data``) are kept exactly in a
        binary namespace, and elsewhere when they are JSON on one line (JSON frames are
        newline-delimited), else made compact.
        """
        fmt = info.data_format
        raw: bytes | None = None
        if isinstance(data, bytes):
            if fmt == "binary":
                return data
            if not data:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "data required")
            raw = data
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "data must be JSON") from None
        if data is None:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "data required")
        if fmt == "json_object" and not isinstance(data, dict):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "data must be a JSON object")
        if raw is not None and b"\n" not in raw and b"\r" not in raw:
            return raw
        return json_bytes(data, "data")

    async def publish(
        self,
        channel: str,
        info: ChannelInfo,
        pub: Publication,
        *,
        source: str,
        idempotency_key: str | None = None,
    ) -> StreamPosition | None:
        pub.created = time.monotonic()
        try:
            position = await self.engine.publish(
                channel, pub, history=self.history_options(info), idempotency_key=idempotency_key
            )
        except EngineUnavailable:
            self.metrics.engine_errors += 1
            raise ProtocolError(ErrorCode.INTERNAL) from None
        self.metrics.publications[source] += 1
        return position

    async def read_history(
        self,
        info: ChannelInfo,
        since: StreamPosition | None,
        limit: int,
        reverse: bool,
        wire: Callable[[Publication], dict[str, Any]] = Publication.wire,
    ) -> dict[str, Any]:
        """The history command of both the client protocol and the server API; ``wire``
        makes each publication's object for the caller's encoding."""
        history = self.history_options(info)
        if history is None:
            raise ProtocolError(ErrorCode.NOT_AVAILABLE)
        if since is not None and reverse and since.offset == 0:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "reverse needs a since offset")
        result = await self.engine.history(
            info.name, history=history, since=since, limit=limit, reverse=reverse
        )
        if since is not None and not epoch_matches(since.epoch, result.position.epoch):
            raise ProtocolError(ErrorCode.UNRECOVERABLE_POSITION)
        return {
            "publications": [wire(p) for p in result.publications],
            "epoch": result.position.epoch,
            "offset": result.position.offset,
        }

    # EngineEventHandler -------------------------------------------------------
    def on_publication(self, channel: str, pub: Publication, epoch: str) -> None:
        self.hub.broadcast_publication(channel, pub)

    def on_join(self, channel: str, info: ClientInfo) -> None:
        self.hub.broadcast_join_leave(channel, "join", info)

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        self.hub.broadcast_join_leave(channel, "leave", info)

    def on_insufficient_state(self, channel: str) -> None:
        for client_id in self.hub.subscriber_ids(channel):
            client = self.clients.get(client_id)
            if client is not None:
                client.insufficient_state(channel)

    def on_node_message(self, payload: bytes) -> None:
        self.sessions.on_forwarded(payload)

    def on_control(self, payload: bytes) -> None:
        try:
            command = orjson.loads(payload)
            self._apply_control(command)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning(
                "bad control command", extra={"payload": payload[:200].decode(errors="replace")}
            )

    # Server API commands that act on connections, on every node -----------------
    def _targets(self, command: dict[str, Any]) -> list[Client]:
        user = command.get("user", "")
        client_id = command.get("client", "")
        if client_id:
            client = self.clients.get(client_id)
            return [client] if client is not None and (not user or client.user == user) else []
        return list(self.users.get(user, ()))

    def _apply_control(self, command: dict[str, Any]) -> None:
        op = command["op"]
        targets = self._targets(command)
        if op == "disconnect":
            keep = set(command.get("whitelist") or ())
            code = int(command.get("code") or DisconnectCode.FORCE_DISCONNECT)
            reason = command.get("reason") or Disconnect(code).reason
            for client in targets:
                if client.id not in keep:
                    client.disconnect(code, reason)
        elif op == "unsubscribe":
            for client in targets:
                client.server_unsubscribe(command["channel"], UnsubscribeCode.SERVER)
        elif op == "subscribe":
            since = command.get("since")
            position = StreamPosition(int(since["offset"]), str(since["epoch"])) if since else None
            data = command.get("data")
            info = command.get("info")
            override = SubscriptionOverride.parse(command.get("override"))
            for client in targets:
                self.spawn(
                    client.server_subscribe(
                        command["channel"],
                        None if data is None else orjson.dumps(data),
                        None if info is None else orjson.dumps(info),
                        override,
                        position,
                    )
                )
        elif op == "refresh":
            info = command.get("info")
            for client in targets:
                client.apply_server_refresh(
                    command.get("expire_at"),
                    bool(command.get("expired")),
                    None if info is None else orjson.dumps(info),
                )
        else:
            raise ValueError(f"unknown control op {op!r}")

    async def control(self, command: dict[str, Any]) -> None:
        """Apply a connection command on every node of the cluster."""
        try:
            await self.engine.publish_control(orjson.dumps(command))
        except EngineUnavailable:
            self.metrics.engine_errors += 1
            raise ProtocolError(ErrorCode.INTERNAL) from None
