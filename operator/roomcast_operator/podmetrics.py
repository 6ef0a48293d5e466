"""Reading the realtime signals a Roomcast pod exports on /metrics.

The operator scrapes new pods directly (it needs no Prometheus for release decisions).
A pod it cannot reach has no metrics: that never fails a release by itself, but the pod
is named in the release's condition, and a release none of whose pods answers is not
called healthy (see ``health.judge_rollout``).
"""

from __future__ import annotations

import asyncio
import math

from prometheus_client.parser import text_string_to_metric_families

from .health import PodMetrics

SCRAPE_TIMEOUT_SECONDS = 1.5


def parse(text: str) -> PodMetrics:
    """PodMetrics from Prometheus text exposition."""
    values: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name == "roomcast_connections":
                values["connections"] = value
            elif name == "roomcast_connects_total":
                key = "accepted" if labels.get("result") == "accepted" else "rejected"
                values[key] = values.get(key, 0.0) + value
            elif name == "roomcast_disconnects_total" and labels.get("terminal") == "true":
                values["terminal"] = values.get("terminal", 0.0) + value
            elif name == "roomcast_recoveries_total":
                key = "recovered" if labels.get("result") == "recovered" else "failed"
                values[key] = values.get(key, 0.0) + value
            elif name == "roomcast_engine_errors_total":
                values["engine_errors"] = value
            elif name == "roomcast_publish_to_write_seconds_bucket":
                buckets.append((float(labels["le"]), value))
    return PodMetrics(
        connections=values.get("connections", 0.0),
        connects_accepted=values.get("accepted", 0.0),
        connects_rejected=values.get("rejected", 0.0),
        terminal_disconnects=values.get("terminal", 0.0),
        recoveries_ok=values.get("recovered", 0.0),
        recoveries_failed=values.get("failed", 0.0),
        engine_errors=values.get("engine_errors", 0.0),
        publish_latency_p99_seconds=quantile(buckets, 0.99),
    )


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Upper bound of the bucket holding quantile ``q`` of a cumulative histogram."""
    if not buckets:
        return None
    ordered = sorted(buckets)
    total = ordered[-1][1]
    if total <= 0:
        return None
    for bound, count in ordered:
        if count >= q * total:
            return bound if not math.isinf(bound) else ordered[-2][0] if len(ordered) > 1 else None
    return None


async def scrape(
    pod_ip: str, port: int, timeout_seconds: float = SCRAPE_TIMEOUT_SECONDS
) -> PodMetrics | None:
    """Fetch and parse a pod's /metrics; None when it cannot be reached in time."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(pod_ip, port), timeout_seconds
        )
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(
            f"GET /metrics HTTP/1.0\r\nHost: {pod_ip}\r\nAccept: text/plain\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout_seconds)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or status_line[1] != b"200":
        return None
    try:
        return parse(body.decode(errors="replace"))
    except ValueError:
        return None
