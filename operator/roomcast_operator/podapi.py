"""Calling one pod's server API by its address, as the operator scrapes its /metrics.

The server API acts cluster-wide through the backplane for most methods; ``shed`` acts on
the node that receives it, so the operator sends it to the pod, never to the Service. The
API key is the cluster's own (``spec.apiKeySecretRef``).
"""

from __future__ import annotations

import asyncio
import json
import logging

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
    request = (
        f"POST /api/shed HTTP/1.0\r\nHost: {pod_ip}\r\nX-API-Key: {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(pod_ip, port), timeout_seconds
        )
    except (OSError, TimeoutError) as error:
        log.warning("shed on %s: %s", pod_ip, error)
        return None
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout_seconds)
    except (OSError, TimeoutError) as error:
        log.warning("shed on %s: %s", pod_ip, error)
        return None
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        log.warning("shed on %s: HTTP %s", pod_ip, b" ".join(status[1:]).decode(errors="replace"))
        return None
    try:
        reply = json.loads(payload)
        return int(reply["result"]["shedding"])
    except (ValueError, KeyError, TypeError):
        log.warning("shed on %s: %s", pod_ip, payload[:200].decode(errors="replace"))
        return None
