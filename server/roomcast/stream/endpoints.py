"""The HTTP side of emulation: opening a stream, and the ``/emulation`` endpoint.

A stream is admitted as a WebSocket upgrade is (503 while draining or at the
connection limit, 403 for a foreign Origin) and its ``Client`` joins the same
connection set, so limits, metrics and drains treat both alike. Bad requests get
a status and a short JSON ``error``, never a traceback. Pages of the origins
``client.allowed_origins`` admits may call these endpoints from another origin:
their preflights are answered and every answer carries the CORS headers.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from roomcast import protobuf
from roomcast.admission import upgrade_refusal
from roomcast.client import Client
from roomcast.origins import OriginPolicy

from .sessions import EmulationRequest, Outcome
from .transport import Framing, LossWatcher, StreamTransport

if TYPE_CHECKING:
    from roomcast.node import Node

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: the CORS headers of a request, for a response prepared inside the handler
_CORS = web.RequestKey("cors", dict[str, str])

_PROTOBUF_TYPE = "application/octet-stream"
_NO_CACHE = {
    "Cache-Control": "private, no-cache, no-store, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "X-Accel-Buffering": "no",  # proxies such as nginx must not hold the stream back
}
#: the query parameter an EventSource carries its connect command in
CONNECT_PARAM = "cf_connect"
_STATUS = {
    Outcome.HANDLED: 204,
    Outcome.FORWARDED: 204,
    Outcome.NO_NODE: 404,
    Outcome.NO_SESSION: 404,
    Outcome.WRONG_ENCODING: 400,
    Outcome.BUSY: 429,
    Outcome.UNAVAILABLE: 503,
}


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def cross_origin(request: web.Request, origins: OriginPolicy) -> dict[str, str] | None:
    """CORS headers for the request's page ({} without Origin); None for a foreign one."""
    origin = request.headers.get("Origin")
    if origin is None:
        return {}
    if not origins.allows(origin, request.headers.get("Host")):
        return None
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def preflight_handler(origins: OriginPolicy) -> Handler:
    """OPTIONS before a cross-origin POST with a JSON or Protobuf body."""

    async def handle(request: web.Request) -> web.StreamResponse:
        cors = cross_origin(request, origins)
        if cors is None:
            return error(403, "origin not allowed")
        headers = {
            **cors,
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "300",
        }
        return web.Response(status=204, headers=headers)

    return handle


def with_cors(handler: Handler, origins: OriginPolicy) -> Handler:
    """Refuse pages of foreign origins (403); give the others the CORS headers."""

    async def handle(request: web.Request) -> web.StreamResponse:
        cors = cross_origin(request, origins)
        if cors is None:
            return error(403, "origin not allowed")
        request[_CORS] = cors
        response = await handler(request)
        if not response.prepared:
            response.headers.update(cors)
        return response

    return handle


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None when it is larger than ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    while len(body) <= limit:  # a read returns what has arrived, maybe not all of it
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return None if len(body) > limit else bytes(body)


def stream_handler(node: Node, connections: set[Client], framing: Framing) -> Handler:
    """``/connection/http_stream`` (POST) or ``/connection/sse`` (GET, or POST)."""
    settings = node.settings
    limit = (
        settings.sse.max_request_body_size
        if framing is Framing.EVENTS
        else settings.http_stream.max_request_body_size
    )
    origins = OriginPolicy(settings.client.allowed_origins)

    async def handle(request: web.Request) -> web.StreamResponse:
        refusal = upgrade_refusal(
            node,
            connections,
            origins,
            request.headers.get("Origin"),
            request.headers.get("Host"),
            "",
        )
        if refusal is not None:
            return error(*refusal)
        kind = framing
        if request.method == "GET":  # an EventSource: the connect is in the URL
            connect: str | bytes = request.query.get(CONNECT_PARAM, "")
            if not connect:
                return error(400, f"{CONNECT_PARAM} query parameter expected")
            if len(connect) > limit:
                return error(413, "connect request too large")
        else:
            body = await read_body(request, limit)
            if body is None:
                return error(413, "connect request too large")
            if not body:
                return error(400, "connect command expected in the body")
            if request.content_type == _PROTOBUF_TYPE:
                if framing is Framing.EVENTS:
                    return error(400, "SSE speaks JSON only")
                kind = Framing.LENGTH_PREFIXED
                connect = body
            else:
                try:
                    connect = body.decode()
                except UnicodeDecodeError:
                    return error(400, "connect request is not UTF-8")
        return await _serve(request, node, connections, kind, connect)

    return handle


async def _serve(
    request: web.Request,
    node: Node,
    connections: set[Client],
    framing: Framing,
    connect: str | bytes,
) -> web.StreamResponse:
    raw = request.transport
    if raw is None or raw.is_closing():
        return web.Response(status=204)
    stream = StreamTransport(node, framing)
    peer = request.remote or ""
    client = Client(node, stream, peer)
    stream.attach(client)
    inner = raw.get_protocol()
    watcher = LossWatcher(inner, stream.lost)
    raw.set_protocol(watcher)
    headers = {**_NO_CACHE, **request.get(_CORS, {})}
    if framing is Framing.EVENTS:
        headers["Content-Type"] = "text/event-stream; charset=utf-8"
    elif framing is Framing.LENGTH_PREFIXED:
        headers["Content-Type"] = _PROTOBUF_TYPE
    else:
        headers["Content-Type"] = "application/json"
    response = web.StreamResponse(status=200, headers=headers)
    sessions = node.sessions
    connections.add(client)
    sessions.add(stream)
    try:
        await response.prepare(request)
        if framing is Framing.EVENTS:
            await response.write(b"\r\n")  # the headers go out now: EventSource opens
        done = stream.submit(connect, 1)
        assert done is not None
        await stream.pump(response, raw)
    except ConnectionError:
        pass
    finally:
        if raw.get_protocol() is watcher:  # a kept-alive connection serves on unwrapped
            raw.set_protocol(inner)
        stream.lost()
        connections.discard(client)
        sessions.remove(stream)
        node.spawn(_teardown(stream, client))
    return response


async def _teardown(stream: StreamTransport, client: Client) -> None:
    """The command under way finishes first; cleanup then undoes all it added."""
    await stream.finished()
    await client.cleanup()


def emulation_handler(node: Node) -> Handler:
    """``/emulation``: the commands of one session, in JSON or Protobuf."""
    limit = node.settings.emulation.max_request_body_size
    counts = node.metrics.emulation_requests

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await read_body(request, limit)
        if body is None:
            counts["too_large"] += 1
            return error(413, "emulation request too large")
        parsed = _parse(body, request.content_type == _PROTOBUF_TYPE)
        if isinstance(parsed, str):
            counts["bad_request"] += 1
            return error(400, parsed)
        outcome = await node.sessions.deliver(parsed)
        counts[outcome.name.lower()] += 1
        status = _STATUS[outcome]
        if status == 204:
            return web.Response(status=204)
        return error(status, outcome.value)

    return handle


def _parse(body: bytes, binary: bool) -> EmulationRequest | str:
    """The request, or what is wrong with it."""
    if binary:
        try:
            fields = protobuf.decode_message("EmulationRequest", body)
        except (protobuf.DecodeError, binascii.Error):
            return "malformed EmulationRequest"
        data: object = fields.get("data", b"")
    else:
        try:
            fields = orjson.loads(body)
        except orjson.JSONDecodeError:
            return "body is not JSON"
        if not isinstance(fields, dict):
            return "JSON object expected"
        data = fields.get("data")
        if not isinstance(data, str):
            return "data must be a string of commands"
    node, session = fields.get("node"), fields.get("session")
    if not isinstance(node, str) or not node or not isinstance(session, str) or not session:
        return "node and session required"
    if not data:
        return "data required"
    assert isinstance(data, str | bytes)
    return EmulationRequest(node, session, data)


def add_routes(app: web.Application, node: Node, connections: set[Client]) -> None:
    """Serve the emulation transports the settings enable (and ``/emulation`` with them)."""
    settings = node.settings
    origins = OriginPolicy(settings.client.allowed_origins)
    preflight = preflight_handler(origins)
    if settings.http_stream.enabled:
        path = settings.http_stream.handler_prefix
        handle = with_cors(stream_handler(node, connections, Framing.LINES), origins)
        app.router.add_post(path, handle)
        app.router.add_route("OPTIONS", path, preflight)
    if settings.sse.enabled:
        path = settings.sse.handler_prefix
        handle = with_cors(stream_handler(node, connections, Framing.EVENTS), origins)
        app.router.add_get(path, handle, allow_head=False)
        app.router.add_post(path, handle)
        app.router.add_route("OPTIONS", path, preflight)
    if settings.http_stream.enabled or settings.sse.enabled:
        path = settings.emulation.handler_prefix
        app.router.add_post(path, with_cors(emulation_handler(node), origins))
        app.router.add_route("OPTIONS", path, preflight)
