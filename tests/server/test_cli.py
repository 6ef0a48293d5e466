"""The ``roomcast`` command line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import jwt
from centrifuge import Client

from tests.processes import ROOMCAST, SECRET, free_port, start_server


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"ROOMCAST_TOKEN_HMAC_SECRET": SECRET, "PATH": "/usr/bin:/bin"}
    return subprocess.run([ROOMCAST, *args], env=env, capture_output=True, text=True, timeout=30)


def test_gentoken() -> None:
    result = run("gentoken", "--user", "42", "--ttl", "60", "--channels", "a,b")
    assert result.returncode == 0
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "42" and claims["channels"] == ["a", "b"]
    assert time.time() + 55 < claims["exp"] <= time.time() + 60


def test_gentoken_subscription_token() -> None:
    result = run("gentoken", "--user", "7", "--channel", "$secret:room")
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["channel"] == "$secret:room"


def test_gentoken_without_secret_fails_clearly() -> None:
    result = subprocess.run(
        [ROOMCAST, "gentoken", "--user", "1"],
        env={"PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "no HMAC secret" in result.stderr


async def test_serve_dev_prints_a_working_token_and_api_key() -> None:
    """What `make run` prints is enough to connect and publish."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "ROOMCAST_PORT": str(port)}
    process = await asyncio.create_subprocess_exec(
        ROOMCAST,
        "serve",
        "--dev",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        banner = ""
        while "Publish from a backend" not in banner:
            line = await asyncio.wait_for(process.stdout.readline(), 15)
            assert line, banner
            banner += line.decode()
        token = re.search(r"Token \(user \"demo\", 24 h\):\s+(\S+)", banner)
        key = re.search(r"API key\s+:\s+(\S+)", banner)
        assert token and key
        client = Client(f"ws://127.0.0.1:{port}/connection/websocket", token=token.group(1))
        await client.connect()
        sub = client.new_subscription("chat")
        await sub.subscribe()
        await sub.publish({"hello": "world"})
        assert (await sub.history(limit=1)).publications[0].data == {"hello": "world"}
        await client.disconnect()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=10)
        assert len(key.group(1)) == 32
    finally:
        os.kill(process.pid, signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0


def test_serve_listens_with_the_configured_accept_backlog() -> None:
    """A drained pod's clients reconnect at once: the listen queue must hold them
    (asyncio's default of 100 drops SYNs and stalls clients for seconds)."""
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    for wanted in (None, 1000):
        env = {"ROOMCAST_HTTP_SERVER__ACCEPT_BACKLOG": str(wanted)} if wanted else {}
        server = start_server(env=env)
        try:
            listening = subprocess.run(
                ["ss", "-Hltn", f"sport = :{server.port}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            # For a listening socket ss shows the backlog as Send-Q.
            assert int(listening[2]) == min(wanted or 4096, somaxconn), listening
        finally:
            server.stop()


def test_serve_on_a_taken_port_says_so_and_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [ROOMCAST, "serve", "--port", str(port)],
            env={**os.environ, "ROOMCAST_HOST": "127.0.0.1", "ROOMCAST_TOKEN_HMAC_SECRET": SECRET},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"roomcast: cannot listen on 127.0.0.1:{port}: address already in use" in (
        result.stderr.lower()
    )
    assert "Traceback" not in result.stderr
