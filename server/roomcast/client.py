"""One client connection: the protocol state machine.

Commands of a connection are handled strictly in order (the JS SDK sends
``connect`` and its ``subscribe`` commands in one frame before it has seen the
connect reply). Handlers either return a result, raise ``ProtocolError`` (an
error reply) or raise ``Disconnect`` (a close frame with that code). Anything
else is a bug: it is logged and the client sees error 100, never a traceback.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from . import __version__, protobuf
from .channels import ChannelInfo
from .codes import (
    UNSUBSCRIBE_REASONS,
    Disconnect,
    DisconnectCode,
    ErrorCode,
    ProtocolError,
    UnsubscribeCode,
)
from .dataformat import json_form, wire_with
from .engine import ClientInfo, EngineUnavailable, Publication, StreamPosition
from .expiry import schedule_expiry
from .fields import (
    optional_bool,
    optional_dict,
    optional_int,
    optional_position,
    optional_str,
)
from .hub import Subscriber, string_wire
from .permissions import may_publish, may_read_history, may_see_presence, may_subscribe
from .ratelimit import TokenBucket
from .recovery import is_recovered, merge_live
from .subscription_options import Asked
from .subscription_options import resolve as resolve_options
from .tokens import (
    ConnectionClaims,
    InvalidToken,
    ServerSideSub,
    SubscriptionClaims,
    SubscriptionOverride,
    TokenExpired,
    ttl_until,
)

if TYPE_CHECKING:
    from .node import Node
    from .transport import Transport

log = logging.getLogger(__name__)
_Claims = TypeVar("_Claims")

#: What a client is told when a token fails, per command: (expired, invalid).
_TOKEN_FAILURES: dict[str, tuple[ProtocolError | Disconnect, ProtocolError | Disconnect]] = {
    "connect": (ProtocolError(ErrorCode.TOKEN_EXPIRED), Disconnect(DisconnectCode.INVALID_TOKEN)),
    "refresh": (
        Disconnect(DisconnectCode.CONNECTION_EXPIRED),
        Disconnect(DisconnectCode.INVALID_TOKEN),
    ),
    "subscribe": (
        ProtocolError(ErrorCode.TOKEN_EXPIRED),
        ProtocolError(ErrorCode.PERMISSION_DENIED),
    ),
    "sub_refresh": (
        ProtocolError(ErrorCode.TOKEN_EXPIRED, "token expired"),
        Disconnect(DisconnectCode.INVALID_TOKEN),
    ),
}

#: a server ping (and, from the client, its pong) is an empty message in each encoding
_PING_JSON = b"{}"
_PING_PROTOBUF = protobuf.encode_reply({})
_MAX_ID = 2**32 - 1
#: what a subscribe of a kind Roomcast does not offer is told, by its ``type``
_UNOFFERED = {
    1: "map subscriptions are not available",
    2: "map subscriptions are not available",
    3: "map subscriptions are not available",
    4: "shared poll subscriptions are not available",
}


class ConnectionGone(Exception):
    """The connection closed while a command awaited; what it added has been undone."""


class ClientState(enum.Enum):
    CONNECTING = 1
    CONNECTED = 2
    CLOSED = 3


@dataclass(slots=True, eq=False)
class Subscription:
    """What a connection knows about one of its channels."""

    channel: str
    info: ChannelInfo
    client_info: ClientInfo  # with this subscription's chan_info
    presence: bool
    join_leave: bool
    positioned: bool
    recoverable: bool
    server_side: bool
    expire_at: int = 0
    expiry_timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class _SubscribeRequest:
    channel: str
    token: str = ""
    recover: bool = False
    offset: int = 0
    epoch: str = ""
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False
    reject_unrecovered: bool = False
    #: the client asked for fossil deltas
    delta: bool = False
    data: bytes | None = None
    override: SubscriptionOverride | None = None
    chan_info: bytes | None = None


def _pub_wire(pubs: list[Publication], as_strings: bool) -> list[dict[str, Any]]:
    """Publications for a reply; full text as JSON strings once a JSON client negotiated
    deltas (a Protobuf client's payloads are bytes either way)."""
    return [string_wire(p) if as_strings else p.wire() for p in pubs]


class Client:
    """A connection from handshake to close."""

    __slots__ = (
        "_bucket",
        "_cleaned",
        "_encode",
        "_expiry_timer",
        "_loop",
        "_rejections",
        "_rejections_since",
        "conn_info",
        "expire_at",
        "heartbeat_slot",
        "id",
        "last_presence_update",
        "node",
        "ping_pending",
        "remote",
        "state",
        "subs",
        "transport",
        "user",
    )

    def __init__(self, node: Node, transport: Transport, remote: str = "") -> None:
        self.node = node
        self.transport = transport
        self.remote = remote
        self.id = str(uuid.uuid4())
        self.user = ""
        self.state = ClientState.CONNECTING
        self.conn_info: bytes | None = None
        self.expire_at = 0
        self.subs: dict[str, Subscription] = {}
        self.ping_pending = False
        self.heartbeat_slot = -1
        self.last_presence_update = 0.0
        client_settings = node.settings.client
        rate = client_settings.command_rate_limit
        self._bucket = TokenBucket(rate.rate_per_second, rate.burst, time.monotonic())
        self._rejections = 0
        self._rejections_since = 0.0
        loop = asyncio.get_running_loop()
        self._loop = loop
        node.heartbeat.watch_stale(self, time.monotonic() + client_settings.stale_close_delay)
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._cleaned = False
        self._encode: Callable[[dict[str, Any]], bytes] = (
            protobuf.encode_reply if transport.binary else orjson.dumps
        )

    # Transport events ---------------------------------------------------
    async def handle_frame(self, data: str | bytes) -> None:
        """Process one frame's commands in order: newline-separated JSON in a text frame,
        length-prefixed Protobuf in a binary one (on a connection that chose it)."""
        if isinstance(data, bytes):
            await self._handle_protobuf(data)
            return
        if self.transport.binary:
            self.disconnect(DisconnectCode.INAPPROPRIATE_PROTOCOL)
            return
        for line in data.split("\n"):
            if self.state is ClientState.CLOSED or self.transport.closed:
                return
            line = line.strip()
            if not line:
                continue
            try:
                command = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.disconnect(DisconnectCode.BAD_REQUEST)
                return
            if not isinstance(command, dict):
                self.disconnect(DisconnectCode.BAD_REQUEST)
                return
            await self._handle_command(command)

    async def _handle_protobuf(self, frame: bytes) -> None:
        try:
            commands = protobuf.decode_commands(frame)
        except protobuf.DecodeError:
            self.disconnect(DisconnectCode.BAD_REQUEST)
            return
        for command in commands:
            if self.state is ClientState.CLOSED or self.transport.closed:
                return
            await self._handle_command(command)

    def push(self, channel: str, kind: str, body: object) -> None:
        """An asynchronous message to this client, in its encoding."""
        self.transport.send(self._encode({"push": {"channel": channel, kind: body}}))

    def handle_binary(self, payload: bytes = b"") -> None:
        """A binary frame on a JSON connection: the client mixed up the encodings."""
        self.disconnect(DisconnectCode.INAPPROPRIATE_PROTOCOL)

    async def _handle_command(self, command: dict[str, Any]) -> None:
        cmd_id = command.get("id", 0)
        if cmd_id is None:
            cmd_id = 0
        if isinstance(cmd_id, bool) or not isinstance(cmd_id, int) or not 0 <= cmd_id <= _MAX_ID:
            self.disconnect(DisconnectCode.BAD_REQUEST)
            return
        if cmd_id == 0:
            if "send" in command:
                # No application message handler exists: Centrifugo's answer.
                self.disconnect(DisconnectCode.NOT_AVAILABLE)
            else:
                self.ping_pending = False  # pong (or an id-less command, treated as one)
            return
        method = next((k for k in command if k != "id" and k in _HANDLERS), None)
        if (self.state is ClientState.CONNECTING) != (method == "connect"):
            self.disconnect(DisconnectCode.BAD_REQUEST)  # connect must come first, and once
            return
        now = time.monotonic()
        if not self._bucket.take(now):
            limit = self.node.settings.client.command_rate_limit
            if now - self._rejections_since > limit.rejection_window:
                self._rejections, self._rejections_since = 0, now
            self._rejections += 1
            self.node.metrics.commands[(method or "unknown", "rate_limited")] += 1
            if self._rejections >= limit.max_rejections:
                self.disconnect(DisconnectCode.TOO_MANY_REQUESTS)
            else:
                self._error(cmd_id, ProtocolError(ErrorCode.TOO_MANY_REQUESTS))
            return
        if method is None:
            self.node.metrics.commands[("unknown", "error")] += 1
            self._error(cmd_id, ProtocolError(ErrorCode.BAD_REQUEST, "unknown method"))
            return
        request = command[method]
        if request is None:
            request = {}
        if not isinstance(request, dict):
            self.disconnect(DisconnectCode.BAD_REQUEST)
            return
        handler = _HANDLERS[method]
        try:
            result = await handler(self, request)
        except ConnectionGone:
            return  # nobody to answer
        except Disconnect as exc:
            self.node.metrics.commands[(method, "disconnect")] += 1
            self.disconnect(exc.code, exc.reason)
            return
        except Exception as exc:
            self.node.metrics.commands[(method, "error")] += 1
            error = self._as_protocol_error(exc, method)
            self._error(cmd_id, error)
            if method == "connect":
                self._fail_connect(error.code)
            return
        self.node.metrics.commands[(method, "ok")] += 1
        if result is not None:
            reply, after = result
            self.transport.send(self._encode({"id": cmd_id, method: reply}))
            if after is not None:
                after()

    def _as_protocol_error(self, exc: Exception, method: str) -> ProtocolError:
        """What the client is told: its own error, or a temporary 100 with details logged."""
        if isinstance(exc, ProtocolError):
            return exc
        if isinstance(exc, EngineUnavailable):
            self.node.metrics.engine_errors += 1
        else:
            log.exception("command failed", extra={"method": method, "client": self.id})
        return ProtocolError(ErrorCode.INTERNAL)

    def _error(self, cmd_id: int, error: ProtocolError) -> None:
        self.transport.send(self._encode({"id": cmd_id, "error": error.to_dict()}))

    def _fail_connect(self, code: int) -> None:
        """After an error reply to connect the connection is unusable (Centrifugo)."""
        self.node.metrics.connects["rejected"] += 1
        self.node.metrics.connect_errors[code] += 1
        self.state = ClientState.CLOSED
        self._loop.call_later(
            self.node.settings.websocket.close_timeout,
            self.transport.close,
            DisconnectCode.CONNECTION_CLOSED,
            "connection closed",
        )

    def send_ping(self) -> None:
        self.ping_pending = True
        self.transport.send(_PING_PROTOBUF if self.transport.binary else _PING_JSON)

    def disconnect(self, code: int, reason: str | None = None) -> None:
        """Close the connection with a protocol disconnect code (idempotent)."""
        if self.transport.closed:
            self.state = ClientState.CLOSED
            return
        if reason is None:
            reason = Disconnect(code).reason
        self.state = ClientState.CLOSED
        self.transport.close(code, reason)  # counted and logged there, with every other close

    async def cleanup(self) -> None:
        """Forget the connection everywhere: hub, presence, join/leave, node registry."""
        if self._cleaned:
            return
        self._cleaned = True
        self.state = ClientState.CLOSED
        self.node.heartbeat.unwatch_stale(self)
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        for sub in list(self.subs.values()):
            await self._drop_subscription(sub)
        self.node.unregister(self)

    async def _verified(self, verifying: Awaitable[_Claims], command: str) -> _Claims:
        """The claims of a token, or what ``command`` answers for an expired or bad one."""
        try:
            return await verifying
        except TokenExpired:
            raise _TOKEN_FAILURES[command][0] from None
        except InvalidToken as exc:
            log.info(
                "invalid token", extra={"client": self.id, "command": command, "error": str(exc)}
            )
            raise _TOKEN_FAILURES[command][1] from None

    # connect ------------------------------------------------------------
    async def _connect(self, req: dict[str, Any]) -> tuple[dict[str, Any], Callable[[], None]]:
        node = self.node
        settings = node.settings.client
        token = optional_str(req, "token")
        claims: ConnectionClaims
        if token:
            if not node.conn_verifier.configured:
                raise Disconnect(DisconnectCode.INVALID_TOKEN)
            claims = await self._verified(node.conn_verifier.verify_connection(token), "connect")
            if not claims.user and settings.disallow_anonymous_connection_tokens:
                raise Disconnect(DisconnectCode.PERMISSION_DENIED)
        elif settings.allow_anonymous_connect_without_token or settings.insecure:
            claims = ConnectionClaims(user="", expire_at=0, info=None)
        else:
            raise Disconnect(DisconnectCode.BAD_REQUEST)
        now = time.time()
        if claims.expire_at and claims.expire_at <= now:
            raise ProtocolError(ErrorCode.EXPIRED)
        limit = settings.user_connection_limit
        if limit and claims.user and node.user_connection_count(claims.user) >= limit:
            raise Disconnect(DisconnectCode.CONNECTION_LIMIT)

        self.user = claims.user
        self.conn_info = claims.info
        self.expire_at = claims.expire_at
        node.heartbeat.unwatch_stale(self)

        server_subs = list(claims.subs)
        personal = settings.subscribe_to_user_personal_channel
        if personal.enabled and self.user:
            server_subs.append(
                ServerSideSub(
                    node.rules.personal_channel(self.user, personal.personal_channel_namespace)
                )
            )
        if len(server_subs) > settings.channel_limit:
            raise Disconnect(DisconnectCode.CHANNEL_LIMIT)
        positions = optional_dict(req, "subs")
        node.register(self)
        self.state = ClientState.CONNECTED
        subs_result: dict[str, Any] = {}
        commits: list[Callable[[], None]] = []
        try:
            for server_sub in server_subs:
                pos = optional_dict(positions, server_sub.channel)
                sub_req = _SubscribeRequest(
                    channel=server_sub.channel,
                    recover=optional_bool(pos, "recover"),
                    offset=optional_int(pos, "offset"),
                    epoch=optional_str(pos, "epoch"),
                    data=server_sub.data,
                    override=server_sub.override,
                    chan_info=server_sub.info,
                )
                info = node.rules.resolve(server_sub.channel)
                result, commit = await self._subscribe(sub_req, info, server_side=True)
                subs_result[server_sub.channel] = result
                commits.append(commit)
        except BaseException:
            self.state = ClientState.CONNECTING
            for sub in list(self.subs.values()):
                await self._drop_subscription(sub, leave=False)
            node.unregister(self)
            raise

        reply: dict[str, Any] = {"client": self.id, "version": __version__}
        if self.expire_at:
            reply["expires"] = True
            reply["ttl"] = ttl_until(self.expire_at, now)
            self._schedule_connection_expiry()
        if subs_result:
            reply["subs"] = subs_result
        reply["ping"] = max(1, round(settings.ping_interval))
        reply["pong"] = True
        if self.transport.session:
            # Emulation: the SDK sends its commands to /emulation under these two.
            reply["session"] = self.transport.session
            reply["node"] = node.uid
        if settings.connect_include_server_time:
            reply["time"] = int(now * 1000)
        node.metrics.connects["accepted"] += 1
        node.heartbeat.add(self)

        def after() -> None:
            for commit in commits:
                commit()

        return reply, after

    def _schedule_connection_expiry(self) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        self._expiry_timer = schedule_expiry(
            self.expire_at,
            self.node.settings.client.expired_close_delay,
            self._check_connection_expiry,
        )

    def _check_connection_expiry(self) -> None:
        self._expiry_timer = None
        if self.expire_at and self.expire_at <= time.time():
            self.disconnect(DisconnectCode.CONNECTION_EXPIRED)
        elif self.expire_at:
            self._schedule_connection_expiry()

    # refresh ------------------------------------------------------------
    async def _refresh(self, req: dict[str, Any]) -> tuple[dict[str, Any], None]:
        token = optional_str(req, "token")
        if not token:
            raise Disconnect(DisconnectCode.BAD_REQUEST)
        claims = await self._verified(self.node.conn_verifier.verify_connection(token), "refresh")
        if claims.user != self.user:
            raise Disconnect(DisconnectCode.INVALID_TOKEN)
        current = {s.channel for s in self.subs.values() if s.server_side}
        wanted = {s.channel for s in claims.subs}
        personal = self.node.settings.client.subscribe_to_user_personal_channel
        if personal.enabled and self.user:
            wanted.add(
                self.node.rules.personal_channel(self.user, personal.personal_channel_namespace)
            )
        if wanted != current:
            raise Disconnect(DisconnectCode.INSUFFICIENT_STATE)
        self.conn_info = claims.info if claims.info is not None else self.conn_info
        self.expire_at = claims.expire_at
        result: dict[str, Any] = {"client": self.id, "version": __version__}
        if self.expire_at:
            result["expires"] = True
            result["ttl"] = ttl_until(self.expire_at)
            self._schedule_connection_expiry()
        elif self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        return result, None

    def apply_server_refresh(
        self, expire_at: int | None, expired: bool, info: bytes | None
    ) -> None:
        """Server API ``refresh``: extend, expire now, or replace the connection info."""
        if expired:
            self.disconnect(DisconnectCode.CONNECTION_EXPIRED)
            return
        if info is not None:
            self.conn_info = info
        if expire_at is not None:
            self.expire_at = expire_at
            if expire_at:
                self._schedule_connection_expiry()
            elif self._expiry_timer is not None:
                self._expiry_timer.cancel()
                self._expiry_timer = None

    # subscribe ----------------------------------------------------------
    def _may(
        self, decide: Callable[..., bool], info: ChannelInfo, subscribing: bool = False
    ) -> bool:
        return decide(
            info.options,
            user=self.user,
            subscribed=subscribing or info.name in self.subs,
            insecure=self.node.settings.client.insecure,
        )

    async def _client_subscribe(
        self, req: dict[str, Any]
    ) -> tuple[dict[str, Any], Callable[[], None]]:
        channel = optional_str(req, "channel")
        if not channel:
            raise Disconnect(DisconnectCode.BAD_REQUEST)
        node = self.node
        info = node.rules.resolve(channel)
        if channel in self.subs:
            raise ProtocolError(ErrorCode.ALREADY_SUBSCRIBED)
        if len(self.subs) >= node.settings.client.channel_limit:
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED)
        kind = optional_int(req, "type")
        if kind:
            # Map (1-3) and shared-poll (4) subscriptions are not offered: a non-temporary
            # error, so the SDK ends the subscription instead of retrying it.
            raise ProtocolError(ErrorCode.NOT_AVAILABLE, _UNOFFERED.get(kind, "not available"))
        if req.get("tf") is not None:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "tags filter not allowed")
        flag = optional_int(req, "flag")
        delta = optional_str(req, "delta")
        if delta not in ("", "fossil"):
            raise Disconnect(DisconnectCode.BAD_REQUEST)
        sub_req = _SubscribeRequest(
            channel=channel,
            token=optional_str(req, "token"),
            recover=optional_bool(req, "recover"),
            offset=optional_int(req, "offset"),
            epoch=optional_str(req, "epoch"),
            positioned=optional_bool(req, "positioned"),
            recoverable=optional_bool(req, "recoverable"),
            join_leave=optional_bool(req, "join_leave"),
            reject_unrecovered=bool(flag & 2),
            delta=delta == "fossil",
        )
        if sub_req.token:
            claims = await self._verify_subscription_token(sub_req.token, channel)
            sub_req.data = claims.data
            sub_req.override = claims.override
            sub_req.chan_info = claims.info
            if claims.expire_at and claims.expire_at <= time.time():
                raise ProtocolError(ErrorCode.EXPIRED)
            expire_at = claims.expire_at
        else:
            if not may_subscribe(info, user=self.user, insecure=self.node.settings.client.insecure):
                raise ProtocolError(ErrorCode.PERMISSION_DENIED)
            expire_at = 0
        result, commit = await self._subscribe(
            sub_req, info, server_side=False, expire_at=expire_at
        )
        return result, commit

    async def _verify_subscription_token(self, token: str, channel: str) -> SubscriptionClaims:
        claims = await self._verified(
            self.node.sub_verifier.verify_subscription(token), "subscribe"
        )
        if claims.channel != channel or claims.user != self.user:
            raise Disconnect(DisconnectCode.INVALID_TOKEN)
        if claims.client and claims.client != self.id:
            raise Disconnect(DisconnectCode.INVALID_TOKEN)
        return claims

    async def _subscribe(
        self,
        req: _SubscribeRequest,
        info: ChannelInfo,
        *,
        server_side: bool,
        expire_at: int = 0,
    ) -> tuple[dict[str, Any], Callable[[], None]]:
        """Subscribe and (maybe) recover; returns the result and a commit step.

        The commit step runs right after the reply is queued: it makes the
        subscriber live, delivers what arrived meanwhile and emits the join.
        """
        node = self.node
        history = node.history_options(info)
        resolved = resolve_options(
            info.options,
            req.override,
            Asked(req.recoverable, req.positioned, req.join_leave),
            has_history=history is not None,
            history_permission=self._may(may_read_history, info),
            presence_permission=self._may(may_see_presence, info, subscribing=True),
        )
        presence, join_leave = resolved.presence, resolved.join_leave
        recoverable, positioned = resolved.recoverable, resolved.positioned
        client_info = ClientInfo(self.user, self.id, self.conn_info, req.chan_info)
        channel = req.channel
        delta = req.delta and "fossil" in info.options.allowed_delta_types
        binary = self.transport.binary
        guarded = self._checks_json(info)
        subscriber = Subscriber(
            self.id,
            self.transport.send,
            resolved.push_join_leave,
            binary=binary,
            delta=delta,
            delta_publish=delta and info.options.delta_publish,
            refuse=(lambda: self._refuse_data(channel)) if guarded else None,
        )
        first = node.hub.add_pending(channel, subscriber)
        presence_added = False
        try:
            if first:
                await node.engine.subscribe(channel)
                self._check_open()
            result: dict[str, Any] = {}
            if expire_at:
                result["expires"] = True
                result["ttl"] = ttl_until(expire_at)
            publications: list[Publication] = []
            recovered = False
            top: StreamPosition | None = None
            if positioned and history is not None:
                if req.recover and recoverable:
                    since = StreamPosition(req.offset, req.epoch)
                    hist = await node.engine.history(
                        channel,
                        history=history,
                        since=since,
                        limit=node.settings.client.recovery_max_publication_limit,
                    )
                    self._check_open()
                    top = hist.position
                    recovered = is_recovered(since, top, hist.publications)
                    if recovered:
                        publications = hist.publications
                    node.metrics.recoveries["recovered" if recovered else "failed"] += 1
                    if not recovered and req.reject_unrecovered:
                        raise ProtocolError(ErrorCode.UNRECOVERABLE_POSITION)
                else:
                    top = (
                        await node.engine.history(channel, history=history, since=None, limit=0)
                    ).position
                    self._check_open()
            if presence:
                await node.engine.add_presence(
                    channel, client_info, node.settings.client.presence_update_interval * 3
                )
                presence_added = True
                self._check_open()
        except BaseException:
            await self._undo_subscribe(channel, presence_added)
            raise

        if recoverable:
            result["recoverable"] = True
        if top is not None:
            result["epoch"] = top.epoch
        start = top.offset if top is not None else 0
        if recovered:
            publications, start, later = merge_live(publications, req.offset, subscriber.buffer)
            if subscriber.buffer:
                subscriber.buffer = later
        if publications:
            as_strings = delta and not binary
            if guarded:
                try:
                    result["publications"] = [
                        self._json_wire(p, channel, as_strings) for p in publications
                    ]
                except Disconnect:
                    await self._undo_subscribe(channel, presence_added)
                    raise
            else:
                result["publications"] = _pub_wire(publications, as_strings)
        if recovered:
            result["recovered"] = True
        if top is not None:
            result["offset"] = req.offset if recovered else top.offset
        if positioned:
            result["positioned"] = True
        if req.data is not None:
            result["data"] = orjson.Fragment(req.data)
        if req.recover:
            result["was_recovering"] = True
        if delta:
            result["delta"] = True

        sub = Subscription(
            channel=channel,
            info=info,
            client_info=client_info,
            presence=presence,
            join_leave=join_leave,
            positioned=positioned,
            recoverable=recoverable,
            server_side=server_side,
            expire_at=expire_at,
        )
        self.subs[channel] = sub
        if expire_at:
            self._schedule_subscription_expiry(sub)

        def commit() -> None:
            if self.subs.get(channel) is not sub:
                return
            buffered = node.hub.activate(channel, self.id)
            last = start
            for pub in buffered:
                if pub.offset and top is not None:
                    if pub.offset <= last:
                        continue
                    if pub.offset != last + 1:
                        self.disconnect(DisconnectCode.INSUFFICIENT_STATE)
                        return
                    last = pub.offset
                if guarded:
                    try:
                        wire = self._json_wire(pub, channel, delta)
                    except Disconnect as exc:
                        self.disconnect(exc.code)
                        return
                else:
                    wire = string_wire(pub) if delta and not binary else pub.wire()
                self.push(channel, "pub", wire)
            if top is not None:
                node.hub.deliver_after(channel, self.id, last)
            if join_leave:
                node.spawn(node.engine.publish_join(channel, client_info))

        return result, commit

    async def _undo_subscribe(self, channel: str, presence_added: bool) -> None:
        """Take back what a failed subscribe added, in reverse."""
        if presence_added:
            await self._engine_remove_presence(channel)
        if self.node.hub.remove(channel, self.id):
            await self._engine_unsubscribe(channel)

    def _checks_json(self, info: ChannelInfo) -> bool:
        """A JSON connection in a binary namespace: what it is sent must be JSON first."""
        return not self.transport.binary and info.data_format == "binary"

    def _json_wire(self, pub: Publication, channel: str, as_string: bool = False) -> dict[str, Any]:
        """A publication of a binary namespace for this JSON connection (a JSON string
        once it negotiated deltas); data that is not JSON closes it (3506)."""
        form = json_form(pub)
        if form is None:
            self.node.refusals.note(channel)
            raise Disconnect(DisconnectCode.INAPPROPRIATE_PROTOCOL)
        return string_wire(pub, full=form) if as_string else wire_with(pub, form)

    def _refuse_data(self, channel: str) -> None:
        """The fan-out met a publication of ``channel`` this JSON connection cannot take."""
        if self.transport.closed:
            return
        self.node.refusals.note(channel)
        self.disconnect(DisconnectCode.INAPPROPRIATE_PROTOCOL)

    def _schedule_subscription_expiry(self, sub: Subscription) -> None:
        if sub.expiry_timer is not None:
            sub.expiry_timer.cancel()
        sub.expiry_timer = schedule_expiry(
            sub.expire_at,
            self.node.settings.client.expired_sub_close_delay,
            lambda: self._check_subscription_expiry(sub),
        )

    def _check_subscription_expiry(self, sub: Subscription) -> None:
        sub.expiry_timer = None
        if self.subs.get(sub.channel) is not sub or not sub.expire_at:
            return
        if sub.expire_at > time.time():
            self._schedule_subscription_expiry(sub)
        elif sub.server_side:
            self.disconnect(DisconnectCode.SUBSCRIPTION_EXPIRED)
        else:
            self.server_unsubscribe(sub.channel, UnsubscribeCode.EXPIRED)

    def server_unsubscribe(self, channel: str, code: UnsubscribeCode) -> None:
        """Unsubscribe on the server's initiative and tell the client with a push."""
        sub = self.subs.get(channel)
        if sub is None:
            return
        self.push(channel, "unsubscribe", {"code": int(code), "reason": UNSUBSCRIBE_REASONS[code]})
        self.node.spawn(self._drop_subscription(sub))

    def insufficient_state(self, channel: str) -> None:
        """Publications were lost for this channel; the SDK must resubscribe or reconnect."""
        sub = self.subs.get(channel)
        if sub is None or not sub.positioned:
            return
        if sub.server_side:
            self.disconnect(DisconnectCode.INSUFFICIENT_STATE)
        else:
            self.server_unsubscribe(channel, UnsubscribeCode.INSUFFICIENT_STATE)

    async def server_subscribe(
        self,
        channel: str,
        data: bytes | None,
        info: bytes | None,
        override: SubscriptionOverride | None,
        since: StreamPosition | None,
    ) -> None:
        """Server API ``subscribe``: add a server-side subscription to a live connection."""
        if self.state is not ClientState.CONNECTED or channel in self.subs:
            return
        ch_info = self.node.rules.resolve(channel)
        req = _SubscribeRequest(
            channel=channel,
            data=data,
            override=override,
            chan_info=info,
            recover=since is not None,
            offset=since.offset if since else 0,
            epoch=since.epoch if since else "",
        )
        try:
            result, commit = await self._subscribe(req, ch_info, server_side=True)
        except ConnectionGone:
            return
        except Disconnect as exc:
            self.disconnect(exc.code, exc.reason)
            return
        result.pop("was_recovering", None)
        self.push(channel, "subscribe", result)
        commit()

    async def refresh_presence(self, sub: Subscription, ttl_seconds: float) -> None:
        """Keep a subscription's presence entry alive (the heartbeat calls this).

        The subscription may be dropped while the entry is written, and its removal
        may then run first: the entry written after it is removed again, or it would
        stay as a ghost (for good on the memory engine, until its TTL with Redis).
        """
        if self.subs.get(sub.channel) is not sub:
            return
        await self.node.engine.add_presence(sub.channel, sub.client_info, ttl_seconds)
        if sub.channel not in self.subs:
            await self._engine_remove_presence(sub.channel)

    def _check_open(self) -> None:
        """After an await: stop if the connection closed meanwhile (the caller undoes)."""
        if self._cleaned or self.transport.closed:
            raise ConnectionGone

    async def _engine_remove_presence(self, channel: str) -> None:
        try:
            await self.node.engine.remove_presence(channel, self.id, self.user)
        except EngineUnavailable:
            self.node.metrics.engine_errors += 1

    async def _engine_unsubscribe(self, channel: str) -> None:
        try:
            await self.node.engine.unsubscribe(channel)
        except EngineUnavailable:
            self.node.metrics.engine_errors += 1

    async def _drop_subscription(self, sub: Subscription, leave: bool = True) -> None:
        """Remove one subscription: hub, engine interest, presence, leave event."""
        if self.subs.get(sub.channel) is not sub:
            return
        del self.subs[sub.channel]
        if sub.expiry_timer is not None:
            sub.expiry_timer.cancel()
        node = self.node
        if node.hub.remove(sub.channel, self.id):
            await self._engine_unsubscribe(sub.channel)
        try:
            if sub.presence:
                await node.engine.remove_presence(sub.channel, self.id, self.user)
            if sub.join_leave and leave:
                await node.engine.publish_leave(sub.channel, sub.client_info)
        except EngineUnavailable:
            node.metrics.engine_errors += 1

    async def _unsubscribe(self, req: dict[str, Any]) -> tuple[dict[str, Any], None]:
        channel = optional_str(req, "channel")
        if not channel:
            raise Disconnect(DisconnectCode.BAD_REQUEST)
        sub = self.subs.get(channel)
        if sub is not None and not sub.server_side:
            await self._drop_subscription(sub)
        return {}, None

    async def _sub_refresh(self, req: dict[str, Any]) -> tuple[dict[str, Any], None]:
        channel = optional_str(req, "channel")
        token = optional_str(req, "token")
        sub = self.subs.get(channel)
        if sub is None:
            raise ProtocolError(ErrorCode.PERMISSION_DENIED)
        if not token:
            raise ProtocolError(ErrorCode.BAD_REQUEST)
        claims = await self._verified(
            self.node.sub_verifier.verify_subscription(token), "sub_refresh"
        )
        if (
            claims.channel != channel
            or claims.user != self.user
            or (claims.client and claims.client != self.id)
        ):
            raise Disconnect(DisconnectCode.INVALID_TOKEN)
        if claims.expire_at and claims.expire_at <= time.time():
            raise ProtocolError(ErrorCode.EXPIRED)
        sub.expire_at = claims.expire_at
        result: dict[str, Any] = {}
        if sub.expire_at:
            result["expires"] = True
            result["ttl"] = ttl_until(sub.expire_at)
            self._schedule_subscription_expiry(sub)
        elif sub.expiry_timer is not None:
            sub.expiry_timer.cancel()
            sub.expiry_timer = None
        return result, None

    # publish / presence / history -------------------------------------------
    async def _publish(self, req: dict[str, Any]) -> tuple[dict[str, Any], None]:
        channel = optional_str(req, "channel")
        node = self.node
        info = node.rules.resolve(channel)
        sub = self.subs.get(channel)
        if not self._may(may_publish, info):
            raise ProtocolError(ErrorCode.PERMISSION_DENIED)
        data = req.get("data")
        if data is None and self.transport.binary:
            data = b""  # Protobuf leaves empty bytes out
        data = node.validate_data(info, data)
        pub_info = ClientInfo(
            self.user, self.id, self.conn_info, sub.client_info.chan_info if sub else None
        )
        await node.publish(channel, info, Publication(data, info=pub_info), source="client")
        return {}, None

    async def _presence(self, req: dict[str, Any]) -> tuple[dict[str, Any], None]:
        info = self._presence_channel(req)
        clients = await self.node.engine.presence(info.name)
        return {"presence": {cid: ci.wire() for cid, ci in clients.items()}}, None

    async def _presence_stats(self, req: dict[str, Any]) -> tuple[dict[str, Any], None]:
        info = self._presence_channel(req)
        num_clients, num_users = await self.node.engine.presence_stats(info.name)
        return {"num_clients": num_clients, "num_users": num_users}, None

    def _presence_channel(self, req: dict[str, Any]) -> ChannelInfo:
        info = self.node.rules.resolve(optional_str(req, "channel"))
        if not info.options.presence:
            raise ProtocolError(ErrorCode.NOT_AVAILABLE)
        if not self._may(may_see_presence, info):
            raise ProtocolError(ErrorCode.PERMISSION_DENIED)
        return info

    async def _history(self, req: dict[str, Any]) -> tuple[dict[str, Any], None]:
        node = self.node
        info = node.rules.resolve(optional_str(req, "channel"))
        if node.history_options(info) is None:
            raise ProtocolError(ErrorCode.NOT_AVAILABLE)
        if not self._may(may_read_history, info):
            raise ProtocolError(ErrorCode.PERMISSION_DENIED)
        limit = optional_int(req, "limit")
        max_limit = node.settings.client.history_max_publication_limit
        if limit < 0 or limit > max_limit:
            limit = max_limit
        since = optional_position(req, "since")
        wire: Callable[[Publication], dict[str, Any]] = Publication.wire
        if self._checks_json(info):
            wire = lambda pub: self._json_wire(pub, info.name)  # noqa: E731
        reverse = optional_bool(req, "reverse")
        return await node.read_history(info, since, limit, reverse, wire), None

    async def _rpc(self, req: dict[str, Any]) -> tuple[dict[str, Any], None]:
        """No RPC handler exists: Centrifugo's 108 (104 would mean a handler without the method)."""
        raise ProtocolError(ErrorCode.NOT_AVAILABLE)


Handler = Callable[
    [Client, dict[str, Any]], Awaitable[tuple[dict[str, Any], Callable[[], None] | None]]
]

_HANDLERS: dict[str, Handler] = {
    "connect": Client._connect,
    "subscribe": Client._client_subscribe,
    "unsubscribe": Client._unsubscribe,
    "publish": Client._publish,
    "presence": Client._presence,
    "presence_stats": Client._presence_stats,
    "history": Client._history,
    "rpc": Client._rpc,
    "refresh": Client._refresh,
    "sub_refresh": Client._sub_refresh,
}
