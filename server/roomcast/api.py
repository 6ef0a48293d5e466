"""Server HTTP API for backends, request and response shapes as Centrifugo's.

``POST /api/<method>`` with a JSON body; ``X-API-Key`` (or ``Authorization:
apikey``) authorises. Results are ``{"result": ...}`` or ``{"error": ...}``
with status 200, or an HTTP status in the transport error mode.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from .codes import ErrorCode, ProtocolError
from .dataformat import api_wire
from .engine import EngineUnavailable, Publication
from .fields import (
    json_bytes,
    optional_bool,
    optional_dict,
    optional_int,
    optional_list,
    optional_position,
    optional_str,
    required_str,
)
from .node import Node
from .shed import MAX_WINDOW_SECONDS as MAX_SHED_WINDOW_SECONDS

log = logging.getLogger(__name__)

ApiMethod = Callable[["ServerApi", dict[str, Any]], Awaitable[dict[str, Any]]]


class _Turns:
    """Lets the loop serve others after every ``_TURN_COMMANDS`` commands of one request: a
    short batch or broadcast runs in one turn, so its publications reach each subscriber
    in one frame, and a long one never stalls every other client."""

    def __init__(self) -> None:
        self._left = _TURN_COMMANDS

    async def share(self) -> None:
        self._left -= 1
        if not self._left:
            await asyncio.sleep(0)
            self._left = _TURN_COMMANDS


_TURN_COMMANDS = 32

_TRANSPORT_STATUS = {100: 500, 102: 404, 104: 404, 106: 413, 107: 400, 108: 400, 112: 416, 113: 409}


def _json_field(req: dict[str, Any], key: str) -> orjson.Fragment | None:
    """Arbitrary JSON passed on to connections, checked (and encoded) once here."""
    value = req.get(key)
    return None if value is None else orjson.Fragment(json_bytes(value, key))


def _api_error(exc: ProtocolError) -> dict[str, Any]:
    return {"code": int(exc.code), "message": exc.message}


class ServerApi:
    """The API methods; each takes the request object and returns the result object."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def call(self, method: str, req: Any) -> dict[str, Any]:
        handler = _METHODS.get(method)
        if handler is None:
            raise ProtocolError(ErrorCode.METHOD_NOT_FOUND, "not found")
        if not isinstance(req, dict):
            raise ProtocolError(ErrorCode.BAD_REQUEST)
        try:
            return await handler(self, req)
        except EngineUnavailable:
            self.node.metrics.engine_errors += 1
            raise ProtocolError(ErrorCode.INTERNAL) from None

    # publish ------------------------------------------------------------------
    def _payload(self, req: dict[str, Any], channel_info: Any) -> bytes:
        """``b64data`` when not empty (any bytes in a binary namespace, else base64 of
        JSON), else ``data``; in a binary namespace ``b64data: ""`` alone is empty data."""
        b64 = optional_str(req, "b64data")
        data = req.get("data")
        if b64:
            try:
                raw = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "b64data must be base64") from None
            return self.node.validate_data(channel_info, raw)
        if data is None and req.get("b64data") == "" and channel_info.data_format == "binary":
            return b""
        return self.node.validate_data(channel_info, data)

    async def _publish_one(
        self, channel: str, req: dict[str, Any], payloads: dict[str, bytes] | None = None
    ) -> dict[str, Any]:
        """Publish ``req``'s data to ``channel``; ``payloads`` shares encoded data between calls.

        The encoded data depends only on the channel's data format, so a broadcast
        encodes it once per format and every channel's publication holds the same bytes.
        """
        info = self.node.rules.resolve(channel)
        tags = optional_dict(req, "tags")
        if not all(isinstance(v, str) for v in tags.values()):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "tags must map strings to strings")
        data_format = info.data_format
        data = payloads.get(data_format) if payloads is not None else None
        if data is None:
            data = self._payload(req, info)
            if payloads is not None:
                payloads[data_format] = data
        pub = Publication(data, tags=tags or None)
        if optional_bool(req, "skip_history") and info.options.history_enabled:
            await self.node.engine.publish(channel, pub, history=None)
            self.node.metrics.publications["api"] += 1
            return {}
        key = optional_str(req, "idempotency_key") or None
        position = await self.node.publish(channel, info, pub, source="api", idempotency_key=key)
        if position is None:
            return {}
        return {"offset": position.offset, "epoch": position.epoch}

    async def publish(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self._publish_one(required_str(req, "channel"), req)

    async def broadcast(self, req: dict[str, Any]) -> dict[str, Any]:
        channels = optional_list(req, "channels")
        if not channels:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "channels required")
        self._check_batch_size(len(channels), "channels")
        responses: list[dict[str, Any]] = []
        payloads: dict[str, bytes] = {}
        turns = _Turns()
        for channel in channels:
            try:
                if not isinstance(channel, str) or not channel:
                    raise ProtocolError(ErrorCode.BAD_REQUEST, "channel required")
                responses.append({"result": await self._publish_one(channel, req, payloads)})
            except ProtocolError as exc:
                responses.append({"error": _api_error(exc)})
            await turns.share()
        return {"responses": responses}

    def _check_batch_size(self, size: int, what: str) -> None:
        limit = self.node.settings.http_api.batch_max_size
        if size > limit:
            raise ProtocolError(
                ErrorCode.LIMIT_EXCEEDED, f"{size} {what}, more than the limit of {limit}"
            )

    # connections ------------------------------------------------------------------
    async def subscribe(self, req: dict[str, Any]) -> dict[str, Any]:
        user = required_str(req, "user")
        channel = required_str(req, "channel")
        self.node.rules.resolve(channel)
        since = optional_position(req, "recover_since")
        command: dict[str, Any] = {
            "op": "subscribe",
            "user": user,
            "client": optional_str(req, "client"),
            "channel": channel,
            "data": _json_field(req, "data"),
            "info": _json_field(req, "info"),
            "override": optional_dict(req, "override"),
        }
        if since is not None:
            command["since"] = {"offset": since.offset, "epoch": since.epoch}
        await self.node.control(command)
        return {}

    async def unsubscribe(self, req: dict[str, Any]) -> dict[str, Any]:
        user = required_str(req, "user")
        channel = required_str(req, "channel")
        await self.node.control(
            {
                "op": "unsubscribe",
                "user": user,
                "channel": channel,
                "client": optional_str(req, "client"),
            }
        )
        return {}

    async def disconnect(self, req: dict[str, Any]) -> dict[str, Any]:
        user = optional_str(req, "user")
        client = optional_str(req, "client")
        if not user and not client:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "user required")
        command: dict[str, Any] = {"op": "disconnect", "user": user, "client": client}
        whitelist = optional_list(req, "whitelist")
        if whitelist:
            command["whitelist"] = [c for c in whitelist if isinstance(c, str)]
        advice = optional_dict(req, "disconnect")
        if advice:
            code = optional_int(advice, "code")
            if not 3000 <= code <= 4999:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "disconnect code must be 3000-4999")
            reason = optional_str(advice, "reason") or "disconnect"
            if len(reason.encode()) > 123:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "reason must be a short string")
            command["code"] = code
            command["reason"] = reason
        await self.node.control(command)
        return {}

    async def shed(self, req: dict[str, Any]) -> dict[str, Any]:
        """Move ``count`` of this node's clients to other nodes, closed with 3020 over
        ``window`` seconds (see :mod:`shed`). Unlike ``disconnect`` it acts on the node
        that receives it: the caller addresses the pod, not the Service."""
        count = optional_int(req, "count")
        if count < 1:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "count must be at least 1")
        window = req.get("window", 10)
        if (
            isinstance(window, bool)
            or not isinstance(window, int | float)
            or not 0 <= window <= MAX_SHED_WINDOW_SECONDS
        ):
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, f"window must be 0-{MAX_SHED_WINDOW_SECONDS:.0f} seconds"
            )
        shedding = self.node.shedder.start(count, float(window))
        return {"shedding": shedding, "connections": len(self.node.clients)}

    async def refresh(self, req: dict[str, Any]) -> dict[str, Any]:
        user = required_str(req, "user")
        expire_at = req.get("expire_at")
        if expire_at is not None and (
            not isinstance(expire_at, int) or isinstance(expire_at, bool)
        ):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "expire_at must be an integer")
        await self.node.control(
            {
                "op": "refresh",
                "user": user,
                "client": optional_str(req, "client"),
                "expired": optional_bool(req, "expired"),
                "expire_at": expire_at,
                "info": _json_field(req, "info"),
            }
        )
        return {}

    # channel state --------------------------------------------------------------------
    def _presence_channel(self, req: dict[str, Any]) -> str:
        channel = required_str(req, "channel")
        if not self.node.rules.resolve(channel).options.presence:
            raise ProtocolError(ErrorCode.NOT_AVAILABLE)
        return channel

    async def presence(self, req: dict[str, Any]) -> dict[str, Any]:
        clients = await self.node.engine.presence(self._presence_channel(req))
        return {"presence": {cid: info.wire() for cid, info in clients.items()}}

    async def presence_stats(self, req: dict[str, Any]) -> dict[str, Any]:
        num_clients, num_users = await self.node.engine.presence_stats(self._presence_channel(req))
        return {"num_clients": num_clients, "num_users": num_users}

    async def history(self, req: dict[str, Any]) -> dict[str, Any]:
        info = self.node.rules.resolve(required_str(req, "channel"))
        return await self.node.read_history(
            info,
            optional_position(req, "since"),
            optional_int(req, "limit"),
            optional_bool(req, "reverse"),
            wire=api_wire if info.data_format == "binary" else Publication.wire,
        )

    async def history_remove(self, req: dict[str, Any]) -> dict[str, Any]:
        channel = required_str(req, "channel")
        if self.node.history_options(self.node.rules.resolve(channel)) is None:
            raise ProtocolError(ErrorCode.NOT_AVAILABLE)
        await self.node.engine.remove_history(channel)
        return {}

    async def channels(self, req: dict[str, Any]) -> dict[str, Any]:
        pattern = optional_str(req, "pattern")
        totals: dict[str, int] = {}
        for node_info in await self.node.engine.nodes():
            source = (
                node_info.channels
                if node_info.uid != self.node.uid
                else dict(self.node.hub.channels())
            )
            for channel, n in source.items():
                totals[channel] = totals.get(channel, 0) + n
        out: dict[str, Any] = {}
        for channel, n in sorted(totals.items()):
            if pattern and not fnmatch.fnmatchcase(channel, pattern):
                continue
            out[channel] = {"num_clients": n} if n else {}
        return {"channels": out}

    async def info(self, req: dict[str, Any]) -> dict[str, Any]:
        nodes = {n.uid: n for n in await self.node.engine.nodes()}
        nodes[self.node.uid] = self.node.info()
        return {"nodes": [n.wire() for n in sorted(nodes.values(), key=lambda n: n.name)]}

    async def rpc(self, req: dict[str, Any]) -> dict[str, Any]:
        raise ProtocolError(ErrorCode.METHOD_NOT_FOUND, "not found")

    async def batch(self, req: dict[str, Any]) -> dict[str, Any]:
        """Run commands in order; past ``response_max_size`` the rest are not run (error 106).

        Each reply is encoded as soon as it is made, so the response's size is known
        as it grows, and the loop is shared (see ``_Turns``).
        """
        if not isinstance(req.get("commands"), list):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "commands required")
        commands = optional_list(req, "commands")
        self._check_batch_size(len(commands), "commands")
        room = self.node.settings.http_api.response_max_size
        too_large = orjson.Fragment(
            orjson.dumps(
                {"error": _api_error(ProtocolError(ErrorCode.LIMIT_EXCEEDED, "response too large"))}
            )
        )
        replies: list[orjson.Fragment] = []
        turns = _Turns()
        for command in commands:
            if room <= 0:
                replies.append(too_large)
                continue
            reply = orjson.dumps(await self._batch_reply(command))
            room -= len(reply) + 1
            replies.append(too_large if room < 0 else orjson.Fragment(reply))
            await turns.share()
        return {"replies": replies}

    async def _batch_reply(self, command: Any) -> dict[str, Any]:
        if command is None or not isinstance(command, dict):
            return {"error": _api_error(ProtocolError(ErrorCode.BAD_REQUEST))}
        method = next((m for m in command if m in _METHODS and m != "batch"), None)
        if method is None:
            return {"error": _api_error(ProtocolError(ErrorCode.METHOD_NOT_FOUND, "not found"))}
        try:
            return {method: await self.call(method, command[method])}
        except ProtocolError as exc:
            return {"error": _api_error(exc)}


_METHODS: dict[str, ApiMethod] = {
    name: getattr(ServerApi, name)
    for name in (
        "publish",
        "broadcast",
        "subscribe",
        "unsubscribe",
        "disconnect",
        "shed",
        "refresh",
        "presence",
        "presence_stats",
        "history",
        "history_remove",
        "channels",
        "info",
        "rpc",
        "batch",
    )
}


def _authorized(request: web.Request, key: str) -> bool:
    supplied = request.headers.get("X-API-Key")
    if supplied is None:
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "apikey":
            supplied = value.strip()
    if supplied is None:
        supplied = request.query.get("api_key")
    if not key or supplied is None:
        return False
    # Header bytes that are not UTF-8 arrive as surrogate escapes: compare them as the bytes
    # they were, so a garbled key is a 401 like any other wrong key.
    return hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"), key.encode())


def make_api_handler(node: Node) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    api = ServerApi(node)
    settings = node.settings.http_api

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        if not settings.insecure and not _authorized(request, settings.key):
            return web.Response(status=401)
        method = request.match_info["method"]
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400, text="Bad Request")
        transport_mode = (
            settings.error_mode == "transport"
            or request.headers.get("X-Centrifugo-Error-Mode", "").lower() == "transport"
        )
        try:
            result = await api.call(method, body)
        except ProtocolError as exc:
            error = _api_error(exc)
            if transport_mode:
                return web.Response(
                    status=_TRANSPORT_STATUS.get(error["code"], 500),
                    body=orjson.dumps(error),
                    content_type="application/json",
                )
            return web.Response(
                body=orjson.dumps({"error": error}), content_type="application/json"
            )
        except Exception:
            log.exception("api method failed", extra={"method": method})
            error = {"code": 100, "message": "internal server error"}
            if transport_mode:
                return web.Response(
                    status=500, body=orjson.dumps(error), content_type="application/json"
                )
            return web.Response(
                body=orjson.dumps({"error": error}), content_type="application/json"
            )
        body_out = orjson.dumps(result if method == "batch" else {"result": result})
        if len(body_out) > settings.response_max_size and method != "batch":  # batch: its own
            error = _api_error(ProtocolError(ErrorCode.LIMIT_EXCEEDED, "response too large"))
            if transport_mode:
                return web.Response(
                    status=_TRANSPORT_STATUS[ErrorCode.LIMIT_EXCEEDED],
                    body=orjson.dumps(error),
                    content_type="application/json",
                )
            body_out = orjson.dumps({"error": error})
        return web.Response(body=body_out, content_type="application/json")

    return handle
