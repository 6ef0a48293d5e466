"""Reading the realtime signals a Roomcast pod exports on /metrics.

The operator scrapes new pods directly (it needs no Prometheus for release decisions).
A pod it cannot reach has no metrics: that never fails a release by itself, but the pod
is named in the release's condition, and a release none of whose pods answers is not
called healthy (see ``health.judge_rollout``).
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from . import podhttp
from .health import PodMetrics

SCRAPE_TIMEOUT_SECONDS = 1.5

CLIENT_ERROR_CODES = frozenset({101, 103, 107, 109})
"""Connect error replies the client causes: unauthorized, permission denied, bad request,
token expired. Internal errors (100) and an unavailable backplane count as the server's."""
CLIENT_DISCONNECT_CODES = frozenset({3500, 3501, 3502, 3503, 3506, 3507, 3509})
"""Terminal disconnects the client causes: invalid token, bad request, stale (no connect
in time), forced by the application, inappropriate protocol, permission denied, too many
errors. Connection and channel limits (3504, 3505) come from the release's settings."""


def parse(text: str) -> PodMetrics:
    """PodMetrics from Prometheus text exposition."""
    values: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    engine_available: bool | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name == "roomcast_connections":
                values["connections"] = value
            elif name == "roomcast_connects_total":
                key = "accepted" if labels.get("result") == "accepted" else "rejected"
                values[key] = values.get(key, 0.0) + value
            elif name == "roomcast_connect_errors_total":
                if _code(labels) in CLIENT_ERROR_CODES:
                    values["rejected_by_client"] = values.get("rejected_by_client", 0.0) + value
            elif name == "roomcast_disconnects_total" and labels.get("terminal") == "true":
                key = "client" if _code(labels) in CLIENT_DISCONNECT_CODES else "terminal"
                values[key] = values.get(key, 0.0) + value
            elif name == "roomcast_recoveries_total":
                key = "recovered" if labels.get("result") == "recovered" else "failed"
                values[key] = values.get(key, 0.0) + value
            elif name == "roomcast_engine_errors_total":
                values["engine_errors"] = value
            elif name == "roomcast_engine_available":
                engine_available = value >= 1
            elif name == "roomcast_publish_to_write_seconds_bucket":
                buckets.append((float(labels["le"]), value))
    by_client = min(values.get("rejected_by_client", 0.0), values.get("rejected", 0.0))
    return PodMetrics(
        connections=values.get("connections", 0.0),
        connects_accepted=values.get("accepted", 0.0),
        connects_rejected=values.get("rejected", 0.0) - by_client,
        connects_rejected_by_client=by_client,
        terminal_disconnects=values.get("terminal", 0.0),
        terminal_disconnects_by_client=values.get("client", 0.0),
        recoveries_ok=values.get("recovered", 0.0),
        recoveries_failed=values.get("failed", 0.0),
        engine_errors=values.get("engine_errors", 0.0),
        latency_buckets=tuple(sorted(buckets)),
        engine_available=engine_available,
    )


def _code(labels: dict[str, str]) -> int | None:
    code = labels.get("code", "")
    return int(code) if code.isdigit() else None


async def scrape(
    pod_ip: str, port: int, timeout_seconds: float = SCRAPE_TIMEOUT_SECONDS
) -> PodMetrics | None:
    """Fetch and parse a pod's /metrics; None when it cannot be reached in time."""
    head = "GET /metrics HTTP/1.0\r\nAccept: text/plain"
    try:
        answer = await podhttp.exchange(pod_ip, port, head, b"", timeout_seconds)
    except podhttp.PodUnreachable:
        return None
    if not answer.ok:
        return None
    try:
        return parse(answer.body.decode(errors="replace"))
    except ValueError:
        return None
