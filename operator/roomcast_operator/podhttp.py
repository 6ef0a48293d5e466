"""One HTTP/1.0 exchange with a pod by its address.

The operator talks to each server pod directly, never through the Service: it scrapes
every pod's /metrics, and sends ``shed`` to the pod that should move clients. Both answers
are small and end with the connection, so a plain stream is all it takes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


class PodUnreachable(Exception):
    """The pod could not be reached, or did not answer in time."""


@dataclass(frozen=True, slots=True)
class Answer:
    #: the status line after the HTTP version ("200 OK"); empty when there was none
    status: str
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status.split(" ", 1)[0] == "200"


async def exchange(
    pod_ip: str, port: int, request_head: str, body: bytes, timeout_seconds: float
) -> Answer:
    """Send ``request_head`` (the request line and headers, without the blank line that
    ends them) and ``body``; read the answer until the pod closes the connection."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(pod_ip, port), timeout_seconds
        )
    except (OSError, TimeoutError) as error:
        raise PodUnreachable(str(error) or type(error).__name__) from error
    try:
        writer.write(f"{request_head}\r\nHost: {pod_ip}\r\n\r\n".encode() + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout_seconds)
    except (OSError, TimeoutError) as error:
        raise PodUnreachable(str(error) or type(error).__name__) from error
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split(b" ", 1)
    return Answer(status[1].decode(errors="replace") if len(status) == 2 else "", payload)
