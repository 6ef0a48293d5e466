"""Real ``roomcast serve`` processes on free ports for integration tests.

Each server gets its own config file and is killed on teardown even when the
test fails; its log is printed into the failure report.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port
from tests.support.tokens import SECRET, token

__all__ = ["SECRET", "free_port", "token"]  # where most tests import them from

API_KEY = "test-api-key"
ROOMCAST = str(Path(sys.executable).with_name("roomcast"))

#: The channel options of the protocol transcripts the tests follow ("secret": token-only).
PROTOCOL_CONFIG: dict[str, Any] = {
    "client": {"ping_interval": "25s", "pong_timeout": "8s"},
    "channel": {
        "without_namespace": {
            "presence": True,
            "join_leave": True,
            "force_push_join_leave": True,
            "history_size": 10,
            "history_ttl": "300s",
            "force_recovery": True,
            "allow_subscribe_for_client": True,
            "allow_publish_for_subscriber": True,
            "allow_presence_for_subscriber": True,
            "allow_history_for_subscriber": True,
        },
        "namespaces": [
            {"name": "secret"},
            {
                "name": "delta",
                "allow_subscribe_for_client": True,
                "history_size": 10,
                "history_ttl": "300s",
                "force_recovery": True,
                "allowed_delta_types": ["fossil"],
                "delta_publish": True,
            },
            {"name": "plain", "allow_subscribe_for_client": True},
            {
                "name": "dialog",
                "allow_user_limited_channels": True,
                "allow_subscribe_for_client": True,
            },
            {
                "name": "open",
                "allow_subscribe_for_client": True,
                "allow_subscribe_for_anonymous": True,
                "allow_publish_for_client": True,
                "allow_publish_for_anonymous": True,
            },
        ],
    },
}


@dataclass
class ServerProcess:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    config_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, body: dict[str, Any], key: str = API_KEY) -> Any:
        """Call the server API synchronously; returns the decoded body."""
        request = urllib.request.Request(
            f"{self.http_url}/api/{method}",
            data=json.dumps(body).encode(),
            headers={"X-API-Key": key, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 10) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(
    config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
    workdir: Path | None = None,
) -> ServerProcess:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="roomcast-test-"))
    port = port or free_port()
    config_path = workdir / f"config-{port}.yaml"
    config_path.write_text(yaml.safe_dump(config if config is not None else PROTOCOL_CONFIG))
    log_path = workdir / f"server-{port}.log"
    full_env = {
        **os.environ,
        "ROOMCAST_HOST": "127.0.0.1",
        "ROOMCAST_PORT": str(port),
        "ROOMCAST_TOKEN_HMAC_SECRET": SECRET,
        "ROOMCAST_API_KEY": API_KEY,
        "ROOMCAST_CONFIG": str(config_path),
        "ROOMCAST_LOG_LEVEL": "info",
        **(env or {}),
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [ROOMCAST, "serve"], env=full_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = ServerProcess(port, process, log_path, config_path, env or {})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{server.http_url}/health", timeout=1),
        ):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not become healthy:\n{server.log()}")


@contextlib.contextmanager
def running_server(
    config: dict[str, Any] | None = None, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    server = start_server(config, env)
    try:
        yield server
    finally:
        server.stop()
