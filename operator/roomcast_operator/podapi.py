"""Calling one pod's server API by its address, as the operator scrapes its /metrics.

The server API acts cluster-wide through the backplane for most methods; ``shed`` acts on
the node that receives it, so the operator sends it to the pod, never to the Service. The
API key is the cluster's own (``spec.apiKeySecretRef``).
"""

from __future__ import annotations

import json
import logging

from . import podhttp

log = logging.getLogger("roomcast_operator")

TIMEOUT_SECONDS = 3.0


async def shed(
    pod_ip: str,
    port: int,
    api_key: str,
    count: int,
    window_seconds: float,
    timeout_seconds: float = TIMEOUT_SECONDS,
) -> int | None:
    """Ask the pod to move ``count`` clients over the window; how many it is moving, or
    None when it could not be asked (unreachable, refused, or an error reply)."""
    body = json.dumps({"count": count, "window": window_seconds}).encode()
    head = (
        f"POST /api/shed HTTP/1.0\r\nX-API-Key: {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}"
    )
    try:
        answer = await podhttp.exchange(pod_ip, port, head, body, timeout_seconds)
    except podhttp.PodUnreachable as error:
        log.warning("shed on %s: %s", pod_ip, error)
        return None
    if not answer.ok:
        log.warning("shed on %s: HTTP %s", pod_ip, answer.status)
        return None
    try:
        reply = json.loads(answer.body)
        return int(reply["result"]["shedding"])
    except (ValueError, KeyError, TypeError):
        log.warning("shed on %s: %s", pod_ip, answer.body[:200].decode(errors="replace"))
        return None
