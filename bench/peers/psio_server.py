"""python-socketio peer of the comparison benchmark (aiohttp mode), the same job as Roomcast.

A JWT (HS256) in the connect packet's auth, one room per channel joined by a "subscribe"
event with an ack, publications through a server API shaped as Centrifugo's (POST
/api/publish, /api/batch, X-API-Key), or a member's "publish" event (acked), emitted to
the room as "pub" events. With REDIS_URL
rooms span processes through python-socketio's AsyncRedisManager. Defaults kept: ping
interval 25 s, ping timeout 20 s, transports polling + websocket. Compression off
(http_compression False; the load client offers no permessage-deflate).

Run: PORT=.. SECRET=.. API_KEY=.. [REDIS_URL=..] python bench/peers/psio_server.py
"""

from __future__ import annotations

import json
import os
from typing import Any

import jwt
import socketio
from aiohttp import web

MAX_BODY = 1 << 20


def bad_request() -> web.Response:
    return web.json_response({"error": {"code": 107, "message": "bad request"}}, status=400)


def make_app(secret: str, api_key: str, redis_url: str | None) -> web.Application:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager, http_compression=False)
    app = web.Application(client_max_size=MAX_BODY)
    sio.attach(app)
    # each client's rooms, kept here: sio.rooms(sid) walks every room of the namespace,
    # which with 5,000 rooms costs milliseconds per publication
    joined: dict[str, set[str]] = {}

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            jwt.decode(str(token or ""), secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
        joined[sid] = set()

    @sio.event
    async def disconnect(sid: str, reason: Any = None) -> None:
        joined.pop(sid, None)

    @sio.on("subscribe")
    async def subscribe(sid: str, channel: Any) -> bool:
        if not isinstance(channel, str) or not channel:
            return False
        await sio.enter_room(sid, channel)
        joined.setdefault(sid, set()).add(channel)
        return True

    @sio.on("publish")
    async def publish(sid: str, message: Any) -> bool:
        """A client publishes into a room it joined; every member (the sender too) gets it."""
        channel = message.get("channel") if isinstance(message, dict) else None
        if not isinstance(channel, str) or "data" not in message:
            return False
        if channel not in joined.get(sid, ()):
            return False
        await sio.emit("pub", message["data"], room=channel)
        return True

    async def publish_one(command: Any) -> dict[str, Any]:
        channel = command.get("channel") if isinstance(command, dict) else None
        if not isinstance(channel, str) or not channel or "data" not in command:
            return {"error": {"code": 107, "message": "bad request"}}
        await sio.emit("pub", command["data"], room=channel)
        return {}

    async def api(request: web.Request) -> web.Response:
        if request.headers.get("X-API-Key") != api_key:
            error = {"code": 101, "message": "unauthorized"}
            return web.json_response({"error": error}, status=401)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return bad_request()
        method = request.match_info["method"]
        if method == "publish":
            result = await publish_one(body)
            return web.json_response(result if "error" in result else {"result": result})
        if method == "batch":
            commands = body.get("commands") if isinstance(body, dict) else None
            if not isinstance(commands, list):
                return bad_request()
            replies = []
            for command in commands:
                if not isinstance(command, dict) or "publish" not in command:
                    replies.append({"error": {"code": 102, "message": "not found"}})
                    continue
                result = await publish_one(command["publish"])
                replies.append(result if "error" in result else {"publish": result})
            return web.json_response({"replies": replies})
        return web.json_response({"error": {"code": 102, "message": "not found"}}, status=404)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_post("/api/{method}", api)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    env = os.environ
    app = make_app(env["SECRET"], env["API_KEY"], env.get("REDIS_URL"))
    web.run_app(app, host="127.0.0.1", port=int(env["PORT"]), print=None, access_log=None)


if __name__ == "__main__":
    main()
