"""The chat example's page server, and a Roomcast server for it: ``make demo``.

Serves the page (index.html, style.css, the built dist/chat.js), ``/config.json`` (where
Roomcast listens, which channel to join) and ``/token``, which signs a connection JWT for
any name -- a stand-in for your application's login, for the demo only. By default it
also starts ``roomcast serve`` on the memory engine with the admin UI on, and prints both
addresses; with ``--attach`` and ``ROOMCAST_TOKEN_HMAC_SECRET`` it serves the page for the
Roomcast already listening on ``--roomcast-port`` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

import jwt
import yaml
from aiohttp import web

HERE = Path(__file__).resolve().parent
CHANNEL = "chat:lobby"
USER_NAME = re.compile(r"[A-Za-z0-9_.\- ]{1,32}")
FILES = {
    "/": ("index.html", "text/html"),
    "/style.css": ("style.css", "text/css"),
    "/dist/chat.js": ("dist/chat.js", "text/javascript"),
}

#: The Roomcast config the demo runs with: a "chat" namespace with history for recovery,
#: presence and join/leave, where subscribers may publish.
ROOMCAST_CONFIG = {
    "channel": {
        "namespaces": [
            {
                "name": "chat",
                "history_size": 100,
                "history_ttl": "1h",
                "force_recovery": True,
                "presence": True,
                "join_leave": True,
                "force_push_join_leave": True,
                "allow_subscribe_for_client": True,
                "allow_publish_for_subscriber": True,
                "allow_presence_for_subscriber": True,
                "allow_history_for_subscriber": True,
            }
        ]
    },
    "admin": {"enabled": True},
}


def make_app(roomcast_port: int, secret: str) -> web.Application:
    async def static(request: web.Request) -> web.StreamResponse:
        name, content_type = FILES[request.path]
        path = HERE / name
        if not path.exists():
            return web.Response(status=500, text=f"{name} is missing: run make demo-build")
        return web.Response(body=path.read_bytes(), content_type=content_type, charset="utf-8")

    async def config(request: web.Request) -> web.StreamResponse:
        # The host the browser used, so the WebSocket's Origin and cookies line up.
        host = request.url.host or "127.0.0.1"
        websocket = f"ws://{host}:{roomcast_port}/connection/websocket"
        return web.json_response({"websocket": websocket, "channel": CHANNEL})

    async def token(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "send JSON"}, status=400)
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str) or not USER_NAME.fullmatch(user):
            error = "a name of 1-32 letters, digits, spaces, dots, dashes or underscores"
            return web.json_response({"error": error}, status=400)
        claims = {"sub": user, "exp": int(time.time()) + 3600}
        return web.json_response({"token": jwt.encode(claims, secret, algorithm="HS256")})

    app = web.Application()
    for path in FILES:
        app.router.add_get(path, static)
    app.router.add_get("/config.json", config)
    app.router.add_post("/token", token)
    return app


async def run(args: argparse.Namespace) -> int:
    secret = os.environ.get("ROOMCAST_TOKEN_HMAC_SECRET", "")
    server: asyncio.subprocess.Process | None = None
    page_origins = [f"http://{h}:{args.port}" for h in ("127.0.0.1", "localhost")]
    roomcast_port = args.roomcast_port
    admin_password = ""
    if not args.attach:
        secret = secrets.token_hex(32)
        admin_password = secrets.token_urlsafe(12)
        config_path = Path(tempfile.mkdtemp(prefix="roomcast-demo-")) / "config.yaml"
        config_path.write_text(yaml.safe_dump(ROOMCAST_CONFIG))
        env = {
            **os.environ,
            "ROOMCAST_HOST": args.host,
            "ROOMCAST_PORT": str(roomcast_port),
            "ROOMCAST_CONFIG": str(config_path),
            "ROOMCAST_TOKEN_HMAC_SECRET": secret,
            "ROOMCAST_API_KEY": secrets.token_hex(16),
            "ROOMCAST_ADMIN_PASSWORD": admin_password,
            "ROOMCAST_ALLOWED_ORIGINS": ",".join(page_origins),
            "ROOMCAST_LOG_LEVEL": "warning",
        }
        roomcast = str(Path(sys.executable).with_name("roomcast"))
        server = await asyncio.create_subprocess_exec(roomcast, "serve", env=env)
    elif not secret:
        print("demo.py: set ROOMCAST_TOKEN_HMAC_SECRET to the server's secret", file=sys.stderr)
        return 2
    runner = web.AppRunner(make_app(roomcast_port, secret), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    print(f"Chat example: http://{args.host}:{args.port}/ (open it in two windows)", flush=True)
    if server is not None:
        print(
            f"Roomcast:     ws://{args.host}:{roomcast_port}/connection/websocket\n"
            f"Admin UI:     http://{args.host}:{roomcast_port}/admin "
            f"(password: {admin_password})",
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiters = [asyncio.create_task(stop.wait())]
    if server is not None:
        waiters.append(asyncio.create_task(server.wait()))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    await runner.cleanup()
    if server is not None and server.returncode is not None:
        print(
            f"demo.py: roomcast exited with {server.returncode} (port {roomcast_port} in use? "
            "try --roomcast-port)",
            file=sys.stderr,
        )
        return 1
    if server is not None and server.returncode is None:
        server.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait(), 10)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="the page's port")
    parser.add_argument("--roomcast-port", type=int, default=8000, help="Roomcast's port")
    parser.add_argument(
        "--attach",
        action="store_true",
        help="use the Roomcast already on --roomcast-port (its secret in "
        "ROOMCAST_TOKEN_HMAC_SECRET) instead of starting one",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
