"""Parsing the pods' /metrics."""

from __future__ import annotations

import asyncio

from roomcast_operator import podmetrics
from roomcast_operator.health import PodMetrics

EXPOSITION = """\
# TYPE roomcast_connections gauge
roomcast_connections 42.0
# TYPE roomcast_connects counter
roomcast_connects_total{result="accepted"} 90.0
roomcast_connects_total{result="rejected"} 10.0
# TYPE roomcast_disconnects counter
roomcast_disconnects_total{code="3001",terminal="false"} 7.0
roomcast_disconnects_total{code="3501",terminal="true"} 3.0
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
    assert podmetrics.parse(EXPOSITION) == PodMetrics(
        connections=42,
        connects_accepted=90,
        connects_rejected=10,
        terminal_disconnects=3,
        recoveries_ok=8,
        recoveries_failed=2,
        engine_errors=1,
        publish_latency_p99_seconds=0.5,
    )


def test_quantile_of_an_empty_histogram_is_unknown() -> None:
    assert podmetrics.quantile([], 0.99) is None
    assert podmetrics.quantile([(0.1, 0.0), (float("inf"), 0.0)], 0.99) is None


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
