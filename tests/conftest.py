"""Shared fixtures: real server processes, tokens, and their logs on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.jsclient import JsClient
from tests.processes import ServerProcess, start_server

_started: list[ServerProcess] = []


@pytest.fixture(scope="session")
def protocol_server() -> Iterator[ServerProcess]:
    """One server with the protocol transcripts' config, shared by protocol tests."""
    server = start_server()
    _started.append(server)
    yield server
    server.stop()


@pytest.fixture
def server_factory() -> Iterator[Any]:
    """Start servers with custom config; all are killed after the test."""
    servers: list[ServerProcess] = []

    def factory(
        config: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> ServerProcess:
        server = start_server(config, env)
        servers.append(server)
        _started.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _started:
        for server in _started[-3:]:
            report.sections.append((f"server :{server.port} log (tail)", server.log()[-4000:]))


@pytest.fixture
async def js() -> AsyncIterator[JsClient]:
    """centrifuge-js under Node, stopped after the test."""
    client = await JsClient.start()
    yield client
    await client.close()
