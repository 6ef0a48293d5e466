"""Headless Chromium (Debian's ``chromium``) driven by Playwright, and the chat stack it
opens: a real ``roomcast serve`` plus the chat example's page server.

A missing Chromium skips these tests, unless ``ROOMCAST_REQUIRE_BROWSER=1`` (CI) makes it
a failure. Screenshots land in ``test-artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.processes import SECRET, ServerProcess, free_port, start_server

REPO = Path(__file__).resolve().parents[2]
CHAT = REPO / "examples" / "chat"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
ADMIN_PASSWORD = "browser-admin-password"


def chromium_path() -> str:
    found = os.environ.get("ROOMCAST_CHROMIUM") or shutil.which("chromium")
    if found:
        return found
    message = "chromium is not installed (apt-get install chromium; tests/deps.sh does)"
    if os.environ.get("ROOMCAST_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " -- ROOMCAST_REQUIRE_BROWSER=1")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module: Playwright's sync API keeps an event loop running in this thread while
    it is open, which the asyncio tests of later modules need for themselves."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            # As root (CI) Chromium's sandbox cannot start; the pages are our own.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _demo_config() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("chat_demo", CHAT / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config: dict[str, Any] = module.ROOMCAST_CONFIG
    return config


@dataclass
class ChatStack:
    """Roomcast (restartable on its port) and the chat page's server."""

    workdir: Path
    roomcast_port: int
    page_port: int
    config: dict[str, Any]
    server: ServerProcess
    page: subprocess.Popen[bytes]

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.page_port}/"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.roomcast_port}/admin"

    def restart_roomcast(self, down_seconds: float = 1.0) -> None:
        self.server.stop()
        time.sleep(down_seconds)
        self.server = _start_roomcast(self.config, self.roomcast_port, self.workdir)


def _start_roomcast(config: dict[str, Any], port: int, workdir: Path) -> ServerProcess:
    env = {"ROOMCAST_ADMIN_PASSWORD": ADMIN_PASSWORD}
    return start_server(config, env, port=port, workdir=workdir)


@pytest.fixture(scope="session")
def chat_stack() -> Iterator[ChatStack]:
    workdir = Path(tempfile.mkdtemp(prefix="roomcast-browser-"))
    roomcast_port, page_port = free_port(), free_port()
    config = {
        **_demo_config(),
        "client": {"allowed_origins": [f"http://127.0.0.1:{page_port}"]},
    }
    server = _start_roomcast(config, roomcast_port, workdir)
    log = (workdir / "page.log").open("wb")
    command = [sys.executable, str(CHAT / "demo.py"), "--port", str(page_port)]
    page = subprocess.Popen(
        [*command, "--attach", "--roomcast-port", str(roomcast_port)],
        env={**os.environ, "ROOMCAST_TOKEN_HMAC_SECRET": SECRET},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    stack = ChatStack(workdir, roomcast_port, page_port, config, server, page)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert page.poll() is None, (workdir / "page.log").read_text()
            with contextlib.suppress(OSError), urllib.request.urlopen(stack.page_url, timeout=1):
                break
            assert time.monotonic() < deadline, "the chat page server did not start"
            time.sleep(0.1)
        yield stack
    finally:
        page.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            page.wait(10)
        if page.poll() is None:
            page.kill()
        stack.server.stop()
