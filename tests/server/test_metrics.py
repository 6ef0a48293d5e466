"""The metrics families the operator's health checks and dashboards read."""

from __future__ import annotations

from prometheus_client import generate_latest

from roomcast.metrics import Metrics


def test_counters_exported_with_labels() -> None:
    m = Metrics()
    m.gauges["connections"] = lambda: 3
    m.labelled_gauges["emulation_sessions"] = ("transport", lambda: {"sse": 1, "http_stream": 0})
    m.deliveries += 10
    m.publications["api"] += 2
    m.commands[("subscribe", "ok")] += 1
    m.count_disconnect(3001)
    m.count_disconnect(3500)
    m.connects["rejected"] += 1
    m.connect_errors[109] += 1
    m.recoveries["failed"] += 1
    m.track_publish_latency(0.0)
    m.frames_written()
    text = generate_latest(m.registry).decode()
    for line in (
        "roomcast_connections 3.0",
        'roomcast_emulation_sessions{transport="http_stream"} 0.0',
        'roomcast_emulation_sessions{transport="sse"} 1.0',
        "roomcast_deliveries_total 10.0",
        'roomcast_publications_total{source="api"} 2.0',
        'roomcast_commands_total{method="subscribe",result="ok"} 1.0',
        'roomcast_disconnects_total{code="3001",terminal="false"} 1.0',
        'roomcast_disconnects_total{code="3500",terminal="true"} 1.0',
        'roomcast_connects_total{result="rejected"} 1.0',
        'roomcast_connect_errors_total{code="109"} 1.0',
        'roomcast_recoveries_total{result="failed"} 1.0',
        "roomcast_publish_to_write_seconds_count 1.0",
    ):
        assert line in text, line
