"""The Roomcast image, built and started for real with the local Docker daemon.

The image is built as `make image` builds it here: wheels from scripts/wheelhouse.sh, no
network inside the build, on a base image made by images/base/build.sh (debootstrap +
docker import), since no registry can be reached. A container runs the server in the
host's network namespace on a free loopback port (the daemon may run without a bridge:
``--bridge=none``); there the test checks /health and /ready, connects the centrifuge-python
SDK, subscribes and receives a publication sent through the HTTP API. A second container
runs the chart's `helm test` client against the first, so the hook is known to work in
the image. Skipped, with the reason, when there is no usable Docker daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from centrifuge import Client, PublicationContext, SubscriptionEventHandler

from e2e.bed import eventually, free_port

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("ROOMCAST_TEST_IMAGE", "roomcast:image-test")
BASE_IMAGE = os.environ.get("ROOMCAST_BASE_IMAGE", "roomcast-base:bookworm")
SECRET = secrets.token_hex(32)
API_KEY = secrets.token_hex(16)


def _docker(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _run(argv: list[str], timeout: float = 900) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("docker") is None:
        pytest.skip("docker not installed (apt-get install docker.io)")
    info = _docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if info.returncode != 0:
        pytest.skip(f"no Docker daemon: {info.stderr.strip().splitlines()[-1:]}")
    if _docker("image", "inspect", BASE_IMAGE).returncode != 0:
        if shutil.which("debootstrap") is None:
            pytest.skip(f"no base image {BASE_IMAGE} and no debootstrap to make one")
        _run([str(REPO / "images" / "base" / "build.sh"), BASE_IMAGE])
    _run([str(REPO / "scripts" / "wheelhouse.sh")])
    _run(
        [
            "docker", "build", "--quiet", "-f", str(REPO / "server" / "Dockerfile"),
            "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", IMAGE, str(REPO),
        ]
    )  # fmt: skip
    user = _docker("image", "inspect", IMAGE, "--format", "{{.Config.User}}").stdout.strip()
    assert user.split(":")[0].isdigit() and user != "0", (
        "the image must run as a numeric non-root user"
    )
    return IMAGE


@pytest.fixture(scope="module")
def server(image: str) -> Iterator[tuple[str, str]]:
    """A running container: (its name, its base URL on the host)."""
    name = f"roomcast-image-test-{secrets.token_hex(3)}"
    port = free_port()
    _run(
        [
            "docker", "run", "--detach", "--rm", "--name", name,
            "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges",
            "--network", "host", "--env", "ROOMCAST_HOST=127.0.0.1",
            "--env", f"ROOMCAST_PORT={port}",
            "--env", f"ROOMCAST_TOKEN_HMAC_SECRET={SECRET}", "--env", f"ROOMCAST_API_KEY={API_KEY}",
            image,
        ]
    )  # fmt: skip
    try:
        yield name, f"http://127.0.0.1:{port}"
    finally:
        logs = _docker("logs", name).stdout
        _docker("rm", "--force", name)
        print(logs[-4000:])


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def test_health_and_ready(server: tuple[str, str]) -> None:
    _, base = server
    assert eventually(lambda: _get(f"{base}/health"), 30, what="/health") == {"status": "ok"}
    eventually(lambda: _get(f"{base}/ready"), 30, what="/ready")


class _Publications(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.received: asyncio.Queue[object] = asyncio.Queue()

    async def on_publication(self, ctx: PublicationContext) -> None:
        await self.received.put(ctx.pub.data)


async def test_sdk_client_through_the_published_port(server: tuple[str, str]) -> None:
    import jwt

    _, base = server
    eventually(lambda: _get(f"{base}/ready"), 30, what="/ready")
    channel = f"image-{secrets.token_hex(4)}"
    now = int(time.time())
    token = jwt.encode({"sub": "image-test", "exp": now + 300}, SECRET, algorithm="HS256")
    sub_token = jwt.encode(
        {"sub": "image-test", "channel": channel, "exp": now + 300}, SECRET, algorithm="HS256"
    )
    client = Client(base.replace("http", "ws", 1) + "/connection/websocket", token=token)
    events = _Publications()
    try:
        await client.connect()
        subscription = client.new_subscription(channel, events=events, token=sub_token)
        await subscription.subscribe()
        await subscription.ready(timeout=10)
        body = json.dumps({"channel": channel, "data": {"hello": "image"}}).encode()
        request = urllib.request.Request(
            f"{base}/api/publish",
            data=body,
            headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        )
        reply = await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=5).read())
        assert "error" not in json.loads(reply)
        assert await asyncio.wait_for(events.received.get(), 10) == {"hello": "image"}
    finally:
        await client.disconnect()


def test_helm_test_client_in_the_image(server: tuple[str, str]) -> None:
    _, base = server
    eventually(lambda: _get(f"{base}/ready"), 30, what="/ready")
    script = (REPO / "helm" / "roomcast" / "files" / "connect_and_publish.py").read_text()
    output = _run(
        [
            "docker", "run", "--rm", "--network", "host", "--read-only",
            "--env", f"ROOMCAST_URL={base}",
            "--env", f"ROOMCAST_TOKEN_HMAC_SECRET={SECRET}", "--env", f"ROOMCAST_API_KEY={API_KEY}",
            IMAGE, "python", "-c", script,
        ],
        timeout=120,
    )  # fmt: skip
    assert "received the publication: OK" in output


def test_operator_entry_point(image: str) -> None:
    output = _run(["docker", "run", "--rm", image, "roomcast-operator", "--help"], timeout=60)
    assert "--namespace" in output
