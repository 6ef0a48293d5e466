"""Parsing the pods' /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from roomcast_operator import podmetrics
from roomcast_operator.health import PodMetrics
from tests.processes import token
from tests.wsclient import RawClient

EXPOSITION = """\
# TYPE roomcast_connections gauge
roomcast_connections 42.0
# TYPE roomcast_connects counter
roomcast_connects_total{result="accepted"} 90.0
roomcast_connects_total{result="rejected"} 10.0
# TYPE roomcast_connect_errors counter
roomcast_connect_errors_total{code="100"} 4.0
roomcast_connect_errors_total{code="109"} 6.0
# TYPE roomcast_disconnects counter
roomcast_disconnects_total{code="3001",terminal="false"} 7.0
roomcast_disconnects_total{code="3501",terminal="true"} 3.0
roomcast_disconnects_total{code="3504",terminal="true"} 2.0
# TYPE roomcast_engine_available gauge
roomcast_engine_available 0.0
# TYPE roomcast_recoveries counter
roomcast_recoveries_total{result="recovered"} 8.0
roomcast_recoveries_total{result="failed"} 2.0
# TYPE roomcast_engine_errors counter
roomcast_engine_errors_total 1.0
# TYPE roomcast_publish_to_write_seconds histogram
roomcast_publish_to_write_seconds_bucket{le="0.005"} 50.0
roomcast_publish_to_write_seconds_bucket{le="0.05"} 98.0
roomcast_publish_to_write_seconds_bucket{le="0.5"} 100.0
roomcast_publish_to_write_seconds_bucket{le="+Inf"} 100.0
roomcast_publish_to_write_seconds_count 100.0
roomcast_publish_to_write_seconds_sum 1.0
"""


def test_parse_reads_every_signal() -> None:
    metrics = podmetrics.parse(EXPOSITION)
    assert metrics == PodMetrics(
        connections=42,
        connects_accepted=90,
        connects_rejected=4,
        connects_rejected_by_client=6,
        terminal_disconnects=2,
        terminal_disconnects_by_client=3,
        recoveries_ok=8,
        recoveries_failed=2,
        engine_errors=1,
        latency_buckets=((0.005, 50.0), (0.05, 98.0), (0.5, 100.0), (float("inf"), 100.0)),
        engine_available=False,
    )
    assert metrics.publish_latency_p99_seconds == 0.5


def test_a_server_without_error_codes_counts_every_reject_as_its_own() -> None:
    text = 'roomcast_connects_total{result="rejected"} 10.0\n'
    metrics = podmetrics.parse(text)
    assert (metrics.connects_rejected, metrics.connects_rejected_by_client) == (10, 0)
    assert metrics.engine_available is None


def test_scrape_reads_a_real_http_endpoint() -> None:
    async def scenario() -> PodMetrics | None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            writer.write(EXPOSITION.encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await podmetrics.scrape("127.0.0.1", port)

    metrics = asyncio.run(scenario())
    assert metrics is not None and metrics.connections == 42


def test_scrape_of_an_unreachable_pod_is_none() -> None:
    assert asyncio.run(podmetrics.scrape("127.0.0.1", 1, timeout_seconds=0.5)) is None


async def test_a_real_server_tells_client_caused_failures_apart(server_factory: Any) -> None:
    """An expired token (error 109) and a bad signature (close 3500) against a running
    server: its /metrics, read by the operator's scraper, count both as the client's."""
    server = server_factory()
    async with await RawClient.open(server.ws_url) as client:
        reply = await client.connect(token(exp=1_000_000_000, ttl=None))
        assert reply["error"]["code"] == 109
    async with await RawClient.open(server.ws_url) as client:
        await client.send({"id": 1, "connect": {"token": token(secret="x" * 32)}})
        assert await client.closed() == 3500
    async with await RawClient.open(server.ws_url) as client:
        assert "connect" in await client.connect(token())
        metrics = await podmetrics.scrape("127.0.0.1", server.port)
    assert metrics is not None
    assert (metrics.connects_accepted, metrics.connects_rejected) == (1, 0)
    assert metrics.connects_rejected_by_client == 1
    assert (metrics.terminal_disconnects, metrics.terminal_disconnects_by_client) == (0, 1)
    assert metrics.engine_available is True
