"""Command line: ``roomcast serve``, ``roomcast gentoken``, ``roomcast check-config``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from typing import Any

from . import __version__
from .app import CONNECTIONS, NODE, build_app, start_listener
from .client import Client
from .config import ConfigError, Settings, load_settings
from .drain import drain
from .logs import AccessLogger, setup_logging
from .tokens import make_token

log = logging.getLogger("roomcast")

DEV_CHANNEL_OPTIONS: dict[str, Any] = {
    "presence": True,
    "join_leave": True,
    "force_push_join_leave": True,
    "history_size": 100,
    "history_ttl": "300s",
    "force_recovery": True,
    "allow_subscribe_for_client": True,
    "allow_publish_for_subscriber": True,
    "allow_presence_for_subscriber": True,
    "allow_history_for_subscriber": True,
}


def _load(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Settings:
    try:
        return load_settings(args.config, overrides=overrides)
    except ConfigError as exc:
        for path, message in exc.problems:
            print(f"config error: {path}: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def _dev_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings for ``make run``: generated secrets and a permissive default channel."""
    base = load_settings(args.config) if args.config else load_settings()
    overrides: dict[str, Any] = {}
    if not base.client.token.configured:
        overrides.setdefault("client", {})["token"] = {"hmac_secret_key": secrets.token_hex(32)}
    if not base.http_api.key:
        overrides["http_api"] = {"key": secrets.token_hex(16)}
    if not args.config:
        overrides["channel"] = {"without_namespace": DEV_CHANNEL_OPTIONS}
    return overrides


def _print_dev_banner(settings: Settings, port: int) -> None:
    host = settings.http_server.address
    url = f"ws://{host}:{port}{settings.websocket.handler_prefix}"
    secret = settings.client.token.hmac_secret_key
    token = make_token(secret, {"sub": "demo", "exp": int(time.time()) + 86400})
    print(
        f"""
Roomcast {__version__} serving on http://{host}:{port} (memory engine)

  WebSocket URL : {url}
  HMAC secret   : {secret}
  API key       : {settings.http_api.key}
  Token (user "demo", 24 h):
    {token}

Connect with centrifuge-js (npm install centrifuge):

  import {{ Centrifuge }} from 'centrifuge';
  const client = new Centrifuge('{url}', {{ token: '{token}' }});
  const sub = client.newSubscription('chat');
  sub.on('publication', ctx => console.log(ctx.data));
  sub.subscribe();
  client.connect();

Publish from a backend:

  curl -X POST http://{host}:{port}/api/publish -H 'X-API-Key: {settings.http_api.key}' \\
       -d '{{"channel": "chat", "data": {{"text": "hello"}}}}'
""",
        flush=True,
    )


async def serve(settings: Settings, *, dev: bool = False) -> int:
    app = build_app(settings)
    try:
        listener = await start_listener(
            app,
            settings.http_server.address,
            settings.http_server.port,
            backlog=settings.http_server.accept_backlog,
            access_log_class=AccessLogger,
            keepalive_timeout=settings.websocket.handshake_timeout,
            shutdown_timeout=1.0,
        )
    except OSError as exc:  # address in use, no such address, privileged port
        where = f"{settings.http_server.address}:{settings.http_server.port}"
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        print(f"roomcast: cannot listen on {where}: {reason}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    port = listener.port
    log.info(
        "listening",
        extra={
            "address": settings.http_server.address,
            "port": port,
            "engine": settings.engine.type,
            "version": __version__,
        },
    )
    if dev:
        _print_dev_banner(settings, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    node = app[NODE]
    node.draining = True
    log.info("shutdown requested")
    connections: set[Client] = app[CONNECTIONS]
    clean = await drain(
        lambda: connections,
        settings.shutdown.drain_window,
        settings.shutdown.timeout,
    )
    await listener.close()
    log.info("stopped", extra={"clean": clean})
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = _dev_overrides(args) if args.dev else None
    settings = _load(args, overrides)
    if args.port is not None:
        settings.http_server.port = args.port
    setup_logging(settings.log.level, settings.log.format)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(settings, dev=args.dev))
    return 0


def cmd_gentoken(args: argparse.Namespace) -> int:
    settings = _load(args)
    secret = args.secret or settings.client.token.hmac_secret_key
    if not secret:
        print("no HMAC secret: set ROOMCAST_TOKEN_HMAC_SECRET or pass --secret", file=sys.stderr)
        return 2
    claims: dict[str, Any] = {"sub": args.user, "iat": int(time.time())}
    if args.ttl > 0:
        claims["exp"] = int(time.time()) + args.ttl
    if args.channels:
        claims["channels"] = [c for c in args.channels.split(",") if c]
    if args.channel:
        claims["channel"] = args.channel
    print(make_token(secret, claims))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load(args)
    namespaces = ", ".join(ns.name for ns in settings.channel.namespaces) or "(none)"
    print(f"config OK: engine={settings.engine.type} namespaces={namespaces}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomcast", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--config", help="YAML or JSON config file (default: $ROOMCAST_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    p_serve = commands.add_parser("serve", help="run the server")
    p_serve.add_argument("--port", type=int, help="override the listen port")
    p_serve.add_argument(
        "--dev",
        action="store_true",
        help="generate a secret and API key if missing and print how to connect",
    )
    p_serve.set_defaults(func=cmd_serve)

    p_token = commands.add_parser("gentoken", help="print a connection (or subscription) JWT")
    p_token.add_argument("--user", required=True, help="user id (sub claim)")
    p_token.add_argument("--ttl", type=int, default=3600, help="seconds until exp; 0 = no exp")
    p_token.add_argument(
        "--channels", default="", help="server-side subscriptions, comma separated"
    )
    p_token.add_argument("--channel", default="", help="make a subscription token for this channel")
    p_token.add_argument("--secret", default="", help="HMAC secret (default: from config)")
    p_token.set_defaults(func=cmd_gentoken)

    p_check = commands.add_parser("check-config", help="validate the configuration")
    p_check.set_defaults(func=cmd_check_config)

    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
